"""Fine-tune the packaged all-MiniLM-L6-v2 on notebook 15's fast-mode CoNLL-2003 subset with minibert and with
transformers, same run: same features, batches, schedule and optimizer; print entity F1 and time for both.

Both models go through minibert's one training loop (``training.train``), so batches, BertAdam, warmup and
clipping are identical by construction, and the tagging head starts from the same random values.

    python benchmarks/bench_ner.py                              # notebook 15: 1000 sentences, 3 epochs, all valid
    python benchmarks/bench_ner.py --train-sentences 400 --valid-sentences 800
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from task_race import race, task_parser


def parse_args() -> argparse.Namespace:
    p = task_parser(__doc__, max_seq_length=128, batch_size=16)
    p.add_argument("--train-sentences", type=int, default=1000)
    p.add_argument("--valid-sentences", type=int, default=None, help="default: all 3250")
    p.set_defaults(epochs=3)  # notebook 15's fast mode (lr 1e-4, batch 16)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    from minibert import BertForTokenClassification, BertTokenizer
    from minibert.assets import checkpoint_path
    from minibert.datasets import CONLL2003_LABELS, decode_tagged, encode_tagged, read_conll2003
    from minibert.metrics import ner_scores
    from minibert.training import TrainingArguments, evaluate

    transformers.logging.set_verbosity_error()
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
    ours = BertForTokenClassification.from_pretrained(folder, num_labels=n)
    theirs = transformers.BertForTokenClassification.from_pretrained(str(folder), num_labels=n)
    theirs.classifier.load_state_dict(ours.classifier.state_dict())  # the same starting head
    targs = TrainingArguments(learning_rate=args.lr, num_train_epochs=args.epochs, train_batch_size=args.batch_size,
                              seed=args.seed, device="cpu", precision="fp32", progress=False,
                              evaluate_every_epoch=False, pad_token_id=tok.pad_token_id, num_labels=n)
    gold = [list(s.tags) for s in valid]

    def score(model):
        out = evaluate(model, valid_f, 64, "cpu", metrics_fn=None)
        return ner_scores(gold, decode_tagged(out.logits, out.labels, valid, CONLL2003_LABELS))

    rows = race({"minibert": ours, "transformers": theirs}, train_f, targs, score, metrics_fn=None)
    print(f"\n{'':14s} {'P':>6s} {'R':>6s} {'F1':>6s} {'train s':>8s} {'eval s':>7s} {'last loss':>9s}")
    for name, (s, tr, ev, loss) in rows.items():
        print(f"{name:14s} {100 * s['precision']:6.1f} {100 * s['recall']:6.1f} {100 * s['f1']:6.1f} {tr:8.1f} "
              f"{ev:7.1f} {loss:9.4f}")
    (so, to, eo, _), (st, tt, et, _) = rows.values()
    print(f"{'difference':14s} {'':6s} {'':6s} {100 * (so['f1'] - st['f1']):+6.1f}  "
          f"time minibert/transformers: train {to / tt:.2f}x, eval {eo / et:.2f}x")


if __name__ == "__main__":
    main()
