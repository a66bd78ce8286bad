"""Classification metrics for fine-tuning: accuracy, F1, Matthews correlation and a confusion matrix.

Small, dependency-free versions of what GLUE reports (Wang et al. 2019): MRPC and QQP use accuracy and the F1
of the positive class, CoLA uses Matthews correlation, the rest accuracy. SQuAD is scored as the official
evaluate-v1.1/v2.0 scripts do (EM/F1), each version by its own rules; NER at the entity level two ways: as
seqeval's strict IOB2 mode does, and as CoNLL's conlleval script does (the figures papers publish).
"""
from __future__ import annotations

import logging
import math
import re
import string
from collections import Counter
from typing import Dict, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["accuracy", "f1_score", "matthews_corrcoef", "confusion_matrix", "classification_metrics",
           "average_ranks", "roc_auc", "normalize_answer", "squad_exact", "squad_f1", "squad_scores", "iob1_to_iob2",
           "get_entities", "conlleval_entities", "ner_scores"]

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


# ----------------------------------------------------------------------------------------------------------
# ROC AUC (ranking quality of a score, e.g. the cosine similarity of two sentence vectors)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties sharing the mean of the ranks they span (as the Mann-Whitney U test wants)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # starts of runs of equal values
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    run_rank = (starts + 1 + ends) / 2.0                     # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties counting 1/2.

    Computed from ranks (Mann-Whitney U): AUC = (sum of positive ranks - P(P+1)/2) / (P N).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D and of the same length, got shapes {scores.shape} "
                         f"and {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, got values {sorted(set(labels.tolist()))[:5]}")
    if np.isnan(scores).any():
        raise ValueError("scores contain nan; check for zero vectors before the cosine similarity")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = average_ranks(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ----------------------------------------------------------------------------------------------------------
# SQuAD (the official evaluate-v1.1.py / evaluate-v2.0.py semantics) and entity-level NER (seqeval, strict)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation (``string.punctuation``, as the official script does; unicode
    punctuation such as "—" stays), drop the articles a/an/the, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def squad_exact(prediction: str, gold: str) -> float:
    """1.0 when the normalized answers are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str, version: str = "v2.0") -> float:
    """Bag-of-tokens F1 of the normalized answers. v2.0 rule: if either is empty, 1.0 when both are. v1.1 has
    no such rule: no common token is 0.0, so an empty prediction scores 0.0 even against an empty gold."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if version.startswith("v2") and (not p or not g):
        return float(p == g)
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _is_v2(dataset: dict) -> bool:
    """A SQuAD 2.0 file: its version says so, or its questions carry ``is_impossible``."""
    version = str(dataset.get("version", ""))
    return version.startswith(("v2", "2")) or any(
        "is_impossible" in qa for a in dataset["data"] for p in a["paragraphs"] for qa in p["qas"])


def squad_scores(dataset: dict, predictions: Dict[str, str]) -> Dict[str, float]:
    """EM and F1 in percent over *all* questions of a parsed SQuAD file, each question scoring its max over the
    gold answers; a question missing from ``predictions`` scores 0. Each version by its official script:

    - v1.1 (evaluate-v1.1.py): every gold answer counts as given. Three dev questions have the gold ``"."``,
      which normalizes to empty: an empty prediction then has EM 1 (and F1 0) against it.
    - v2.0 (evaluate-v2.0.py, a file whose version is v2 or whose questions carry ``is_impossible``): golds
      that normalize to empty are dropped, an unanswerable question's only gold is ``""`` (so predicting ``""``
      scores 1), and ``HasAns_*`` / ``NoAns_*`` and their counts are added."""
    if not isinstance(dataset, dict) or "data" not in dataset:
        raise ValueError("dataset must be the parsed SQuAD JSON, a dict with a 'data' list "
                         "(pass json.load(f), not json.load(f)['data'])")
    v2 = _is_v2(dataset)
    version = "v2.0" if v2 else "v1.1"
    rows = []  # (has_answer, em, f1)
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                has_answer = bool(qa.get("answers")) and not qa.get("is_impossible", False)
                golds = [a["text"] for a in qa.get("answers", [])]
                if v2:
                    golds = [g for g in golds if normalize_answer(g)] or [""]
                pred = predictions.get(qa["id"])
                if pred is None:
                    logger.warning("Unanswered question %s will receive score 0.", qa["id"])
                    rows.append((has_answer, 0.0, 0.0))
                    continue
                if not golds:
                    raise ValueError(f"question {qa['id']!r} of a v1.1 file has no gold answer; a question "
                                     "without one belongs in a v2.0 file (with is_impossible)")
                rows.append((has_answer, max(squad_exact(pred, g) for g in golds),
                             max(squad_f1(pred, g, version) for g in golds)))
    if not rows:
        raise ValueError("the dataset has no questions")
    out = {"exact_match": 100.0 * sum(r[1] for r in rows) / len(rows),
           "f1": 100.0 * sum(r[2] for r in rows) / len(rows), "total": len(rows)}
    if v2:
        for name, keep in (("HasAns", True), ("NoAns", False)):
            part = [r for r in rows if r[0] == keep]
            out[f"{name}_total"] = len(part)
            if part:
                out[f"{name}_exact"] = 100.0 * sum(r[1] for r in part) / len(part)
                out[f"{name}_f1"] = 100.0 * sum(r[2] for r in part) / len(part)
    return out


def _split_tag(tag: str, where: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I") or not kind:
        raise ValueError(f"{where}: tag {tag!r} is not 'O', 'B-TYPE' or 'I-TYPE'")
    return prefix, kind


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """CoNLL-2003's IOB1 (an entity starts with I- unless it follows one of the same type) to IOB2
    (every entity starts with B-)."""
    out, prev = [], "O"
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag, f"token {i}")
        if prefix == "I" and (prev == "O" or prev[2:] != kind):
            tag = "B-" + kind
        out.append(tag)
        prev = tag
    return out


def get_entities(tags: Sequence[str], scheme: str = "IOB2") -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` (end inclusive) of one tag sequence, decoded strictly: an entity
    is a B-X followed by I-X; an I-X that does not continue an X (IOB2) starts no entity in strict mode,
    so seqeval's ``mode="strict"`` counts it as nothing. ``scheme="IOB1"`` first converts CoNLL's tags."""
    if scheme == "IOB1":
        tags = iob1_to_iob2(tags)
    elif scheme != "IOB2":
        raise ValueError(f"scheme must be 'IOB2' or 'IOB1', not {scheme!r}")
    spans, start, kind = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, k = _split_tag(tag, f"token {i}")
        if start is not None and not (prefix == "I" and k == kind):
            spans.append((kind, start, i - 1))
            start = None
        if prefix == "B":
            start, kind = i, k
    return spans


def conlleval_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` (end inclusive) as CoNLL's ``conlleval`` script chunks a sentence
    (its ``startOfChunk`` / ``endOfChunk``): a chunk starts at B-X, at an I-X after O, and at any tag whose type
    differs from the previous tag's; it ends before B, O or a change of type. So, unlike strict IOB2, an I-X
    that continues nothing starts an entity, and IOB1 and IOB2 tags give the same chunks. This is how the
    published CoNLL-2003 figures (BERT's 92.4 test F1, for one) were scored."""
    spans, start, prev_prefix, prev_kind = [], None, "O", ""
    for i, tag in enumerate(list(tags) + ["O"]):  # conlleval ends every chunk at the sentence boundary
        prefix, kind = _split_tag(tag, f"token {i}")
        if start is not None and (prefix in ("B", "O") or kind != prev_kind):
            spans.append((prev_kind, start, i - 1))
            start = None
        if prefix == "B" or (prefix == "I" and (prev_prefix == "O" or kind != prev_kind)):
            start = i
        prev_prefix, prev_kind = prefix, kind
    return spans


def _prf(tp: int, n_pred: int, n_gold: int) -> Dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": n_gold}


def ner_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
               scheme: str = "IOB2", mode: str = "strict") -> Dict[str, object]:
    """Entity-level precision, recall and F1 (fractions, micro over entities): an entity counts only when type,
    start and end all match. ``per_type`` maps each type to the same three (and its gold ``support``).

    ``mode="strict"`` reads the entities as seqeval's strict IOB2 mode does (:func:`get_entities`;
    ``scheme="IOB1"`` decodes CoNLL's original tags first); ``mode="conlleval"`` as the conlleval script does
    (:func:`conlleval_entities`, where the scheme makes no difference), the rule behind published CoNLL
    figures. The two differ only on tag sequences that strict IOB2 calls invalid, such as O followed by I-X."""
    if mode not in ("strict", "conlleval"):
        raise ValueError(f"mode must be 'strict' or 'conlleval', not {mode!r}")
    if scheme not in ("IOB1", "IOB2"):
        raise ValueError(f"scheme must be 'IOB2' or 'IOB1', not {scheme!r}")
    entities = (lambda tags: get_entities(tags, scheme)) if mode == "strict" else conlleval_entities
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} sentences but predicted has {len(predicted)}")
    gold_set, pred_set = set(), set()
    for n, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sentence {n}: {len(g)} gold tags but {len(p)} predicted; predict one tag per word "
                             "(give the words cut by truncation the tag 'O')")
        try:
            gold_set.update((n,) + e for e in entities(g))
            pred_set.update((n,) + e for e in entities(p))
        except ValueError as err:
            raise ValueError(f"sentence {n}, {err}") from None
    tp = gold_set & pred_set
    types = sorted({e[1] for e in gold_set | pred_set})
    per_type = {t: _prf(sum(e[1] == t for e in tp), sum(e[1] == t for e in pred_set),
                        sum(e[1] == t for e in gold_set)) for t in types}
    out: Dict[str, object] = dict(_prf(len(tp), len(pred_set), len(gold_set)))
    out["per_type"] = per_type
    return out


# ----------------------------------------------------------------------------------------------------------
# ROC curve (to draw beside roc_auc)


def roc_curve(scores: Sequence[float] | np.ndarray,
              labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates as the threshold falls past each distinct score, from (0, 0) to (1, 1);
    tied scores move both rates at once, so the trapezoid area under the curve equals :func:`roc_auc`."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    roc_auc(scores, labels)  # the same checks: 1-D, same length, 0/1 labels with both present, no nan
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of tied scores
    tp, fp = np.cumsum(y == 1)[last], np.cumsum(y == 0)[last]
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]
