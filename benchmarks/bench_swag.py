"""Notebook 14's fast-mode multiple-choice run as one command: the next sentence among 4, built from Gutenberg
books, fine-tuned on two books and scored on two others, beside the word-overlap rule.

``--seed N`` draws the N-th sample of questions (and seeds the run), as the notebook's ``SEED`` does; the
defaults are the notebook's fast-mode recipe. ``--json`` ends the output with one JSON line
``{"task": ..., "ours": {...}, "baselines": {...}}``, metrics as fractions. ``--eval-every K`` also scores the
first ``--curve-questions`` held-out questions every K updates (the notebook's learning curve). Then, as 14
does, the checkpoint as a bi-encoder: scored before any update (the no-training sentence-vector cosine, a
baseline) and after fine-tuning at ``--bi-encoder-lr`` on the same questions (``ours``' ``bi_encoder_accuracy``).
``--compare-transformers`` also trains transformers' BertForMultipleChoice through the same loop (same features,
batches, BertAdam and schedule, the same starting scorer) and prints both side by side.

    python benchmarks/bench_swag.py --seed 1 --json
    python benchmarks/bench_swag.py --train 800 --lr 5e-5 --eval-every 20
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from task_race import race, task_parser

TRAIN_BOOKS = ("austen-emma", "chesterton-thursday")
EVAL_BOOKS = ("austen-persuasion", "austen-sense")


def parse_args() -> argparse.Namespace:
    p = task_parser(__doc__, max_seq_length=64, batch_size=8)
    p.add_argument("--train", type=int, default=1200, help="training questions (14's fast mode: 1,200, 150 updates)")
    p.add_argument("--eval", type=int, default=500, help="held-out questions")
    p.add_argument("--warmup", type=float, default=0.1, help="warmup proportion")
    p.add_argument("--eval-every", type=int, default=0, help="score the curve questions every K updates (0: never)")
    p.add_argument("--curve-questions", type=int, default=100, help="14's fast mode: 100, every 25 updates")
    p.add_argument("--bi-encoder-lr", type=float, default=2e-5, help="14's BI_ENCODER_LEARNING_RATE")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    p.add_argument("--compare-transformers", action="store_true",
                   help="also train transformers' model through the same loop and compare")
    p.set_defaults(lr=5e-5)
    return p.parse_args()


def overlap_choice(ex) -> int:
    """The word-overlap rule: the ending that shares the most (lower-cased, whitespace-split) words with the context."""
    context = set(ex.context_sentence.lower().split())
    return int(np.argmax([len(context & set(e.lower().split())) for e in ex.endings]))


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from minibert import BertForMultipleChoice, BertTokenizer
    from minibert.assets import checkpoint_path, data_path
    from minibert.bi_encoder import BiEncoderForMultipleChoice
    from minibert.datasets import encode_multiple_choice, encode_sentence_choices, next_sentence_choices
    from minibert.pretraining import read_book_documents
    from minibert.training import TrainingArguments, evaluate, train

    def built(books, n):
        per_book = -(-n // len(books))
        return [ex for i, b in enumerate(books) for ex in next_sentence_choices(
            read_book_documents(data_path("gutenberg", f"{b}.txt")), per_book, seed=args.seed + i, name=b)]

    folder = checkpoint_path(None)
    tok = BertTokenizer.from_pretrained(folder)
    train_ex, eval_ex = built(TRAIN_BOOKS, args.train), built(EVAL_BOOKS, args.eval)
    train_f = encode_multiple_choice(train_ex, tok, args.max_seq_length)
    eval_f = encode_multiple_choice(eval_ex, tok, args.max_seq_length)
    print(f"next sentence among 4: {len(train_f)} train questions ({', '.join(TRAIN_BOOKS)}), {len(eval_f)} held-out "
          f"({', '.join(EVAL_BOOKS)}); seq {args.max_seq_length}, batch {args.batch_size}, lr {args.lr}, warmup "
          f"{args.warmup}, {args.epochs} epoch(s); torch {torch.__version__}, {torch.get_num_threads()} threads, "
          "CPU fp32")

    torch.manual_seed(args.seed)
    models = {"minibert": BertForMultipleChoice.from_pretrained(folder, num_choices=4)}
    if args.compare_transformers:
        import transformers
        transformers.logging.set_verbosity_error()
        theirs = transformers.BertForMultipleChoice.from_pretrained(str(folder))
        theirs.classifier.load_state_dict(models["minibert"].classifier.state_dict())  # the same starting scorer
        models["transformers"] = theirs
    targs = TrainingArguments(learning_rate=args.lr, num_train_epochs=args.epochs, train_batch_size=args.batch_size,
                              warmup_proportion=args.warmup, seed=args.seed, device="cpu", precision="fp32",
                              progress=False, evaluate_every_epoch=False, pad_token_id=tok.pad_token_id,
                              num_labels=4)
    curve, model_now = [], {}

    def every(event, state):
        if event == "step" and args.eval_every and state.global_step % args.eval_every == 0 \
                and model_now["name"] == "minibert":
            acc = evaluate(model_now["m"], eval_f[:args.curve_questions], 32, "cpu").metrics["accuracy"]
            curve.append((state.global_step, acc))
            print(f"  update {state.global_step}: held-out accuracy {acc:.3f} (first {args.curve_questions})",
                  flush=True)

    rows = {}
    cpu = time.process_time()
    for name, model in models.items():
        model_now.update(m=model, name=name)
        rows.update(race({name: model}, train_f, targs,
                         lambda m: evaluate(m, eval_f, 32, "cpu").metrics["accuracy"], callbacks=[every]))
    cpu = time.process_time() - cpu
    # 14's bi-encoder: the same questions, each text encoded alone; no new weights, so its score before any
    # update is the checkpoint's own sentence-vector cosine
    torch.manual_seed(args.seed)
    bi_encoder = BiEncoderForMultipleChoice.from_pretrained(folder)
    bi_train_f, bi_eval_f = (encode_sentence_choices(ex, tok, args.max_seq_length) for ex in (train_ex, eval_ex))
    zero_shot = evaluate(bi_encoder, bi_eval_f, 32, "cpu").metrics["accuracy"]
    bi_run = train(bi_encoder, bi_train_f, dataclasses.replace(targs, learning_rate=args.bi_encoder_lr))
    bi_accuracy = evaluate(bi_encoder, bi_eval_f, 32, "cpu").metrics["accuracy"]
    print(f"bi-encoder: {zero_shot:.1%} before any update, {bi_accuracy:.1%} after {bi_run.state.global_step} "
          f"updates ({bi_run.train_seconds:.0f} s)")
    baselines = {"word overlap": np.mean([overlap_choice(ex) == ex.label for ex in eval_ex]), "chance": 0.25,
                 "sentence-vector cosine, no training": zero_shot}
    updates = -(-len(train_f) // args.batch_size) * args.epochs
    print(f"\n{'':36s} {'acc %':>6s} {'train s':>8s} {'eval s':>7s} {'last loss':>9s}")
    for name, (acc, tr, ev, loss) in rows.items():
        print(f"{name:36s} {100 * acc:6.1f} {tr:8.1f} {ev:7.1f} {loss:9.4f}")
    print(f"{'bi-encoder, fine-tuned':36s} {100 * bi_accuracy:6.1f} {bi_run.train_seconds:8.1f}")
    for name, acc in baselines.items():
        print(f"{name:36s} {100 * acc:6.1f}")
    print(f"{updates} updates; CPU time of training and scoring: {cpu:.0f} s")
    if args.compare_transformers:
        (ao, to, eo, _), (at, tt, et, _) = rows.values()
        print(f"{'difference':36s} {100 * (ao - at):+6.1f}  time minibert/transformers: train {to / tt:.2f}x, "
              f"eval {eo / et:.2f}x")
    if args.json:
        print(json.dumps({"task": "swag_like_books", "seed": args.seed, "ours": {"accuracy": rows["minibert"][0],
                                                                           "bi_encoder_accuracy": bi_accuracy},
                          "baselines": {k: {"accuracy": float(v)} for k, v in baselines.items()},
                          "eval_questions": len(eval_f), "updates": updates, "curve": curve,
                          "train_seconds": rows["minibert"][1], "cpu_seconds": cpu}))


if __name__ == "__main__":
    main()
