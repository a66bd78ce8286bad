"""Notebook 07's fast-mode pre-training, as one command: held-out MLM / NSP accuracy against their baselines.

    MINIBERT_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_pretraining.py --seed 0 [--json]

The recipe is the notebook's (cells 4-18): an 8,000-token WordPiece vocabulary learned from the training
chapters, a BertForPreTraining with 2 layers of hidden 128, 1,500 steps at 32 tokens (batch 64, warmup then a
constant lr) then 1,000 at 128 tokens (batch 32, a new BertAdam, warmup then linear decay), 5 passes over the
text, held out on the first 4 batches of 128 pairs at 128 tokens. The budget is counted in steps, so the figures
depend on the seed and the thread count only (the rounding of a sum differs with the threads, and the runs part
after a few hundred steps). The baselines come from the same held-out masks: the unigram guess for MLM, the
majority class for NSP. The fill-in test masks the rarest content word of 200 held-out sentences and reports the
exact top-5 hit rate beside the share with a content word in the top 5. Options change one knob of the recipe.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from minibert import BertAdam, BertConfig, BertForPreTraining
from minibert import pretraining as P
from minibert.assets import data_path
from minibert.optimization import optimizer_grouped_parameters
from minibert.runtime import set_seed
from minibert.tokenization import BertTokenizer, train_wordpiece


def parse_phases(text: str) -> list[tuple[int, int, int]]:
    """'32:64:1500,128:32:1000' -> [(seq, batch, steps), ...]."""
    try:
        phases = [tuple(int(x) for x in part.split(":")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--phases {text!r}: expected seq:batch:steps[,seq:batch:steps...]")
    if not phases or any(len(p) != 3 or min(p) < 1 for p in phases):
        raise argparse.ArgumentTypeError(f"--phases {text!r}: expected seq:batch:steps[,seq:batch:steps...]")
    return phases


def fill_in(model, tok, documents, train_items, max_len, n=200) -> dict[str, float]:
    """Notebook 07's fill-in test: the rarest single-token content word of each held-out sentence, masked."""
    counts = Counter(int(i) for it in train_items for i in it["input_ids"])
    frequent = {tok.convert_ids_to_tokens([i])[0] for i, _ in counts.most_common(30)}
    model.eval()
    hits = content = top1_frequent = total = 0
    for sentence in [s for d in documents for s in d]:
        tokens = tok.tokenize(sentence)
        if not 8 <= len(tokens) <= max_len - 2:
            continue
        words = [i for i, t in enumerate(tokens) if t.isalpha() and t not in frequent
                 and (i + 1 == len(tokens) or not tokens[i + 1].startswith("##"))]
        if not words:
            continue
        i = min(words, key=lambda j: counts[tok.vocab[tokens[j]]])
        ids = torch.tensor([tok.convert_tokens_to_ids(["[CLS]", *tokens[:i], "[MASK]", *tokens[i + 1:], "[SEP]"])])
        with torch.no_grad():
            scores = model(ids, torch.zeros_like(ids), torch.ones_like(ids))[0][0]
        top = tok.convert_ids_to_tokens(scores[i + 1].topk(5).indices.tolist())
        hits += tokens[i] in top
        content += any(t.isalpha() and t not in frequent for t in top)
        top1_frequent += top[0] in frequent
        total += 1
        if total == n:
            break
    return {"top5_hit": hits / total, "content_word_in_top5": content / total,
            "top1_frequent": top1_frequent / total, "masks": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="the notebook's SEED (model init, masks, batches)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the figures depend on it)")
    ap.add_argument("--phases", type=parse_phases, default=parse_phases("32:64:1500,128:32:1000"),
                    help="seq:batch:steps per phase, each with its own BertAdam (default: the notebook's)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--dupe-factor", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--eval-batches", type=int, default=4, help="held-out batches of 128 pairs (notebook: 4)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu0, wall0 = time.process_time(), time.perf_counter()

    set_seed(args.seed)
    documents = P.read_documents(data_path("lm_text", "gutenberg_austen_chesterton_sentences.txt"))
    train_documents, held_documents = P.split_documents(documents, held_out=0.1, seed=12345)
    vocab = train_wordpiece([s for d in train_documents for s in d], args.vocab_size, score="likelihood")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tok = BertTokenizer(Path(tmp) / "vocab.txt")
    max_len = args.phases[-1][0]
    phase_data = {seq: P.load_pretraining_data(documents, tok, seq, dupe_factor=args.dupe_factor, seed=12345)
                  for seq, _, _ in args.phases}
    data = phase_data[max_len]
    config = BertConfig(vocab_size=len(tok.vocab), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                        max_position_embeddings=max_len, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(config)
    collators = {seq: P.PretrainingCollator(tok, max_predictions_per_seq=round(0.15 * seq) + 1, seed=args.seed)
                 for seq, _, _ in args.phases}
    held_out = P.fixed_batches(data.held_out, collators[max_len], 128)[:args.eval_batches]
    unigram = P.unigram_baseline(data.train, held_out, tok.vocab)
    labels = torch.cat([b["next_sentence_label"] for b in held_out]).float()
    nsp_majority = max(labels.mean().item(), 1 - labels.mean().item())

    history = None
    for i, (seq, batch_size, steps) in enumerate(args.phases):
        last = i == len(args.phases) - 1
        optimizer = BertAdam(optimizer_grouped_parameters(model, 0.01), lr=args.lr, warmup=args.warmup,
                             t_total=steps, schedule="warmup_linear" if last else "warmup_constant")
        history = P.pretrain(model, phase_data[seq].train, collators[seq], optimizer, steps, batch_size,
                             eval_batches=held_out, eval_every=sum(s for _, _, s in args.phases) // 10,
                             seed=args.seed, history=history)
    final = history.evals[-1][1]
    by_input = P.mlm_accuracy_by_input(model, held_out, tok.vocab["[MASK]"])
    fills = fill_in(model, tok, held_documents, data.train.items, max_len)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0

    recipe = " + ".join(f"{steps} steps at {seq} tokens (batch {b})" for seq, b, steps in args.phases)
    print(f"BERT L={args.layers} H={args.hidden}, vocab {len(tok.vocab)}, {recipe}, lr {args.lr}, seed {args.seed}, "
          f"{args.threads} thread(s): {len(history.step)} steps, {wall:.0f} s wall, {cpu:.0f} s CPU")
    print("held out (step, MLM, NSP):", [(s, round(e["mlm_accuracy"], 3), round(e["nsp_accuracy"], 3))
                                         for s, e in history.evals])
    rows = [("MLM accuracy", final["mlm_accuracy"], unigram["mlm_accuracy"], "unigram guess"),
            ("MLM accuracy at [MASK]", by_input["[MASK]"][0], unigram["mlm_accuracy"], "unigram guess"),
            ("MLM perplexity", final["perplexity"], unigram["perplexity"], "unigram (lower is better)"),
            ("NSP accuracy", final["nsp_accuracy"], nsp_majority, "majority class"),
            ("fill-in: top-5 hit", fills["top5_hit"], None, ""),
            ("fill-in: content word in top 5", fills["content_word_in_top5"], None, "")]
    print(f"{'held-out metric':<32}{'ours':>10}{'baseline':>10}  baseline")
    for name, ours, base, what in rows:
        print(f"{name:<32}{ours:>10.4f}{'' if base is None else f'{base:>10.4f}':>10}  {what}")
    print(f"NSP over the majority class: {100 * (final['nsp_accuracy'] - nsp_majority):+.1f} points")
    if args.json:
        print(json.dumps({
            "task": "pretraining_07", "seed": args.seed, "threads": args.threads, "steps": len(history.step),
            "cpu_seconds": round(cpu, 1),
            "ours": {"mlm_accuracy": final["mlm_accuracy"], "mlm_accuracy_at_mask": by_input["[MASK]"][0],
                     "perplexity": final["perplexity"], "nsp_accuracy": final["nsp_accuracy"],
                     "top5_hit": fills["top5_hit"], "content_word_in_top5": fills["content_word_in_top5"]},
            "baselines": {"unigram": {"mlm_accuracy": unigram["mlm_accuracy"], "perplexity": unigram["perplexity"]},
                          "majority": {"nsp_accuracy": nsp_majority}}}))


if __name__ == "__main__":
    main()
