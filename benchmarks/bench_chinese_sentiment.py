"""Does pre-training on unlabelled Chinese text help a tiny BERT? A longer run than notebook 10's fast mode
(about 23 minutes of CPU on one thread, most of it pre-training: 1,367 and 1,335 s for seeds 1 and 2), so the
notebook only points here.

    MINIBERT_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_chinese_sentiment.py --seed 0 [--json]

Three models on ChnSentiCorp dev and test (all 1,200 reviews each), trained on the same labelled reviews:
Naive Bayes on character unigrams + bigrams, a tiny BERT fine-tuned from random weights, and the same BERT
pre-trained first with masked LM + NSP on unlabelled reviews (ChnSentiCorp train + the hotel reviews, with every
review that shares 20 characters with a dev or test review dropped), then fine-tuned. Options change one
knob; `--phases 24x64x2000,48x64x600` (a quarter of the default pre-training) stops the model near the unigram
plateau, and that model fine-tunes *worse* than random weights. Budgets are counted in steps, so the figures
depend on the seed and the thread count only; times are CPU seconds of this process (the machine may be shared).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from minibert import BertAdam, BertConfig, BertForPreTraining, BertForSequenceClassification
from minibert import pretraining as P
from minibert.assets import vocab_path
from minibert.baselines import NaiveBayes
from minibert.datasets import drop_overlapping, read_chnsenticorp, read_chnsenticorp_htl, review_sentences
from minibert.optimization import optimizer_grouped_parameters
from minibert.runtime import set_seed
from minibert.tokenization import BertTokenizer
from minibert.training import TrainingArguments, encode_examples, evaluate, train


@dataclasses.dataclass
class Recipe:
    """The knobs: a tiny BERT (notebook 10's fast mode trains a 1-layer, 64-wide one), pre-trained phase by phase."""

    seed: int = 0
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    phases: tuple = ((24, 64, 8000), (48, 64, 1000))  # pre-training (seq, batch, steps), each its own BertAdam
    pretrain_lr: float = 1e-3
    dupe_factor: int = 2
    labels: int = 2000  # labelled training reviews (the first ones of train.tsv)
    max_seq_length: int = 48  # fine-tuning and evaluation, as notebook 10
    epochs: int = 4
    batch_size: int = 32
    lr: float = 3e-4  # fine-tuning the pre-trained model
    scratch_lr: float = 5e-4  # training the same model from random weights
    dropout: float = 0.1  # fine-tuning only; pre-training runs without


def pretraining_corpus(train_texts: list[str], held_out_texts: list[str]) -> list[list[str]]:
    """Documents (one review each, cut into sentences) from the train reviews and the hotel reviews, without
    any review that shares 20 characters with the held-out (dev and test) reviews, and without repeats."""
    hotel = [e.text_a for e in read_chnsenticorp_htl()]
    texts = drop_overlapping(train_texts + hotel, held_out_texts)
    return [s for s in (review_sentences(t) for t in texts) if s]


def pretrain_model(documents: list[list[str]], r: Recipe, log=print) -> tuple[BertForPreTraining, BertTokenizer, dict]:
    """The tiny BertForPreTraining, trained phase by phase (short sequences first, as notebook 07)."""
    with tempfile.TemporaryDirectory() as tmp:
        first = P.load_pretraining_data(documents, BertTokenizer(vocab_path("bert-base-chinese")), r.phases[0][0],
                                        dupe_factor=r.dupe_factor, seed=r.seed,
                                        corpus_vocab_file=Path(tmp) / "vocab.txt")
        tok = BertTokenizer(Path(tmp) / "vocab.txt")
    data = {r.phases[0][0]: first}
    for seq, _, _ in r.phases[1:]:
        data[seq] = P.load_pretraining_data(documents, tok, seq, dupe_factor=r.dupe_factor, seed=r.seed)
    set_seed(r.seed)
    config = BertConfig(vocab_size=len(tok.vocab), hidden_size=r.hidden, num_hidden_layers=r.layers,
                        num_attention_heads=r.heads, intermediate_size=4 * r.hidden,
                        max_position_embeddings=max(r.max_seq_length, max(s for s, _, _ in r.phases)),
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(config)
    last_seq = r.phases[-1][0]
    collators = {seq: P.PretrainingCollator(tok, max_predictions_per_seq=round(0.15 * seq) + 1, seed=r.seed)
                 for seq, _, _ in r.phases}
    held = P.fixed_batches(data[last_seq].held_out, collators[last_seq], 128)[:4]
    unigram = P.unigram_baseline(data[last_seq].train, held, tok.vocab)
    history = None
    for i, (seq, batch, steps) in enumerate(r.phases):
        last = i == len(r.phases) - 1
        opt = BertAdam(optimizer_grouped_parameters(model, 0.01), lr=r.pretrain_lr, warmup=0.1, t_total=steps,
                       schedule="warmup_linear" if last else "warmup_constant")
        history = P.pretrain(model, data[seq].train, collators[seq], opt, steps, batch, seed=r.seed, history=history)
        ev = P.evaluate_pretraining(model, held)
        log(f"  pre-training phase {i + 1} ({steps} steps at {seq} tokens): held-out MLM loss {ev['mlm_loss']:.3f}, "
            f"accuracy {ev['mlm_accuracy']:.3f}, NSP {ev['nsp_accuracy']:.3f}")
    final = P.evaluate_pretraining(model, held)
    stats = {"mlm_loss": final["mlm_loss"], "mlm_accuracy": final["mlm_accuracy"], "perplexity": final["perplexity"],
             "unigram_perplexity": unigram["perplexity"], "unigram_accuracy": unigram["mlm_accuracy"],
             "train_pairs": {seq: len(d.train) for seq, d in data.items()}, "vocab": len(tok.vocab)}
    return model, tok, stats


def fine_tune(model: BertForSequenceClassification, tok: BertTokenizer, train_ex, eval_sets: dict, lr: float,
              r: Recipe) -> dict[str, float]:
    """Fine-tune with the one loop (BertAdam, warmup, length buckets); accuracy on every evaluation set."""
    feats = encode_examples(train_ex, tok, r.max_seq_length, num_labels=2)
    args = TrainingArguments(learning_rate=lr, num_train_epochs=r.epochs, train_batch_size=r.batch_size,
                             seed=r.seed, progress=False, evaluate_every_epoch=False)
    train(model, feats, args)
    return {name: evaluate(model, encode_examples(ex, tok, r.max_seq_length, num_labels=2)).metrics["accuracy"]
            for name, ex in eval_sets.items()}


def classifier(config: BertConfig, r: Recipe, pretrained: Path | None) -> BertForSequenceClassification:
    cfg = dataclasses.replace(config, hidden_dropout_prob=r.dropout, attention_probs_dropout_prob=r.dropout)
    set_seed(r.seed)
    if pretrained is None:
        return BertForSequenceClassification(cfg, num_labels=2)
    return BertForSequenceClassification.from_pretrained(pretrained, config=cfg, num_labels=2)


def run(r: Recipe, log=print) -> dict:
    cpu0 = time.process_time()
    train_ex, dev_ex, test_ex = (read_chnsenticorp(s) for s in ("train", "dev", "test"))
    labelled = train_ex[:r.labels]
    evals = {"dev": dev_ex, "test": test_ex}
    out = {}
    nb = NaiveBayes((1, 2)).fit([e.text_a for e in labelled], [e.label for e in labelled])
    out["naive_bayes"] = {k: float(np.mean(nb.predict([e.text_a for e in ex]) == [e.label for e in ex]))
                          for k, ex in evals.items()}
    majority = int(np.mean([e.label for e in labelled]) >= 0.5)
    out["majority"] = {k: float(np.mean([e.label == majority for e in ex])) for k, ex in evals.items()}

    documents = pretraining_corpus([e.text_a for e in train_ex], [e.text_a for e in dev_ex + test_ex])
    log(f"pre-training corpus: {len(documents)} reviews, {sum(len(s) for d in documents for s in d):,} characters")
    t = time.process_time()
    pre, tok, stats = pretrain_model(documents, r, log)
    out["pretraining"] = {**stats, "cpu_seconds": time.process_time() - t}
    with tempfile.TemporaryDirectory() as tmp:
        pre.save_pretrained(tmp)
        t = time.process_time()
        out["pretrained"] = fine_tune(classifier(pre.config, r, Path(tmp)), tok, labelled, evals, r.lr, r)
        out["pretrained"]["cpu_seconds"] = time.process_time() - t
    t = time.process_time()
    out["scratch"] = fine_tune(classifier(pre.config, r, None), tok, labelled, evals, r.scratch_lr, r)
    out["scratch"]["cpu_seconds"] = time.process_time() - t
    out["cpu_seconds"] = time.process_time() - cpu0
    return out


def phases_arg(text: str) -> tuple[tuple[int, int, int], ...]:
    """"24x64x8000,48x64x1000" -> ((24, 64, 8000), (48, 64, 1000)): (seq, batch, steps) per phase."""
    try:
        phases = tuple(tuple(int(n) for n in part.split("x")) for part in text.split(","))
    except ValueError:
        phases = ()
    if not phases or any(len(p) != 3 or min(p) < 1 for p in phases):
        raise argparse.ArgumentTypeError(f"{text!r}: expected SEQxBATCHxSTEPS[,SEQxBATCHxSTEPS...] with "
                                         "positive whole numbers, e.g. 24x64x8000,48x64x1000")
    return phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = Recipe()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the figures depend on it)")
    ap.add_argument("--labels", type=int, default=defaults.labels, help="labelled training reviews")
    ap.add_argument("--phases", type=phases_arg, default=",".join("x".join(map(str, p)) for p in defaults.phases),
                    help="pre-training phases, SEQxBATCHxSTEPS separated by commas (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = dataclasses.replace(defaults, seed=args.seed, labels=args.labels, phases=args.phases)
    out = run(r)
    print(f"{r.labels} labelled reviews, seed {r.seed}, {args.threads} thread(s), {out['cpu_seconds']:.0f} s CPU "
          f"(pre-training {out['pretraining']['cpu_seconds']:.0f} s: held-out MLM perplexity "
          f"{out['pretraining']['perplexity']:.0f}, unigram {out['pretraining']['unigram_perplexity']:.0f})")
    print(f"{'':<34}{'dev':>8}{'test':>8}")
    for name, key in (("majority class", "majority"), ("Naive Bayes, character 1-2-grams", "naive_bayes"),
                      ("tiny BERT from scratch", "scratch"), ("tiny BERT pre-trained + fine-tuned", "pretrained")):
        print(f"{name:<34}{out[key]['dev']:>8.3f}{out[key]['test']:>8.3f}")
    if args.json:
        acc = lambda k: {"dev_accuracy": out[k]["dev"], "test_accuracy": out[k]["test"]}  # noqa: E731
        print(json.dumps({"task": "chnsenticorp", "seed": r.seed, "threads": args.threads, "labels": r.labels,
                          "phases": r.phases,
                          "ours": acc("pretrained"),
                          "baselines": {"from_scratch": acc("scratch"), "naive_bayes": acc("naive_bayes"),
                                        "majority": acc("majority")},
                          "pretraining": {k: out["pretraining"][k] for k in ("perplexity", "unigram_perplexity",
                                                                             "mlm_accuracy")}}))


if __name__ == "__main__":
    main()
