"""The simple baselines a careful reader tries before BERT, so every result stands beside the strongest of them.

- Naive Bayes on character n-grams (multinomial, add-alpha smoothing; Wang & Manning 2012 show that bigrams make
  it a strong sentiment baseline): what a bag of characters reaches with the labels alone, no pre-training.
- Word overlap (Jaccard) of two sentences: how far paraphrase detection gets by counting shared words.
- Logistic regression on frozen features (L2, full-batch L-BFGS): the feature-based use of BERT (paper
  section 5.3), a linear probe on sentence vectors, with ``pair_features`` for a sentence pair.

The unigram language model (the masked-LM baseline) is :func:`minibert.pretraining.unigram_baseline`.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch

from minibert.tokenization import BasicTokenizer

__all__ = ["char_ngrams", "NaiveBayes", "words", "jaccard_overlap", "pair_features", "LogisticRegression"]


# ----------------------------------------------------------------------------------------------------------
# Naive Bayes on character n-grams


def char_ngrams(text: str, ngram_range: tuple[int, int] = (1, 2)) -> list[str]:
    """Every run of n characters for n in ``ngram_range`` (inclusive), whitespace removed first: for Chinese,
    one character is one token and a bigram is the smallest unit that often carries a word ("不错")."""
    low, high = ngram_range
    if not 1 <= low <= high:
        raise ValueError(f"ngram_range must be (low, high) with 1 <= low <= high, got {ngram_range}")
    chars = "".join(text.split())
    return [chars[i:i + n] for n in range(low, high + 1) for i in range(len(chars) - n + 1)]


class NaiveBayes:
    """Multinomial Naive Bayes over character n-grams: log P(c) + sum over the text's n-grams of log P(g | c),
    with P(g | c) = (count(g, c) + alpha) / (count(c) + alpha |V|) over the n-grams seen in training.
    N-grams never seen in training are ignored (they score every class alike)."""

    def __init__(self, ngram_range: tuple[int, int] = (1, 2), alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha (add-alpha smoothing) must be > 0, got {alpha}")
        char_ngrams("", ngram_range)  # checks the range
        self.ngram_range, self.alpha = ngram_range, alpha
        self.vocab: dict[str, int] = {}
        self.log_prior = np.zeros(0)
        self.log_likelihood = np.zeros((0, 0))  # (classes, n-grams)

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> "NaiveBayes":
        """Count n-grams per class; labels are class ids 0..C-1, every one of them present."""
        if len(texts) != len(labels) or not texts:
            raise ValueError(f"fit needs as many labels as texts, at least one: got {len(texts)} texts and "
                             f"{len(labels)} labels")
        labels = np.asarray(labels)
        num_classes = int(labels.max()) + 1
        missing = sorted(set(range(num_classes)) - set(labels.tolist()))
        if labels.min() < 0 or missing:
            raise ValueError(f"labels must be 0..{num_classes - 1}, each present; missing or negative: "
                             f"{missing or int(labels.min())}")
        counts = [Counter() for _ in range(num_classes)]
        for text, label in zip(texts, labels):
            counts[label].update(char_ngrams(text, self.ngram_range))
        self.vocab = {g: i for i, g in enumerate(sorted(set().union(*counts)))}
        table = np.zeros((num_classes, len(self.vocab)))
        for c, counter in enumerate(counts):
            for g, n in counter.items():
                table[c, self.vocab[g]] = n
        smoothed = table + self.alpha
        self.log_likelihood = np.log(smoothed) - np.log(smoothed.sum(1, keepdims=True))
        self.log_prior = np.log(np.bincount(labels, minlength=num_classes) / len(labels))
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), classes) unnormalised log posteriors."""
        if not self.vocab:
            raise RuntimeError("call fit(texts, labels) before predicting")
        out = np.tile(self.log_prior, (len(texts), 1))
        for row, text in enumerate(texts):
            ids = [self.vocab[g] for g in char_ngrams(text, self.ngram_range) if g in self.vocab]
            if ids:
                out[row] += self.log_likelihood[:, ids].sum(1)
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of every text."""
        return self.decision_function(texts).argmax(1)


# ----------------------------------------------------------------------------------------------------------
# Word overlap

_BASIC = BasicTokenizer(do_lower_case=True)


def words(text: str) -> set[str]:
    """The set of words BERT's BasicTokenizer cuts the text into (lower-cased, accents stripped, every
    punctuation mark a word of its own), before WordPiece."""
    return set(_BASIC.tokenize(text))


def jaccard_overlap(text_a: str, text_b: str) -> float:
    """|A & B| / |A | B| of the two texts' word sets (0 when both have no words): the paraphrase score that
    only counts shared words."""
    a, b = words(text_a), words(text_b)
    return len(a & b) / len(a | b) if a | b else 0.0


# ----------------------------------------------------------------------------------------------------------
# Logistic regression on frozen features


def pair_features(u: np.ndarray, v: np.ndarray, parts: Sequence[str] = ("abs_diff", "product")) -> np.ndarray:
    """Features of a sentence pair from its two (N, hidden) vectors, concatenated in the order of ``parts``:
    "u", "v", "abs_diff" |u - v| and "product" u * v (InferSent's combination, Conneau et al. 2017). The last
    two are symmetric: swapping the sentences gives the same features."""
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    if u.shape != v.shape or u.ndim != 2:
        raise ValueError(f"u and v must be (N, hidden) arrays of one shape, got {u.shape} and {v.shape}")
    table = {"u": lambda: u, "v": lambda: v, "abs_diff": lambda: np.abs(u - v), "product": lambda: u * v}
    unknown = [p for p in parts if p not in table]
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty list from {list(table)}, got {list(parts)}")
    return np.concatenate([table[p]() for p in parts], axis=1)


class LogisticRegression:
    """Binary logistic regression with an L2 penalty, fitted by full-batch L-BFGS in float64.

    The features are standardised with the training set's mean and standard deviation first, so one ``l2``
    suits features of any scale. Loss = mean log loss + l2 / 2 * |w|^2 (the bias is not penalised)."""

    def __init__(self, l2: float = 1.0, max_iter: int = 500) -> None:
        if not l2 >= 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2, self.max_iter = l2, max_iter
        self.mean = self.std = self.weight = None
        self.bias = 0.0

    def fit(self, x: np.ndarray, y: Sequence[int]) -> "LogisticRegression":
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"x must be (N, features) with one label per row, got {x.shape} and {len(y)} labels")
        if not np.isin(y, (0, 1)).all() or len(set(y.tolist())) < 2:
            raise ValueError("labels must be 0 and 1, both present")
        if not np.isfinite(x).all():
            raise ValueError("features contain nan or inf")
        self.mean, self.std = x.mean(0), x.std(0) + 1e-8
        xs = torch.from_numpy((x - self.mean) / self.std)
        target = torch.from_numpy(y.astype(np.float64))
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=1e-9,
                                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, target)
            loss = loss + 0.5 * self.l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.weight, self.bias = w.detach().numpy(), float(b.detach())
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """The logit of class 1 for every row (rank by it for a ROC AUC)."""
        if self.weight is None:
            raise RuntimeError("call fit(x, y) before predicting")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.weight):
            raise ValueError(f"x must be (N, {len(self.weight)}), got {x.shape}")
        return (x - self.mean) / self.std @ self.weight + self.bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) for every row."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(x)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision_function(x) > 0).astype(np.int64)
