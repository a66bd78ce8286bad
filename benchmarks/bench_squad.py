"""Notebook 13's fast-mode SQuAD v1.1 run as one command: fine-tune the packaged all-MiniLM-L6-v2 on a sample of
questions from some dev articles, score EM/F1 on three held-out articles, beside the sentence baselines.

``--seed N`` draws the N-th sample of training questions (and seeds the run), as the notebook's ``SEED`` does;
the defaults are the notebook's fast-mode recipe. ``--json`` ends the output with one JSON line
``{"task": ..., "ours": {...}, "baselines": {...}}``, metrics as fractions. ``--compare-transformers`` also
trains transformers' BertForQuestionAnswering through the same loop (same features, batches, BertAdam and
schedule, the same starting head) and prints both side by side.

    python benchmarks/bench_squad.py --seed 1 --json        # one sample of training questions
    python benchmarks/bench_squad.py --train-questions 512 --every-window   # a row of 13's config table
    python benchmarks/bench_squad.py --v2 --json     # then 13's SQuAD 2.0 phase; the last line is its figures

``--v2`` goes on training the v1.1 model on questions of the offline 2.0 articles but one, at ``--v2-lr``, and
scores the held-out article's questions as the notebook does: the null threshold tuned on one half of its
paragraphs and scored on the other, beside never answering, with the AUC of the no-answer score.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from task_race import race, task_parser

EVAL_ARTICLES = ("Normans", "Sky_(United_Kingdom)", "Victoria_(Australia)")


def parse_args() -> argparse.Namespace:
    p = task_parser(__doc__, max_seq_length=128, batch_size=16)  # 13's fast mode (run_squad: 384 / 128 / 64)
    p.add_argument("--train-questions", type=int, default=1024)
    p.add_argument("--eval-articles", nargs="+", default=list(EVAL_ARTICLES))
    p.add_argument("--doc-stride", type=int, default=48, help="step between window starts (run_squad's meaning)")
    p.add_argument("--max-query-length", type=int, default=32)
    p.add_argument("--max-answer-length", type=int, default=15)  # notebook 13's fast mode (run_squad: 30)
    p.add_argument("--warmup", type=float, default=0.1, help="warmup proportion")
    p.add_argument("--dropout", type=float, default=0.0, help="hidden and attention dropout (BERT: 0.1)")
    p.add_argument("--every-window", action="store_true",
                   help="train on every window, those without their answer pointing at [CLS], as run_squad does "
                        "(the default, as in 13's fast mode, keeps only windows that hold their answer: v1.1 never "
                        "predicts [CLS])")
    p.add_argument("--v2", action="store_true", help="then 13's SQuAD 2.0 phase (minibert's model only)")
    p.add_argument("--v2-questions", type=int, default=400, help="2.0 training questions (13's fast mode: 400)")
    p.add_argument("--v2-lr", type=float, default=3e-5, help="13's V2_LEARNING_RATE")
    p.add_argument("--v2-held-out", nargs="+", default=["Normans"], help="2.0 articles scored, never trained on")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    p.add_argument("--compare-transformers", action="store_true",
                   help="also train transformers' model through the same loop and compare")
    return p.parse_args()


def fractions(scores: dict, keys: tuple[str, ...] = ("exact_match", "f1")) -> dict[str, float]:
    """The official scripts' percentages as the JSON line's fractions."""
    return {k: scores[k] / 100 for k in keys}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from minibert import BertConfig, BertForQuestionAnswering, BertTokenizer
    from minibert.assets import checkpoint_path, data_path
    from minibert.datasets import read_squad
    from minibert.metrics import squad_scores
    from minibert.squad import (SquadResult, convert_examples_to_features, first_sentence_baseline,
                                overlap_baseline, paragraph_halves, postprocess_predictions, predict_logits,
                                score_null_answers, squad_subset)
    from minibert.training import TrainingArguments, evaluate, train

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
    train_f, _ = convert_examples_to_features(train_ex, tok, *shape, is_training=True,
                                              answer_windows_only=not args.every_window)
    eval_f, eval_w = convert_examples_to_features(eval_ex, tok, *shape)
    trained = "windows" if args.every_window else "windows holding their answer"
    print(f"SQuAD v1.1 dev split by article: {len(train_ex)} train questions ({len(train_f)} {trained}), "
          f"{len(eval_ex)} held-out questions ({len(eval_f)} windows); seq {args.max_seq_length}, stride "
          f"{args.doc_stride}, batch {args.batch_size}, lr {args.lr}, warmup {args.warmup}, {args.epochs} epoch(s), "
          f"dropout {args.dropout}; torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32")

    config = replace(BertConfig.from_json_file(folder / "config.json"), hidden_dropout_prob=args.dropout,
                     attention_probs_dropout_prob=args.dropout)
    torch.manual_seed(args.seed)
    models = {"minibert": BertForQuestionAnswering.from_pretrained(folder, config=config)}
    if args.compare_transformers:
        import transformers
        transformers.logging.set_verbosity_error()
        theirs = transformers.BertForQuestionAnswering.from_pretrained(
            str(folder), hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
        theirs.qa_outputs.load_state_dict(models["minibert"].qa_outputs.state_dict())  # the same starting head
        models["transformers"] = theirs
    targs = TrainingArguments(learning_rate=args.lr, num_train_epochs=args.epochs, train_batch_size=args.batch_size,
                              warmup_proportion=args.warmup, seed=args.seed, device="cpu", precision="fp32",
                              progress=False, evaluate_every_epoch=False, pad_token_id=tok.pad_token_id)

    def score(model):
        out = evaluate(model, eval_f, 64, "cpu", metrics_fn=None)
        results = [SquadResult(s.numpy(), e.numpy()) for s, e in out.logits]
        preds, _, _ = postprocess_predictions(eval_ex, eval_w, results, max_answer_length=args.max_answer_length)
        return squad_scores(eval_json, preds)

    cpu = time.process_time()
    rows = race(models, train_f, targs, score, metrics_fn=None)
    cpu = time.process_time() - cpu
    baselines = {"best-overlap sentence": squad_scores(eval_json, overlap_baseline(eval_ex)),
                 "first sentence": squad_scores(eval_json, first_sentence_baseline(eval_ex))}
    updates = -(-len(train_f) // args.batch_size) * args.epochs
    print(f"\n{'':22s} {'EM':>6s} {'F1':>6s} {'train s':>8s} {'eval s':>7s} {'last loss':>9s}")
    for name, (s, tr, ev, loss) in rows.items():
        print(f"{name:22s} {s['exact_match']:6.1f} {s['f1']:6.1f} {tr:8.1f} {ev:7.1f} {loss:9.4f}")
    for name, s in baselines.items():
        print(f"{name:22s} {s['exact_match']:6.1f} {s['f1']:6.1f}")
    print(f"{updates} updates; CPU time of training and scoring: {cpu:.0f} s")
    if args.compare_transformers:
        (so, to, eo, _), (st, tt, et, _) = rows.values()
        print(f"{'difference':22s} {so['exact_match'] - st['exact_match']:+6.1f} {so['f1'] - st['f1']:+6.1f}  "
              f"time minibert/transformers: train {to / tt:.2f}x, eval {eo / et:.2f}x")
    if args.json:
        print(json.dumps({"task": "squad_v1.1", "seed": args.seed, "ours": fractions(rows["minibert"][0]),
                          "baselines": {k: fractions(v) for k, v in baselines.items()},
                          "updates": updates, "train_seconds": rows["minibert"][1], "cpu_seconds": cpu}))
    if not args.v2:
        return

    # SQuAD 2.0: the v1.1 model goes on training on 2.0 questions, [CLS] the target where there is no answer
    v2_path = data_path("squad", "dev-v2.0-first5articles.json")
    v2_file, v2_dev, held = json.loads(v2_path.read_text(encoding="utf-8")), read_squad(v2_path), set(args.v2_held_out)
    v2_pool = [e for e in v2_dev if e.title not in held]
    v2_train = [v2_pool[i] for i in np.random.default_rng(args.seed).permutation(len(v2_pool))[:args.v2_questions]]
    v2_eval = [e for e in v2_dev if e.title in held]
    v2_train_f, _ = convert_examples_to_features(v2_train, tok, *shape, is_training=True,
                                                 answer_windows_only=not args.every_window)
    v2_eval_f, v2_eval_w = convert_examples_to_features(v2_eval, tok, *shape)
    tune_ids, score_ids = paragraph_halves(v2_eval)
    model = models["minibert"]

    def v2_score():
        results = predict_logits(model, v2_eval_f, pad_token_id=tok.pad_token_id)
        return score_null_answers(v2_eval, v2_eval_w, results, v2_file, tune_ids, score_ids, 20,
                                  args.max_answer_length)

    before = v2_score()
    start = time.perf_counter()
    v2_run = train(model, v2_train_f, replace(targs, learning_rate=args.v2_lr), metrics_fn=None)
    v2_seconds = time.perf_counter() - start
    after = v2_score()
    never = squad_scores(squad_subset(v2_file, score_ids), {q: "" for q in score_ids})
    print(f"\nSQuAD 2.0: {len(v2_train)} training questions ({np.mean([e.is_impossible for e in v2_train]):.0%} "
          f"without an answer; {len(v2_train_f)} windows, {v2_run.state.global_step} updates at lr {args.v2_lr}, "
          f"{v2_seconds:.0f} s), held out {', '.join(sorted(held))}: {len(score_ids)} questions scored with the "
          f"threshold tuned on the other {len(tune_ids)}")
    print(f"{'':28s} {'EM':>6s} {'F1':>6s} {'HasAns F1':>10s} {'NoAns F1':>9s} {'AUC':>6s}")
    for name, sc, auc in (("after 2.0 training", after.honest, after.auc),
                          ("v1.1 model (before)", before.honest, before.auc), ("never answer", never, None)):
        print(f"{name:28s} {sc['exact_match']:6.1f} {sc['f1']:6.1f} {sc['HasAns_f1']:10.1f} {sc['NoAns_f1']:9.1f} "
              + ("" if auc is None else f"{auc:6.3f}"))
    if args.json:
        v2_keys = ("exact_match", "f1", "HasAns_f1", "NoAns_f1")
        ours, v1_model = ({**fractions(s.honest, v2_keys), "auc": s.auc} for s in (after, before))
        print(json.dumps({"task": "squad_v2.0", "seed": args.seed, "ours": ours,
                          "baselines": {"never answer": fractions(never, v2_keys),
                                        "v1.1 model, no 2.0 training": v1_model},
                          "threshold": after.thresholds["honest"], "scored_questions": len(score_ids),
                          "updates": v2_run.state.global_step, "train_seconds": v2_seconds}))


if __name__ == "__main__":
    main()
