"""Notebook 15's fast-mode CoNLL-2003 run as one command: fine-tune the packaged all-MiniLM-L6-v2 on a sample of
training sentences, score entity F1 on the whole validation set, strict (seqeval's IOB2) and conlleval-style
(the published figures' rule), beside the most-frequent-tag-per-word baseline.

``--seed N`` draws the N-th sample of training sentences (and seeds the run), as the notebook's ``SEED`` does;
the defaults are the notebook's fast-mode recipe. ``--json`` ends the output with one JSON line
``{"task": ..., "ours": {...}, "baselines": {...}}``, metrics as fractions (``f1`` is conlleval's,
``f1_strict`` strict IOB2). ``--compare-transformers`` also trains transformers' BertForTokenClassification
through the same loop (same features, batches, BertAdam and schedule, the same starting head) and prints both.

    python benchmarks/bench_ner.py --seed 1 --json
    python benchmarks/bench_ner.py --train-sentences 400 --valid-sentences 800
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict

import numpy as np
import torch

from task_race import race, task_parser


def parse_args() -> argparse.Namespace:
    p = task_parser(__doc__, max_seq_length=128, batch_size=16)
    p.add_argument("--train-sentences", type=int, default=1000)
    p.add_argument("--valid-sentences", type=int, default=None, help="default: all 3250")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    p.add_argument("--compare-transformers", action="store_true",
                   help="also train transformers' model through the same loop and compare")
    p.set_defaults(epochs=3)  # notebook 15's fast mode (lr 1e-4, batch 16)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from minibert import BertForTokenClassification, BertTokenizer
    from minibert.assets import checkpoint_path
    from minibert.datasets import CONLL2003_LABELS, decode_tagged, encode_tagged, read_conll2003
    from minibert.metrics import ner_scores
    from minibert.training import TrainingArguments, evaluate

    folder = checkpoint_path(None)
    tok = BertTokenizer.from_pretrained(folder)
    train_all = read_conll2003("train")
    order = np.random.default_rng(args.seed).permutation(len(train_all))
    train_s = [train_all[i] for i in order[:args.train_sentences]]
    valid = read_conll2003("valid")[:args.valid_sentences]
    train_f = encode_tagged(train_s, tok, CONLL2003_LABELS, args.max_seq_length)
    valid_f = encode_tagged(valid, tok, CONLL2003_LABELS, args.max_seq_length)
    print(f"CoNLL-2003: {len(train_f)} train sentences, {len(valid_f)} validation sentences; seq "
          f"{args.max_seq_length}, batch {args.batch_size}, lr {args.lr}, {args.epochs} epoch(s); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, CPU fp32")

    n = len(CONLL2003_LABELS)
    torch.manual_seed(args.seed)
    models = {"minibert": BertForTokenClassification.from_pretrained(folder, num_labels=n)}
    if args.compare_transformers:
        import transformers
        transformers.logging.set_verbosity_error()
        theirs = transformers.BertForTokenClassification.from_pretrained(str(folder), num_labels=n)
        theirs.classifier.load_state_dict(models["minibert"].classifier.state_dict())  # the same starting head
        models["transformers"] = theirs
    targs = TrainingArguments(learning_rate=args.lr, num_train_epochs=args.epochs, train_batch_size=args.batch_size,
                              seed=args.seed, device="cpu", precision="fp32", progress=False,
                              evaluate_every_epoch=False, pad_token_id=tok.pad_token_id, num_labels=n)
    gold = [list(s.tags) for s in valid]

    def both(predicted):
        return {mode: ner_scores(gold, predicted, mode=mode) for mode in ("strict", "conlleval")}

    def score(model):
        out = evaluate(model, valid_f, 64, "cpu", metrics_fn=None)
        return both(decode_tagged(out.logits, out.labels, valid, CONLL2003_LABELS))

    cpu = time.process_time()
    rows = race(models, train_f, targs, score, metrics_fn=None)
    cpu = time.process_time() - cpu
    counts = defaultdict(Counter)
    for s in train_s:
        for w, t in zip(s.words, s.tags):
            counts[w][t] += 1
    most_frequent = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    baseline = both([[most_frequent.get(w, "O") for w in s.words] for s in valid])

    print(f"\n{'':26s} {'P':>6s} {'R':>6s} {'F1':>6s} {'strict F1':>9s} {'train s':>8s} {'eval s':>7s}")
    for name, (s, tr, ev, _) in rows.items():
        c = s["conlleval"]
        print(f"{name:26s} {100 * c['precision']:6.1f} {100 * c['recall']:6.1f} {100 * c['f1']:6.1f} "
              f"{100 * s['strict']['f1']:9.1f} {tr:8.1f} {ev:7.1f}")
    c = baseline["conlleval"]
    print(f"{'most frequent tag per word':26s} {100 * c['precision']:6.1f} {100 * c['recall']:6.1f} "
          f"{100 * c['f1']:6.1f} {100 * baseline['strict']['f1']:9.1f}")
    print("P, R, F1: conlleval's chunks; strict F1: seqeval's strict IOB2. "
          f"CPU time of training and scoring: {cpu:.0f} s")
    if args.compare_transformers:
        (so, to, eo, _), (st, tt, et, _) = rows.values()
        print(f"{'difference':26s} {'':6s} {'':6s} {100 * (so['conlleval']['f1'] - st['conlleval']['f1']):+6.1f}  "
              f"time minibert/transformers: train {to / tt:.2f}x, eval {eo / et:.2f}x")
    if args.json:
        def frac(s):
            return {"f1": s["conlleval"]["f1"], "precision": s["conlleval"]["precision"],
                    "recall": s["conlleval"]["recall"], "f1_strict": s["strict"]["f1"]}
        print(json.dumps({"task": "conll2003_ner", "seed": args.seed, "ours": frac(rows["minibert"][0]),
                          "baselines": {"most frequent tag per word": frac(baseline)},
                          "train_seconds": rows["minibert"][1], "cpu_seconds": cpu}))


if __name__ == "__main__":
    main()
