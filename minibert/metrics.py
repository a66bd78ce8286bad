"""Classification metrics for fine-tuning: accuracy, F1, Matthews correlation and a confusion matrix.

Small, dependency-free versions of what GLUE reports (Wang et al. 2019): MRPC and QQP use accuracy and the F1
of the positive class, CoLA uses Matthews correlation, the rest accuracy.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["accuracy", "f1_score", "matthews_corrcoef", "confusion_matrix", "classification_metrics",
           "TASK_METRICS"]

# The metric each task is judged by (GLUE paper, Table 1; ChnSentiCorp is reported as accuracy).
TASK_METRICS = {"mrpc": ("accuracy", "f1"), "qqp": ("accuracy", "f1"), "cola": ("mcc",),
                "chnsenticorp": ("accuracy",), "sst2": ("accuracy",)}


def _as_int_array(x: Sequence[int], name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-d sequence of class ids, got shape {a.shape}")
    return a.astype(np.int64)


def _check(preds: Sequence[int], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    p, y = _as_int_array(preds, "preds"), _as_int_array(labels, "labels")
    if len(p) != len(y):
        raise ValueError(f"preds has {len(p)} entries but labels has {len(y)}; pass one prediction per label")
    if len(y) == 0:
        raise ValueError("cannot compute a metric on 0 examples; is the evaluation split empty?")
    return p, y


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Fraction of predictions equal to the label."""
    p, y = _check(preds, labels)
    return float((p == y).mean())


def confusion_matrix(preds: Sequence[int], labels: Sequence[int], num_labels: Optional[int] = None) -> np.ndarray:
    """Counts, rows = true label, columns = predicted label (the scikit-learn convention)."""
    p, y = _check(preds, labels)
    n = num_labels if num_labels is not None else int(max(p.max(), y.max())) + 1
    if p.min() < 0 or y.min() < 0 or p.max() >= n or y.max() >= n:
        raise ValueError(f"class ids must lie in [0, {n}); got preds in [{p.min()}, {p.max()}], "
                         f"labels in [{y.min()}, {y.max()}]")
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def f1_score(preds: Sequence[int], labels: Sequence[int], average: str = "binary", pos_label: int = 1) -> float:
    """F1 = 2PR/(P+R). `binary`: F1 of `pos_label` (what GLUE reports for MRPC); `macro`: mean over classes.

    A class that is never predicted nor present scores 0, as in scikit-learn's `zero_division=0`.
    """
    p, y = _check(preds, labels)

    def one(c: int) -> float:
        tp = int(((p == c) & (y == c)).sum())
        fp = int(((p == c) & (y != c)).sum())
        fn = int(((p != c) & (y == c)).sum())
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    if average == "binary":
        return one(pos_label)
    if average == "macro":
        classes = np.union1d(p, y)
        return float(np.mean([one(int(c)) for c in classes]))
    raise ValueError(f"average must be 'binary' or 'macro', not {average!r}")


def matthews_corrcoef(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004); 0 when it is undefined (a constant column)."""
    p, y = _check(preds, labels)
    cm = confusion_matrix(p, y).astype(np.float64)
    t, q = cm.sum(axis=1), cm.sum(axis=0)  # true counts, predicted counts
    c, s = np.trace(cm), cm.sum()
    denom = math.sqrt((s * s - (q * q).sum()) * (s * s - (t * t).sum()))
    return 0.0 if denom == 0 else float((c * s - (t * q).sum()) / denom)


def classification_metrics(preds: Sequence[int], labels: Sequence[int], num_labels: int = 2) -> Dict[str, float]:
    """Accuracy, F1 (binary for 2 classes, else macro) and MCC in one dict, as the training loop logs them."""
    out = {"accuracy": accuracy(preds, labels),
           "f1": f1_score(preds, labels, average="binary" if num_labels == 2 else "macro"),
           "mcc": matthews_corrcoef(preds, labels)}
    return out
