"""Fine-tune the packaged all-MiniLM-L6-v2 on notebook 14's fast-mode multiple-choice task (next sentence among
4, built from Gutenberg books, held-out books for evaluation) with minibert and with transformers, same run:
same features, batches, schedule and optimizer; print accuracy and time for both.

Both models go through minibert's one training loop (``training.train``), so batches, BertAdam, warmup and
clipping are identical by construction, and the choice scorer starts from the same random values.

    python benchmarks/bench_swag.py                        # notebook 14: 400 train / 160 eval questions, lr 5e-5
    python benchmarks/bench_swag.py --train 96 --eval 96
"""
from __future__ import annotations

import argparse

import torch

from task_race import race, task_parser

TRAIN_BOOKS = ("austen-emma", "chesterton-thursday")
EVAL_BOOKS = ("austen-persuasion", "austen-sense")


def parse_args() -> argparse.Namespace:
    p = task_parser(__doc__, max_seq_length=64, batch_size=8)
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--eval", type=int, default=160)
    p.set_defaults(lr=5e-5)  # notebook 14's fast mode: at 1e-4 the model stays at chance
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    from minibert import BertForMultipleChoice, BertTokenizer
    from minibert.assets import checkpoint_path, data_path
    from minibert.datasets import encode_multiple_choice, next_sentence_choices
    from minibert.pretraining import read_book_documents
    from minibert.training import TrainingArguments, evaluate

    def built(books, n):
        per_book = -(-n // len(books))
        return [ex for i, b in enumerate(books) for ex in next_sentence_choices(
            read_book_documents(data_path("gutenberg", f"{b}.txt")), per_book, seed=args.seed + i, name=b)]

    transformers.logging.set_verbosity_error()
    folder = checkpoint_path(None)
    tok = BertTokenizer.from_pretrained(folder)
    train_f = encode_multiple_choice(built(TRAIN_BOOKS, args.train), tok, args.max_seq_length)
    eval_f = encode_multiple_choice(built(EVAL_BOOKS, args.eval), tok, args.max_seq_length)
    print(f"next sentence among 4: {len(train_f)} train questions ({', '.join(TRAIN_BOOKS)}), {len(eval_f)} held-out "
          f"({', '.join(EVAL_BOOKS)}); seq {args.max_seq_length}, batch {args.batch_size}, lr {args.lr}, "
          f"{args.epochs} epoch(s); torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32")

    torch.manual_seed(args.seed)
    ours = BertForMultipleChoice.from_pretrained(folder, num_choices=4)
    theirs = transformers.BertForMultipleChoice.from_pretrained(str(folder))
    theirs.classifier.load_state_dict(ours.classifier.state_dict())  # the same starting scorer
    targs = TrainingArguments(learning_rate=args.lr, num_train_epochs=args.epochs, train_batch_size=args.batch_size,
                              seed=args.seed, device="cpu", precision="fp32", progress=False,
                              evaluate_every_epoch=False, pad_token_id=tok.pad_token_id, num_labels=4)
    rows = race({"minibert": ours, "transformers": theirs}, train_f, targs,
                lambda model: evaluate(model, eval_f, 32, "cpu").metrics["accuracy"])
    print(f"\n{'':14s} {'acc %':>6s} {'train s':>8s} {'eval s':>7s} {'last loss':>9s}")
    for name, (acc, tr, ev, loss) in rows.items():
        print(f"{name:14s} {100 * acc:6.1f} {tr:8.1f} {ev:7.1f} {loss:9.4f}")
    (ao, to, eo, _), (at, tt, et, _) = rows.values()
    print(f"{'difference':14s} {100 * (ao - at):+6.1f}  time minibert/transformers: train {to / tt:.2f}x, "
          f"eval {eo / et:.2f}x")


if __name__ == "__main__":
    main()
