"""Fine-tune the packaged all-MiniLM-L6-v2 on notebook 13's fast-mode SQuAD split with minibert and with
transformers, same run: same features, batches, schedule and optimizer; print EM/F1 and time for both.

Both models go through minibert's one training loop (``training.train``, which takes any module that returns
its loss), so the batches (length-bucketed, same seed), BertAdam, warmup and clipping are identical by
construction; the QA head starts from the same random values. Only the model implementations differ.

    python benchmarks/bench_squad.py                        # notebook 13's fast mode: 512 questions, seq 128 (dropout kept on both sides)
    python benchmarks/bench_squad.py --train-questions 160 --eval-articles Normans
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from task_race import race, task_parser

EVAL_ARTICLES = ("Normans", "Sky_(United_Kingdom)", "Victoria_(Australia)")


def parse_args() -> argparse.Namespace:
    p = task_parser(__doc__, max_seq_length=128, batch_size=16)
    p.add_argument("--train-questions", type=int, default=512)
    p.add_argument("--eval-articles", nargs="+", default=list(EVAL_ARTICLES))
    p.add_argument("--doc-stride", type=int, default=48)
    p.add_argument("--max-query-length", type=int, default=32)
    p.add_argument("--max-answer-length", type=int, default=15)  # notebook 13's fast mode (run_squad: 30)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    from minibert import BertForQuestionAnswering, BertTokenizer
    from minibert.assets import checkpoint_path, data_path
    from minibert.datasets import read_squad
    from minibert.metrics import squad_scores
    from minibert.squad import SquadResult, convert_examples_to_features, postprocess_predictions
    from minibert.training import TrainingArguments, evaluate

    transformers.logging.set_verbosity_error()
    folder = checkpoint_path(None)
    tok = BertTokenizer.from_pretrained(folder)
    path = data_path("squad", "dev-v1.1.json")
    dev = json.loads(path.read_text(encoding="utf-8"))
    examples = read_squad(path)
    evals = set(args.eval_articles)
    pool = [e for e in examples if e.title not in evals]
    train_ex = [pool[i] for i in np.random.default_rng(args.seed).permutation(len(pool))[:args.train_questions]]
    eval_ex = [e for e in examples if e.title in evals]
    eval_json = {"version": dev["version"], "data": [a for a in dev["data"] if a["title"] in evals]}
    shape = (args.max_seq_length, args.doc_stride, args.max_query_length)
    train_f, _ = convert_examples_to_features(train_ex, tok, *shape, is_training=True)
    eval_f, eval_w = convert_examples_to_features(eval_ex, tok, *shape)
    print(f"SQuAD v1.1 dev split by article: {len(train_ex)} train questions ({len(train_f)} windows), "
          f"{len(eval_ex)} held-out questions ({len(eval_f)} windows); seq {args.max_seq_length}, batch "
          f"{args.batch_size}, lr {args.lr}, {args.epochs} epoch(s); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU fp32")

    torch.manual_seed(args.seed)
    ours = BertForQuestionAnswering.from_pretrained(folder)
    theirs = transformers.BertForQuestionAnswering.from_pretrained(str(folder))
    theirs.qa_outputs.load_state_dict(ours.qa_outputs.state_dict())  # the same starting head
    targs = TrainingArguments(learning_rate=args.lr, num_train_epochs=args.epochs, train_batch_size=args.batch_size,
                              seed=args.seed, device="cpu", precision="fp32", progress=False,
                              evaluate_every_epoch=False, pad_token_id=tok.pad_token_id)

    def score(model):
        out = evaluate(model, eval_f, 64, "cpu", metrics_fn=None)
        results = [SquadResult(s.numpy(), e.numpy()) for s, e in out.logits]
        preds, _, _ = postprocess_predictions(eval_ex, eval_w, results, max_answer_length=args.max_answer_length)
        return squad_scores(eval_json, preds)

    rows = race({"minibert": ours, "transformers": theirs}, train_f, targs, score, metrics_fn=None)
    print(f"\n{'':14s} {'EM':>6s} {'F1':>6s} {'train s':>8s} {'eval s':>7s} {'last loss':>9s}")
    for name, (s, tr, ev, loss) in rows.items():
        print(f"{name:14s} {s['exact_match']:6.1f} {s['f1']:6.1f} {tr:8.1f} {ev:7.1f} {loss:9.4f}")
    (so, to, eo, _), (st, tt, et, _) = rows.values()
    print(f"{'difference':14s} {so['exact_match'] - st['exact_match']:+6.1f} {so['f1'] - st['f1']:+6.1f}  "
          f"time minibert/transformers: train {to / tt:.2f}x, eval {eo / et:.2f}x")


if __name__ == "__main__":
    main()
