"""What bench_squad, bench_swag and bench_ner share: their common arguments, and one race of minibert against
transformers through minibert's own loop (same features, batches, BertAdam and schedule), timing training and
evaluation separately."""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import torch

from minibert.training import TrainingArguments, train


def task_parser(doc: str, max_seq_length: int, batch_size: int) -> argparse.ArgumentParser:
    """The arguments every task benchmark takes; the caller adds its data-size arguments."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--max-seq-length", type=int, default=max_seq_length)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return p


def race(models: dict[str, torch.nn.Module], train_features: list[dict], targs: TrainingArguments,
         score: Callable[[torch.nn.Module], Any], **train_kwargs: Any) -> dict[str, tuple[Any, float, float, float]]:
    """Train each model on the same features with the same arguments, then score it:
    name -> (score, train seconds, eval seconds, last training loss)."""
    rows = {}
    for name, model in models.items():
        start = time.perf_counter()
        res = train(model, train_features, targs, **train_kwargs)
        train_secs = time.perf_counter() - start
        start = time.perf_counter()
        rows[name] = (score(model), train_secs, time.perf_counter() - start, res.losses[-1])
    return rows
