"""Pre-train a small BERT from scratch for a fixed CPU budget; print held-out MLM / NSP accuracy vs baselines.

    MINIBERT_DATA=../shared/data python benchmarks/bench_pretraining.py --seconds 600

The model (BertForPreTraining, BertAdam, MLM + NSP on the Gutenberg sentences, corpus vocab) trains until the
budget is spent; t_total is set from the step time measured on the first steps. The references, measured on the
same held-out masks in the same run: the unigram guess (always the most frequent token, perplexity from token
frequencies) for MLM, and the majority class for NSP. Ratios > 1 mean the model beats the baseline.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import torch

from minibert import BertAdam, BertConfig, BertForPreTraining
from minibert import pretraining as P
from minibert.assets import data_path, vocab_path
from minibert.optimization import optimizer_grouped_parameters
from minibert.tokenization import BertTokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="training budget (wall clock)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--dropout", type=float, default=0.0, help="0: a few CPU minutes underfit, dropout only slows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        data = P.load_pretraining_data(data_path("lm_text", "gutenberg_austen_chesterton_sentences.txt"),
                                       BertTokenizer(vocab_path("bert-base-uncased")), args.seq, dupe_factor=3,
                                       corpus_vocab_file=os.path.join(tmp, "vocab.txt"), seed=args.seed)
    tok = data.tokenizer
    cfg = BertConfig(vocab_size=len(tok.vocab), hidden_size=args.hidden, num_hidden_layers=args.layers,
                     num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                     max_position_embeddings=args.seq, hidden_dropout_prob=args.dropout,
                     attention_probs_dropout_prob=args.dropout)
    model = BertForPreTraining(cfg)
    collate = P.PretrainingCollator(tok, max_predictions_per_seq=round(0.15 * args.seq) + 1, seed=args.seed)
    held = P.fixed_batches(data.held_out, collate, 128)

    # step time from throw-away steps on a copy (the first 3 warm up), to set t_total for the budget
    probe = BertForPreTraining(cfg)
    probe.load_state_dict(model.state_dict())
    probe_hist = P.pretrain(probe, data.train, collate.with_seed(99),
                            BertAdam(probe.parameters(), lr=args.lr, schedule=None), num_steps=3, batch_size=args.batch)
    probe_hist = P.pretrain(probe, data.train, collate.with_seed(98),
                            BertAdam(probe.parameters(), lr=args.lr, schedule=None), num_steps=8, batch_size=args.batch)
    step_s = probe_hist.seconds / 8
    num_steps = max(int(args.seconds / step_s), 10)
    opt = BertAdam(optimizer_grouped_parameters(model, 0.01), lr=args.lr, warmup=0.1, t_total=num_steps,
                   weight_decay=0.01)
    hist = P.pretrain(model, data.train, collate, opt, num_steps, args.batch, max_seconds=args.seconds * 1.05,
                      seed=args.seed)
    ours = P.evaluate_pretraining(model, held)
    uni = P.unigram_baseline(data.train, held)
    nsp = torch.cat([b["next_sentence_label"] for b in held]).float().mean().item()
    majority = max(nsp, 1 - nsp)

    print(f"BERT L={args.layers} H={args.hidden} A={args.heads}, seq {args.seq}, batch {args.batch}, "
          f"vocab {len(tok.vocab)}, {args.threads} threads: {len(hist.step)} of {num_steps} planned steps "
          f"in {hist.seconds:.0f}s ({hist.seconds / len(hist.step):.2f} s/step), "
          f"{len(data.train)} train / {len(data.held_out)} held-out pairs, {ours['masked_tokens']} masked tokens")
    print(f"{'held-out metric':<24}{'ours':>10}{'baseline':>10}{'ratio':>8}  baseline")
    rows = [("MLM accuracy", ours["mlm_accuracy"], uni["mlm_accuracy"], "unigram (most frequent token)"),
            ("MLM perplexity", ours["perplexity"], uni["perplexity"], "unigram (lower is better)"),
            ("NSP accuracy", ours["nsp_accuracy"], majority, "majority class")]
    for name, a, b, what in rows:
        print(f"{name:<24}{a:>10.4f}{b:>10.4f}{a / b:>8.2f}  {what}")


if __name__ == "__main__":
    main()
