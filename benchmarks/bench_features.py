"""Notebook 12's fast mode, as one command: frozen BERT features for MRPC, against word overlap.

    MINIBERT_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_features.py --seed 0 [--json]

On all 408 MRPC dev pairs, the ROC AUC of: the Jaccard overlap of the two sentences' words (BasicTokenizer
tokens), the cosine similarity of mean-pooled vectors at the best and at the last layer (no training), and a
logistic regression (L2, L-BFGS) on [|u - v|, u * v] of the mean-pooled vectors of every layer, trained on the
first ``--train-pairs`` MRPC train pairs (the feature-based use of BERT, paper section 5.3). The encoder is the
notebook's: bert-base-uncased when it is cached, else the packaged all-MiniLM-L6-v2. Nothing here is random
(``--seed`` is accepted for a uniform command line); times are CPU seconds of this process.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from minibert import BertModel, BertTokenizer, features
from minibert.assets import course_checkpoint, describe_checkpoint
from minibert.baselines import LogisticRegression, jaccard_overlap, pair_features
from minibert.datasets import read_mrpc
from minibert.metrics import roc_auc
from minibert.runtime import set_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-pairs", type=int, default=1000, help="MRPC train pairs for the probe (notebook: 1000)")
    ap.add_argument("--l2", type=float, default=1.0, help="L2 penalty of the probe (standardised features)")
    ap.add_argument("--checkpoint", default="bert-base-uncased", help="as notebook 12's CHECKPOINT")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    cpu0 = time.process_time()
    checkpoint = course_checkpoint(args.checkpoint)
    model, tok = BertModel.from_pretrained(checkpoint).eval(), BertTokenizer.from_pretrained(checkpoint)
    train, dev = read_mrpc("train")[:args.train_pairs], read_mrpc("dev")
    y_train, y_dev = np.array([e.label for e in train]), np.array([e.label for e in dev])

    def vectors(examples):
        return [features.sentence_vectors(model, tok, [getattr(e, side) for e in examples], 128, 64).mean
                for side in ("text_a", "text_b")]  # each (layers, N, hidden)

    (dev_a, dev_b), (train_a, train_b) = vectors(dev), vectors(train)
    cosine = [roc_auc(features.cosine_similarity(a, b), y_dev) for a, b in zip(dev_a, dev_b)]
    every_layer = lambda v: np.concatenate(list(v), axis=1)  # noqa: E731  (N, layers * hidden)
    probe = LogisticRegression(args.l2).fit(pair_features(every_layer(train_a), every_layer(train_b)), y_train)
    scores = probe.decision_function(pair_features(every_layer(dev_a), every_layer(dev_b)))
    ours = roc_auc(scores, y_dev)
    overlap = roc_auc([jaccard_overlap(e.text_a, e.text_b) for e in dev], y_dev)
    accuracy = float(np.mean((scores > 0) == y_dev))
    best = int(np.argmax(cosine))
    cpu = time.process_time() - cpu0

    print(f"{describe_checkpoint(checkpoint)}; probe trained on {len(train)} MRPC train pairs, l2 {args.l2}; "
          f"{args.threads} thread(s), {cpu:.0f} s CPU")
    print(f"{'MRPC dev, all ' + str(len(dev)) + ' pairs':<58}{'ROC AUC':>8}")
    for name, auc in (("word overlap (Jaccard of BasicTokenizer words)", overlap),
                      (f"cosine of mean-pooled vectors, best layer ({best + 1})", cosine[best]),
                      (f"cosine of mean-pooled vectors, last layer ({len(cosine)})", cosine[-1]),
                      ("logistic regression on [|u-v|, u*v], every layer", ours)):
        print(f"{name:<58}{auc:>8.4f}")
    print(f"probe over word overlap: {ours - overlap:+.4f} AUC; probe accuracy at P = 0.5: {accuracy:.3f}")
    if args.json:
        print(json.dumps({"task": "mrpc_features", "seed": args.seed, "threads": args.threads,
                          "checkpoint": str(checkpoint), "train_pairs": len(train),
                          "ours": {"auc": ours, "accuracy": accuracy},
                          "baselines": {"word_overlap": {"auc": overlap},
                                        "cosine_best_layer": {"auc": cosine[best], "layer": best + 1},
                                        "cosine_last_layer": {"auc": cosine[-1]}}}))


if __name__ == "__main__":
    main()
