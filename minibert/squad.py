"""SQuAD features and answers, as the 2019 ``run_squad.py`` makes them (BERT paper sec. 4.2 and 4.3).

A question and a long paragraph do not fit in one input, so the paragraph is cut into windows of
``max_seq_length`` tokens that start every ``doc_stride`` tokens: ``[CLS] question [SEP] window [SEP]``.
A token seen in several windows is scored only in the window where it has the most context on both sides
(the "max context" rule). Every token keeps the character span of the piece of text it came from, so an
answer predicted as (start token, end token) is cut from the original context, with its spaces and accents.
For SQuAD 2.0 the score of "no answer" is the [CLS] start + end logits; the question is left unanswered when
it beats the best span by more than a threshold tuned on dev.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from minibert.data import collate
from minibert.datasets import SquadExample
from minibert.metrics import normalize_answer, roc_auc, squad_f1, squad_scores
from minibert.runtime import dry_run_cut, eval_mode
from minibert.tokenization import is_chinese_char, is_punctuation, is_whitespace

logger = logging.getLogger(__name__)

__all__ = ["context_pieces", "tokenize_context", "doc_spans", "max_context", "Window", "convert_examples_to_features",
           "SquadResult", "predict_logits",
           "postprocess_predictions", "best_null_threshold", "paragraph_halves", "squad_subset", "overlap_baseline",
           "first_sentence_baseline"]

Span = Tuple[int, int]  # [start, end) character offsets into the context


def context_pieces(context: str) -> List[Span]:
    """Character spans of the pieces BERT's BasicTokenizer would make: whitespace-separated runs, split
    around punctuation and CJK characters. Tokenizing each piece alone gives the same WordPieces as
    tokenizing the whole text, so each WordPiece can carry its piece's span."""
    spans, start = [], None
    for i, ch in enumerate(context):
        space = is_whitespace(ch)
        if space or is_punctuation(ch) or is_chinese_char(ord(ch)):
            if start is not None:
                spans.append((start, i))
                start = None
            if not space:
                spans.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(context)))
    return spans


def tokenize_context(context: str, tokenizer) -> Tuple[List[str], List[Span]]:
    """WordPieces of ``context`` and, for each, its character span: its own characters when the piece keeps
    its length through lower-casing and accent stripping (``##`` pieces then tile the piece exactly), else
    the span of the whole piece it came from."""
    tokens, spans = [], []
    for s, e in context_pieces(context):
        pieces = tokenizer.tokenize(context[s:e])
        widths = [len(t) - 2 if t.startswith("##") else len(t) for t in pieces]
        exact = sum(widths) == e - s and tokenizer.unk_token not in pieces
        start = s
        for t, w in zip(pieces, widths):
            tokens.append(t)
            spans.append((start, start + w) if exact else (s, e))
            start += w
    return tokens, spans


def doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> List[Tuple[int, int]]:
    """Windows (start, length) over the paragraph's tokens: each starts ``doc_stride`` after the previous
    (or less, so the last window ends at the paragraph's end), as in run_squad."""
    if max_tokens_for_doc < 1:
        raise ValueError("max_seq_length leaves no room for the paragraph after the question; raise "
                         "max_seq_length or lower max_query_length")
    out, start = [], 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        out.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return out or [(0, 0)]


def max_context(spans: Sequence[Tuple[int, int]], span_index: int, position: int) -> bool:
    """True when window ``span_index`` gives token ``position`` its best context: the largest
    min(left, right) context, ties to the longer window (run_squad's ``_check_is_max_context``)."""
    best_score, best = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best = score, i
    return best == span_index


@dataclass
class Window:
    """Where a feature's tokens come from: its question (``example_index``), its window over the paragraph,
    each token's character span in the context (None for the question and special tokens) and whether the
    token has its max context in this window."""

    example_index: int
    doc_span_index: int
    token_spans: List[Optional[Span]]
    token_is_max_context: List[bool]


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer, max_seq_length: int = 384,
                                 doc_stride: int = 128, max_query_length: int = 64, is_training: bool = False,
                                 answer_windows_only: bool = False) -> Tuple[List[Dict], List[Window]]:
    """One feature per window, for :func:`minibert.data.collate`: ``guid``, ``input_ids``, ``token_type_ids``
    and, for training, ``start_positions`` / ``end_positions`` (0 = [CLS] when the answer is not wholly inside
    the window or the question has none); and, in a parallel list, the :class:`Window` that maps the window's
    tokens back to the context for post-processing.

    ``answer_windows_only`` (training only) leaves out the windows of an answerable question that do not hold its
    answer, so [CLS] is a target only for questions without an answer, where it means "no answer". run_squad keeps
    every window; on a budget of a few dozen updates the [CLS] targets of answerable questions crowd out learning
    to find the answer (notebook 13)."""
    if answer_windows_only and not is_training:
        raise ValueError("answer_windows_only=True needs is_training=True: evaluation windows are never left out")
    features, windows = [], []
    cache: Dict[str, Tuple[List[str], List[Span]]] = {}
    cls, sep = tokenizer.cls_token, tokenizer.sep_token
    for ex_index, ex in enumerate(examples):
        query = tokenizer.tokenize(ex.question_text)[:max_query_length]
        if ex.context_text not in cache:
            cache = {ex.context_text: tokenize_context(ex.context_text, tokenizer)}  # questions share paragraphs
        doc_tokens, doc_char = cache[ex.context_text]
        tok_start = tok_end = None
        if is_training and not ex.is_impossible:
            text, start = ex.answers[0]
            end = start + len(text)
            inside = [i for i, (s, e) in enumerate(doc_char) if s < end and e > start]
            if not inside:
                raise ValueError(f"question {ex.qas_id!r}: answer {text!r} at character {start} covers no token "
                                 f"of its context (the span is outside the context or only whitespace)")
            tok_start, tok_end = inside[0], inside[-1]
        spans = doc_spans(len(doc_tokens), max_seq_length - len(query) - 3, doc_stride)
        for span_index, (start, length) in enumerate(spans):
            holds_answer = tok_start is not None and start <= tok_start and tok_end < start + length
            if answer_windows_only and tok_start is not None and not holds_answer:
                continue  # an answerable question's window without its answer: not built at all
            tokens = [cls, *query, sep, *doc_tokens[start:start + length], sep]
            offset = len(query) + 2
            token_spans: List[Optional[Span]] = [None] * offset + list(doc_char[start:start + length]) + [None]
            is_max = [False] * offset + [max_context(spans, span_index, start + i) for i in range(length)] + [False]
            feat = {"guid": f"{ex.qas_id}-{span_index}", "input_ids": tokenizer.convert_tokens_to_ids(tokens),
                    "token_type_ids": [0] * offset + [1] * (length + 1)}
            if is_training:
                if holds_answer:
                    feat["start_positions"] = tok_start - start + offset
                    feat["end_positions"] = tok_end - start + offset
                else:
                    feat["start_positions"] = feat["end_positions"] = 0
            windows.append(Window(ex_index, span_index, token_spans, is_max))
            features.append(feat)
    return features, windows


@dataclass
class SquadResult:
    """The model's logits for one feature (numpy arrays of length ``len(input_ids)``)."""

    start_logits: np.ndarray
    end_logits: np.ndarray


@torch.no_grad()
def predict_logits(model: torch.nn.Module, features: Sequence[Dict], pad_token_id: int = 0,
                   batch_size: int = 32) -> List[SquadResult]:
    """Start and end logits of ``model`` (a :class:`BertForQuestionAnswering`) for every feature, in order;
    features are batched by length so little padding is computed. In a dry run (``MINIBERT_DRY_RUN=1``), for the
    first batches' worth of features only (``features[:len(results)]``)."""
    features = dry_run_cut(features, batch_size, "SQuAD prediction")
    device = next(model.parameters()).device
    order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable")
    results: List[Optional[SquadResult]] = [None] * len(features)
    keep = ("input_ids", "token_type_ids")
    with eval_mode(model):
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            batch = collate([{k: features[j][k] for k in keep} for j in idx], pad_token_id)
            start, end = model(**{k: v.to(device) for k, v in batch.items()})
            for row, j in enumerate(idx):
                n = len(features[j]["input_ids"])
                results[j] = SquadResult(start[row, :n].float().cpu().numpy(), end[row, :n].float().cpu().numpy())
    return results


def postprocess_predictions(examples: Sequence[SquadExample], windows: Sequence[Window],
                            results: Sequence[SquadResult], n_best_size: int = 20, max_answer_length: int = 30,
                            version_2_with_negative: bool = False,
                            null_score_diff_threshold: float = 0.0) -> Tuple[Dict[str, str], Dict[str, list],
                                                                             Dict[str, float]]:
    """Answers as text from the logits, as run_squad's ``write_predictions``: the ``n_best_size`` best starts
    and ends of every window, kept when both lie in the paragraph, start <= end, the span is at most
    ``max_answer_length`` tokens and the start has its max context there; scored start + end logit.
    Returns (predictions {id: text}, n-best lists with softmax probabilities, and for v2.0 the
    null-minus-best-span score per question for :func:`best_null_threshold`)."""
    if len(windows) != len(results):
        raise ValueError(f"{len(windows)} windows but {len(results)} results; give one result per feature")
    by_example = collections.defaultdict(list)
    for w, r in zip(windows, results):
        by_example[w.example_index].append((w, r))
    predictions, nbest_out, null_diff = {}, {}, {}
    for ex_index, ex in enumerate(examples):
        candidates, null_score = [], None
        for w, r in by_example.get(ex_index, []):
            s_logits, e_logits = np.asarray(r.start_logits), np.asarray(r.end_logits)
            n = len(w.token_spans)
            s_logits, e_logits = s_logits[:n], e_logits[:n]
            score0 = float(s_logits[0] + e_logits[0])
            null_score = score0 if null_score is None else min(null_score, score0)
            spans, is_max = w.token_spans, w.token_is_max_context
            for s in np.argsort(-s_logits)[:n_best_size]:
                for e in np.argsort(-e_logits)[:n_best_size]:
                    if spans[s] is None or spans[e] is None or e < s or e - s + 1 > max_answer_length \
                            or not is_max[s]:
                        continue
                    candidates.append((float(s_logits[s] + e_logits[e]), spans[s][0], spans[e][1]))
        candidates.sort(key=lambda c: -c[0])
        seen, nbest = set(), []
        for score, cs, ce in candidates:
            text = ex.context_text[cs:ce]
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "score": score, "char_start": cs})
            if len(nbest) == n_best_size:
                break
        if not nbest:
            nbest.append({"text": "", "score": 0.0, "char_start": -1})
        if version_2_with_negative and null_score is not None:
            nbest.append({"text": "", "score": null_score, "char_start": -1})
        scores = np.array([c["score"] for c in nbest])
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        for c, p in zip(nbest, probs):
            c["probability"] = float(p)
        best_span = next((c for c in nbest if c["text"]), None)
        if version_2_with_negative:
            diff = (null_score if null_score is not None else 0.0) - (best_span["score"] if best_span else -1e9)
            null_diff[ex.qas_id] = diff
            predictions[ex.qas_id] = "" if best_span is None or diff > null_score_diff_threshold \
                else best_span["text"]
        else:
            predictions[ex.qas_id] = best_span["text"] if best_span else ""
        nbest_out[ex.qas_id] = nbest
    return predictions, nbest_out, null_diff


def best_null_threshold(examples: Sequence[SquadExample], null_diff: Dict[str, float],
                        best_span_text: Dict[str, str], metric: str = "f1") -> Tuple[float, float]:
    """The threshold on null-minus-span score that maximises dev EM or F1 (evaluate-v2.0's ``find_best_thresh``):
    scan the questions in order of their score difference, answering "" for all above the cut. Returns
    (threshold, best score in percent). ``best_span_text`` holds each question's best non-null span."""
    if metric not in ("f1", "exact"):
        raise ValueError(f"metric must be 'f1' or 'exact', not {metric!r}")
    gain_span, gain_null = {}, {}
    for ex in examples:
        golds = [t for t, _ in ex.answers if normalize_answer(t)] or [""]
        pred = best_span_text.get(ex.qas_id, "")
        if metric == "f1":
            gain_span[ex.qas_id] = max(squad_f1(pred, g) for g in golds)
        else:
            gain_span[ex.qas_id] = max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        gain_null[ex.qas_id] = float(ex.is_impossible or not ex.answers)
    # Start with every question answered "" (threshold below every diff), then answer them one by one.
    qids = sorted(null_diff, key=lambda q: null_diff[q])
    score = sum(gain_null[q] for q in qids)
    best, best_thresh = score, (null_diff[qids[0]] - 1.0) if qids else 0.0
    for q in qids:
        score += gain_span[q] - gain_null[q]
        if score > best:
            best, best_thresh = score, null_diff[q]
    return best_thresh, 100.0 * best / max(len(qids), 1)


def paragraph_halves(examples: Sequence[SquadExample]) -> Tuple[set, set]:
    """Question ids split in two by paragraph, alternately in file order, so questions that share a paragraph
    stay on one side: tune a threshold on one half and score the other, instead of scoring the questions it
    was tuned on (which only gives an upper bound)."""
    paragraphs: Dict[Tuple[str, str], int] = {}
    halves: Tuple[set, set] = (set(), set())
    for ex in examples:
        k = paragraphs.setdefault((ex.title, ex.context_text), len(paragraphs))
        halves[k % 2].add(ex.qas_id)
    return halves


def squad_subset(dataset: dict, ids: set) -> dict:
    """The parsed SQuAD file with only the questions in ``ids`` (articles and paragraphs left empty dropped),
    for :func:`minibert.metrics.squad_scores` on part of a file."""
    data = []
    for article in dataset["data"]:
        paragraphs = [{**p, "qas": [qa for qa in p["qas"] if qa["id"] in ids]} for p in article["paragraphs"]]
        paragraphs = [p for p in paragraphs if p["qas"]]
        if paragraphs:
            data.append({**article, "paragraphs": paragraphs})
    return {**dataset, "data": data}


@dataclass
class NullAnswerScores:
    """SQuAD 2.0 on held-out questions (official scores, in percent): with the null threshold tuned on the other
    half of the paragraphs (``honest``) and on the scored questions themselves (``upper_bound``, what
    evaluate-v2.0.py's ``best_f1`` reports), each threshold, every question's best non-null span, and the ROC
    AUC of the no-answer score against "has no answer" over all the questions (0.5: the score knows nothing)."""

    honest: Dict[str, float]
    upper_bound: Dict[str, float]
    thresholds: Dict[str, float]
    spans: Dict[str, str]
    auc: float


def score_null_answers(examples: Sequence[SquadExample], windows: Sequence[Window], results: Sequence[SquadResult],
                       dataset: dict, tune_ids: set, score_ids: set, n_best_size: int = 20,
                       max_answer_length: int = 30) -> NullAnswerScores:
    """Score a model's SQuAD 2.0 logits the honest way: tune the null threshold (:func:`best_null_threshold`) on
    ``tune_ids`` and score ``score_ids`` with it, two halves from :func:`paragraph_halves`; ``dataset`` is the
    parsed 2.0 file the examples came from. ``results`` may cover a prefix of the windows (a dry run)."""
    if not tune_ids or not score_ids or tune_ids & score_ids:
        raise ValueError(f"tune_ids ({len(tune_ids)}) and score_ids ({len(score_ids)}) must be two non-empty, "
                         "disjoint sets of question ids")
    _, nbest, null_diff = postprocess_predictions(examples, windows[:len(results)], results, n_best_size,
                                                  max_answer_length, version_2_with_negative=True,
                                                  null_score_diff_threshold=float("inf"))
    spans = {q: next((c["text"] for c in nbest[q] if c["text"]), "") for q in nbest}
    scores, thresholds = {}, {}
    for name, ids in (("honest", tune_ids), ("upper_bound", score_ids)):
        half = [e for e in examples if e.qas_id in ids]  # file order, so equal scores tie the same way every run
        thresholds[name], _ = best_null_threshold(half, {e.qas_id: null_diff[e.qas_id] for e in half}, spans)
        answers = {q: "" if null_diff[q] > thresholds[name] else spans[q] for q in score_ids}
        scores[name] = squad_scores(squad_subset(dataset, score_ids), answers)
    auc = roc_auc([null_diff[e.qas_id] for e in examples], [int(e.is_impossible) for e in examples])
    return NullAnswerScores(scores["honest"], scores["upper_bound"], thresholds, spans, auc)


def _sentences(context: str) -> List[str]:
    """The context cut at '. ', '? ' and '! ' (a rough sentence split, enough for a baseline)."""
    return [s for s in context.replace("? ", ". ").replace("! ", ". ").split(". ") if s] or [context]


def overlap_baseline(examples: Sequence[SquadExample]) -> Dict[str, str]:
    """A trivial baseline: answer with the context sentence that shares most words with the question."""
    preds = {}
    for ex in examples:
        q = set(normalize_answer(ex.question_text).split())
        preds[ex.qas_id] = max(_sentences(ex.context_text), key=lambda s: len(q & set(normalize_answer(s).split())))
    return preds


def first_sentence_baseline(examples: Sequence[SquadExample]) -> Dict[str, str]:
    """A trivial baseline that ignores the question: answer with the context's first sentence."""
    return {ex.qas_id: _sentences(ex.context_text)[0] for ex in examples}
