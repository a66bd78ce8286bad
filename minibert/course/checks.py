"""Exercise checkers: run a learner's function against minibert on tricky cases and name the first difference.

One section per notebook, in course order. Each ``check_*`` raises AssertionError with a message that says
which case failed, what was expected and, where a typical mistake explains the difference, that mistake
("did you scale by sqrt(d)?"): the checker recomputes the known wrong answers and compares. An exception raised
by the learner's function becomes an AssertionError that names it ("your function raised ValueError: ..."); an
empty stub's NotImplementedError passes through, so the runner (``minibert.course.exercises``) can say the
function is not written yet. References are the library's own code paths (explicit attention, ``BertLayer``,
``BertAdam.step``, ``masked_lm_loss``, ``head_statistics``, ``roc_auc``, ``postprocess_predictions``,
``iob1_to_iob2``, ``memory.estimate``), not second copies of the math.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minibert import assets, memory
from minibert.course import solutions
from minibert.data import Feature, collate
from minibert.datasets import SquadExample
from minibert.heads import BertForMultipleChoice, BertForSequenceClassification, masked_lm_loss
from minibert.metrics import iob1_to_iob2, roc_auc
from minibert.modeling import BertConfig, BertModel, explicit_attention, extended_attention_mask
from minibert.optimization import BertAdam
from minibert.pretraining import IGNORE_INDEX
from minibert.squad import SquadResult, Window, postprocess_predictions
from minibert.tokenization import BasicTokenizer, WordpieceTokenizer, load_vocab
from minibert.training import num_update_steps
from minibert.viz import BatchAttention, head_statistics


def _call(fn: Callable[..., Any], *args: Any, case: str | None = None, **kwargs: Any) -> Any:
    """Run the learner's function. Its exception becomes an AssertionError naming it (and the case); an empty
    stub's NotImplementedError passes through unchanged."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # the learner's bug, reported as a failed check, not as a traceback
        where = f" on case: {case}" if case else ""
        raise AssertionError(f"your function raised {type(err).__name__}: {err}{where}") from err


def _close(a: Any, b: torch.Tensor, atol: float) -> bool:
    """True when ``a`` is a tensor of b's shape within atol of it (a quiet comparison for diagnosing)."""
    return (isinstance(a, torch.Tensor) and tuple(a.shape) == tuple(b.shape)
            and bool(torch.isfinite(a).all()) and (a.detach().double() - b.double()).abs().max().item() <= atol)


def _which_mistake(got: Any, mistakes: Mapping[str, torch.Tensor], atol: float) -> str:
    """The hint of the first known wrong answer that ``got`` reproduces, as a suffix; '' when none does."""
    return next((f" - {hint}" for hint, wrong in mistakes.items() if _close(got, wrong, atol)), "")


# ----------------------------------------------------------------------------------------------------------
# 00 BERT's size
# ----------------------------------------------------------------------------------------------------------

def _count_without(config: BertConfig, part: str) -> int:
    """The parameter count with one typical omission (a known wrong answer)."""
    H, FF, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    full = memory.parameter_count(config, num_labels=None)
    missing = {"pooler": H * H + H,
               "biases": L * (4 * H + FF + H) + H,
               "LayerNorms": 2 * H * (2 * L + 1),
               "position and segment embeddings": (config.max_position_embeddings + config.type_vocab_size) * H,
               "one attention projection": L * (H * H + H)}
    return full - missing[part]


def check_parameter_count(fn: Callable[[BertConfig], int]) -> None:
    """Check a learner's ``fn(config) -> number of weights of BertModel`` (pooler included) against
    :func:`minibert.memory.parameter_count`, itself tested against ``BertModel(config).parameters()``."""
    configs = {"BERT-Base": BertConfig(),
               "BERT-Large": BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        intermediate_size=4096),
               "all-MiniLM-L6-v2": BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
               "a tiny BERT (H=32, 2 layers, vocab 100)": BertConfig(vocab_size=100, hidden_size=32,
                                                                     num_hidden_layers=2, num_attention_heads=2,
                                                                     intermediate_size=37,
                                                                     max_position_embeddings=64)}
    hints = {"pooler": "the pooler (a dense layer H x H + H on [CLS]) is part of BertModel",
             "biases": "every linear layer has a bias too",
             "LayerNorms": "each LayerNorm has a weight and a bias of H values (one after the embeddings, two "
                           "per layer)",
             "position and segment embeddings": "the embeddings are tokens + positions (max_position_embeddings) "
                                                "+ segments (type_vocab_size)",
             "one attention projection": "attention has four H x H projections: query, key, value and output"}
    for name, config in configs.items():
        want = memory.parameter_count(config, num_labels=None)
        got = _call(fn, config, case=name)
        if isinstance(got, torch.Tensor):
            got = got.item()
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise AssertionError(f"{name}: your function returned {got!r} ({type(got).__name__}); return the "
                                 "number of weights as an int")
        if got != want:
            hint = next((f" - {h}" for part, h in hints.items() if got == _count_without(config, part)), "")
            raise AssertionError(f"{name}: your function returned {got:,}, expected {want:,} "
                                 f"(off by {got - want:+,}){hint}")


# ----------------------------------------------------------------------------------------------------------
# 01 tokenizer: basic tokenization and WordPiece
# ----------------------------------------------------------------------------------------------------------

_WORDPIECE_CASES = ["unaffable", "unwanted", "running", "puppeteer", "henson", "the", "a", "tokenization",
                    "embeddings", "supercalifragilisticexpialidocious", "x" * 101, "x" * 100, "🤗", "naïve",
                    "##ing", "1234567", "ﬁ", "über", "Hello", "straße", "[UNK]", "##", "#", "a##b", "",
                    "pneumonoultramicroscopicsilicovolcanoconiosis", "zzzzzzzzzzzzqqqq", "é", "中文", "αβγ"]

_BASIC_CASES = [" \tHeLLo!how  \n Are yoU?  ", "H\u00e9llo", "ah\u535a\u63a8zz", "UNwant\u00e9d,running",
                "a\u0000b\ufffdc\u200bd", "e\u0301 \u00e9", "don't stop--now", "$5.00 (approx.)",
                "\u3000full\u3000width\u3000", "\u00bfQu\u00e9?\u00a1S\u00ed!", "[CLS] [SEP] x", "\u0301",
                "Ⅻ ﬁne ΣΑΣ İstanbul", "a\u2028b\u2029c\x1fd", "", "Jim Henson was a puppeteer"]


def _first_mismatch(fn: Callable, reference: Callable, cases: Iterable, what: str) -> int:
    n = 0
    for case in cases:
        expected = reference(case)
        try:
            got = fn(case)
        except NotImplementedError:
            raise
        except Exception as err:  # the learner's bug, reported with the input that triggered it
            raise AssertionError(f"your function raised {type(err).__name__}: {err} on input {case!r} "
                                 f"(expected {expected})") from err
        if got is None or isinstance(got, str) or list(got) != expected:
            shown = got if got is None or isinstance(got, str) else list(got)
            raise AssertionError(f"{what} differs on input {case!r}: got {shown!r}, expected {expected}")
        n += 1
    return n


def check_wordpiece(fn: Callable[[str, dict], list[str]], vocab: dict[str, int] | None = None,
                    words: Iterable[str] | None = None) -> int:
    """Run a learner's `fn(word, vocab) -> pieces` against ours on tricky words; AssertionError names the first
    difference. Returns the number of words checked. vocab defaults to bert-base-uncased."""
    if vocab is None:
        vocab = load_vocab(assets.vocab_path("bert-base-uncased"))
    ours = WordpieceTokenizer(vocab)
    cases = list(words) if words is not None else _WORDPIECE_CASES
    return _first_mismatch(lambda w: fn(w, vocab), ours.tokenize_word, cases, "your WordPiece function")


def check_basic_tokenizer(fn: Callable[[str], list[str]], do_lower_case: bool = True,
                          texts: Iterable[str] | None = None) -> int:
    """Run a learner's `fn(text) -> words` against BasicTokenizer on tricky texts (control characters, accents,
    CJK, punctuation, odd whitespace); AssertionError names the first difference."""
    ours = BasicTokenizer(do_lower_case=do_lower_case)
    cases = list(texts) if texts is not None else _BASIC_CASES
    return _first_mismatch(fn, ours.tokenize, cases, "your basic tokenizer")

# ----------------------------------------------------------------------------------------------------------
# 02 attention, 03 one BERT layer
# ----------------------------------------------------------------------------------------------------------

def _tensor_difference(name: str, theirs: Any, ours: torch.Tensor, atol: float, hint: str = "") -> None:
    if not isinstance(theirs, torch.Tensor):
        raise AssertionError(f"{name}: expected a tensor, got {type(theirs).__name__}")
    if tuple(theirs.shape) != tuple(ours.shape):
        raise AssertionError(f"{name}: shape {tuple(theirs.shape)}, expected {tuple(ours.shape)}{hint}")
    diff = (theirs.detach().float() - ours.detach().float()).abs()
    if not torch.isfinite(theirs).all():
        idx = tuple(int(i) for i in (~torch.isfinite(theirs)).nonzero()[0])
        raise AssertionError(f"{name}: non-finite value {theirs[idx].item()} at index {idx} (is a masked "
                             f"row all -inf, or did you divide by zero?){hint}")
    if diff.max() > atol:
        idx = tuple(int(i) for i in (diff > atol).nonzero()[0])
        raise AssertionError(f"{name}: at index {idx} got {theirs[idx].item():.6f}, expected "
                             f"{ours[idx].item():.6f} (max abs difference {diff.max().item():.2e} > {atol}){hint}")


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d) + mask) v on (..., seq, head_dim) tensors; mask (batch, seq) of 1/0 or None.
    Returns (context, probabilities), computed by the library's explicit attention path."""
    additive = None if mask is None else extended_attention_mask(mask, q.dtype)
    return explicit_attention(q, k, v, additive)


def _attention_mistakes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The probabilities of the classic wrong attentions, keyed by the hint that names each mistake."""
    d = q.shape[-1]
    raw = q @ k.transpose(-1, -2)
    keys = 0.0 if mask is None else (1.0 - mask[:, None, None, :].float()) * -10000.0
    out = {"did you scale by sqrt(d)? The scores are q k^T / sqrt(head_dim)": (raw + keys).softmax(-1),
           "you divided the scores by d; divide by sqrt(d)": (raw / d + keys).softmax(-1),
           "softmax over the wrong axis: each query's row (the keys, dim=-1) must sum to 1":
               (raw / math.sqrt(d) + keys).softmax(-2)}
    if mask is not None:
        out["multiplying the scores by the mask is not masking (a score of 0 still gets weight exp(0)); add "
            "-10000 to padding keys' scores"] = (raw / math.sqrt(d) * mask[:, None, None, :]).softmax(-1)
    return out


def _mask_mistake(got: Any, no_mask: torch.Tensor, mask: torch.Tensor | None, real: torch.Tensor,
                  atol: float) -> str:
    """Tell "no mask" from "a mask on the query axis". A mask on the queries adds one constant to a whole row of
    scores, which the softmax ignores: real tokens' rows are then exactly those without a mask, whatever the
    constant (-10000, finfo.min, -inf). The padding queries' rows tell the two apart: unchanged without a mask,
    changed (or NaN) by a mask on the wrong axis. ``real`` selects the real tokens' rows of ``got``."""
    if mask is None or not (isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(no_mask.shape)):
        return ""
    if not _close(got[real], no_mask[real], 1e-4):  # the real tokens' rows do hide the padding keys
        return ""
    if _close(got[~real], no_mask[~real], atol):
        return " - the padding mask was not applied: add -10000 (or finfo.min) to the scores of padding keys"
    return (" - the mask is on the wrong axis: it must hide padding keys (columns), mask[:, None, None, :], "
            "not queries (rows), mask[:, None, :, None]")


def check_attention(fn: Callable[..., Any], atol: float = 1e-5) -> None:
    """Check ``fn(q, k, v, mask) -> (context, probs)`` (q/k/v: (batch, heads, seq, head_dim), mask: (batch, seq)
    of 1/0 or None) on tricky cases; raise AssertionError naming the first thing that is wrong."""
    g = torch.Generator().manual_seed(0)
    cases = {
        "no mask, one head": (1, 1, 4, 8, None),
        "no mask, 3 heads": (2, 3, 5, 4, None),
        "last 2 keys are padding": (2, 2, 6, 8, torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])),
        "large scores (scaling by sqrt(d) matters)": (1, 2, 5, 64, torch.tensor([[1, 1, 1, 0, 0]])),
    }
    for case, (b, h, s, d, mask) in cases.items():
        scale = 3.0 if d == 64 else 1.0
        q, k, v = (torch.randn(b, h, s, d, generator=g) * scale for _ in range(3))
        out = _call(fn, q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone(), case=case)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise AssertionError(f"[{case}] fn must return (context, probs), got {type(out).__name__}")
        ctx, probs = reference_attention(q, k, v, mask)
        hint = "" if mask is None else _mask_mistake(
            out[1], (q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1), mask, mask.bool()[:, None, :, None]
            .expand(b, h, s, s), atol)
        hint = hint or _which_mistake(out[1], _attention_mistakes(q, k, v, mask), 1e-4)
        _tensor_difference(f"[{case}] probs", out[1], probs, atol, hint)
        _tensor_difference(f"[{case}] context", out[0], ctx, atol, " - the context is probs @ v")


def _layer_variant(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor, *, attention_residual: bool = True,
                   ffn_residual: bool = True, gelu: str = "none", mask_axis: str = "keys", scale: bool = True,
                   heads: str = "right") -> torch.Tensor:
    """One BertLayer forward written out, with one classic mistake switched on (the defaults are right)."""
    sa = layer.attention.self
    B, S, H = x.shape
    A = sa.num_attention_heads
    d = H // A

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(B, A, S, d) if heads == "wrong" else t.view(B, S, A, d).transpose(1, 2)

    q, k, v = split(sa.query(x)), split(sa.key(x)), split(sa.value(x))
    scores = q @ k.transpose(-1, -2) / (math.sqrt(d) if scale else 1.0)
    pad = 1.0 - mask.to(x.dtype)
    if mask_axis == "keys":
        scores = scores + pad[:, None, None, :] * -10000.0
    elif mask_axis == "queries":
        scores = scores + pad[:, None, :, None] * -10000.0
    context = scores.softmax(-1) @ v
    context = context.reshape(B, S, H) if heads == "wrong" else context.transpose(1, 2).reshape(B, S, H)
    out = layer.attention.output
    h = out.LayerNorm(out.dense(context) + (x if attention_residual else 0.0))
    act = {"none": F.gelu, "tanh": lambda t: F.gelu(t, approximate="tanh"), "relu": F.relu}[gelu]
    ffn = layer.output.dense(act(layer.intermediate.dense(h)))
    return layer.output.LayerNorm(ffn + (h if ffn_residual else 0.0))


_LAYER_MISTAKES = {
    "the residual around attention is missing: LayerNorm(dense(context) + x)": dict(attention_residual=False),
    "the residual around the feed-forward network is missing: LayerNorm(output.dense(...) + h)":
        dict(ffn_residual=False),
    "tanh GELU: BERT's checkpoints use the exact erf GELU, F.gelu(x) (not approximate='tanh')": dict(gelu="tanh"),
    "ReLU instead of GELU: the feed-forward network uses F.gelu": dict(gelu="relu"),
    "did you scale the scores by 1/sqrt(head_dim)?": dict(scale=False),
    "the heads are split wrongly: view(batch, seq, heads, head_dim).transpose(1, 2), and back the same way":
        dict(heads="wrong"),
}


def check_bert_layer(fn: Callable[..., Any], atol: float = 1e-5) -> None:
    """Check ``fn(layer, hidden_states, attention_mask) -> hidden_states`` (a hand-written forward of one
    ``BertLayer`` in eval mode, attention_mask (batch, seq) of 1/0) against ``BertLayer`` itself, and name the
    classic mistake it reproduces (a missing residual, the tanh GELU, the mask on the wrong axis, ...)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64)
    layer = BertModel(config).encoder.layer[0].eval()
    with torch.no_grad():
        for p in layer.parameters():  # non-trivial LayerNorm gains and biases expose a skipped step
            p.add_(torch.randn_like(p) * 0.1)
        x = torch.randn(2, 5, 32) * 2  # large enough that the tanh GELU differs by more than atol
        mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        expected, _ = layer(x, extended_attention_mask(mask, x.dtype))
        got = _call(fn, layer, x.clone(), mask.clone())
        hint = _layer_mistake(got, layer, x, mask, atol)
    _tensor_difference("layer output", got, expected, atol, hint)


def _layer_mistake(got: Any, layer: nn.Module, x: torch.Tensor, mask: torch.Tensor, atol: float) -> str:
    """The hint of the classic mistake ``got`` reproduces, judged on the real tokens (a mask on the query axis
    only changes the padding's rows: see ``_mask_mistake``), '' when none does."""
    real = mask.bool()
    if not (isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(x.shape)):
        return ""
    hint = _mask_mistake(got, _layer_variant(layer, x, mask, mask_axis="none"), mask, real, atol)
    if hint:
        return hint
    mistakes = {hint: _layer_variant(layer, x, mask, **kw)[real] for hint, kw in _LAYER_MISTAKES.items()}
    return _which_mistake(got[real], mistakes, 1e-4)

# ----------------------------------------------------------------------------------------------------------
# 04 masked LM loss
# ----------------------------------------------------------------------------------------------------------

def check_mlm_loss(fn: Callable[..., Any], atol: float = 1e-5) -> None:
    """Check ``fn(prediction_scores (batch, seq, vocab), masked_lm_labels (batch, seq)) -> scalar loss`` against
    minibert on tricky labels (-1 and -100 both ignored, a row with nothing masked); raise AssertionError
    naming the first case that differs."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 6, 11, generator=g) * 3
    cases = {
        "every position labelled": torch.randint(0, 11, (3, 6), generator=g),
        "-100 marks ignored positions": torch.tensor([[-100, 3, -100, -100, 7, -100]] * 3),
        "-1 (2019 style) marks ignored positions": torch.tensor([[-1, 3, -1, -1, 7, -1]] * 3),
        "a row with nothing masked": torch.tensor([[-100] * 6, [1, -100, -100, -100, -100, 2], [-1] * 5 + [10]]),
    }
    for case, labels in cases.items():
        expected = masked_lm_loss(scores, labels)
        try:
            got = fn(scores.clone(), labels.clone())
        except NotImplementedError:
            raise
        except Exception as err:  # e.g. cross_entropy meeting a -1 label it was not told to ignore
            hint = (" - both -1 and -100 mark positions to ignore: map -1 to -100 first" if "-1" in str(err)
                    or "-100" in str(err) else "")
            raise AssertionError(f"[{case}] your function raised {type(err).__name__}: {err}{hint}") from err
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"[{case}] expected a scalar tensor (the mean over labelled positions), got "
                                 f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
        if not torch.isfinite(got) or abs(got.item() - expected.item()) > atol:
            labelled = (labels != -100) & (labels != -1)
            per_token = F.cross_entropy(scores[labelled], labels[labelled], reduction="none")
            rows = [F.cross_entropy(scores[i][labelled[i]], labels[i][labelled[i]]) for i in range(3)
                    if labelled[i].any()]
            if not torch.isfinite(got):
                hint = (" - a row with nothing labelled gives 0/0: average over the labelled positions of the "
                        "whole batch, not row by row")
            elif abs(got.item() - per_token.sum().item()) < 1e-4:
                hint = " - that is the sum: divide by the number of labelled positions"
            elif abs(got.item() - torch.stack(rows).mean().item()) < 1e-4:
                hint = " - that is a mean of per-row means: average over all labelled positions at once"
            else:
                hint = " (is every ignored label excluded from both the sum and the count?)"
            raise AssertionError(f"[{case}] loss {got.item():.6f}, expected {expected.item():.6f}{hint}")

# ----------------------------------------------------------------------------------------------------------
# 05 masking, 07 MLM accuracy, 08 perplexity
# ----------------------------------------------------------------------------------------------------------

def check_masking(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]], vocab_size: int = 30522,
                  mask_token_id: int = 103) -> None:
    """Check a learner's `fn(input_ids, special_tokens_mask, vocab_size, mask_token_id, generator)
    -> (inputs, labels)` on 1000 x 102 tokens; raise AssertionError naming the first property that fails.

    Bounds: each share is compared with its expectation p within 5 binomial standard deviations,
    5 * sqrt(p (1 - p) / n): a correct implementation fails with probability below 1e-6."""
    g = torch.Generator().manual_seed(0)
    B, S = 1000, 102
    ids = torch.randint(1000, vocab_size, (B, S), generator=g)
    special = torch.zeros(B, S, dtype=torch.bool)
    ids[:, 0], ids[:, 50], ids[:, -1] = 101, 102, 102
    special[:, [0, 50, S - 1]] = True
    ids[:20, -10:-1], special[:20, -10:] = 0, True  # some padding too
    before, special_before = ids.clone(), special.clone()
    out = _call(fn, ids, special, vocab_size, mask_token_id, torch.Generator().manual_seed(1))
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise AssertionError(f"return a tuple (inputs, labels), got {type(out).__name__}")
    inputs, labels = (torch.as_tensor(t) for t in out)
    if not torch.equal(ids, before) or not torch.equal(special, special_before):
        raise AssertionError("your function changed its input in place; work on a copy (ids.clone())")
    if inputs.shape != ids.shape or labels.shape != ids.shape:
        raise AssertionError(f"inputs/labels must have shape {tuple(ids.shape)}, got {tuple(inputs.shape)} and "
                             f"{tuple(labels.shape)}")
    if (labels == -1).any():
        raise AssertionError("use -100 (IGNORE_INDEX) for positions that are not predicted, not -1")
    target = labels != IGNORE_INDEX
    if target.float().mean() > 0.5:
        raise AssertionError(f"labels are set at {target.float().mean():.0%} of the positions: a label belongs only "
                             "at the ~15% of targets; every other position gets -100 (IGNORE_INDEX), which the "
                             "loss skips")
    if (target & special).any():
        raise AssertionError("a special token ([CLS], [SEP] or padding) was chosen as a target")
    if not torch.equal(labels[target], ids[target]):
        raise AssertionError("labels at targets must be the ORIGINAL token ids (before [MASK]/random)")
    if not torch.equal(inputs[~target], ids[~target]):
        raise AssertionError("a position that is not a target was changed; only targets may be corrupted")
    n_cand = (~special).sum().item()
    n_t = target.sum().item()

    def within(name: str, k: int, n: int, p: float) -> None:
        bound = 5 * math.sqrt(p * (1 - p) / n)
        if abs(k / n - p) > bound:
            raise AssertionError(f"{name}: {k}/{n} = {k / n:.4f}, expected {p} +- {bound:.4f}")

    within("share of non-special tokens chosen as targets", n_t, n_cand, 0.15)
    within("share of targets replaced by [MASK]", (inputs[target] == mask_token_id).sum().item(), n_t, 0.8)
    within("share of targets left unchanged", (inputs[target] == ids[target]).sum().item(), n_t, 0.1)
    rnd = inputs[target][(inputs[target] != mask_token_id) & (inputs[target] != ids[target])]
    within("share of targets replaced by a random token", rnd.numel(), n_t, 0.1)
    if rnd.numel() and (rnd.float().std() < vocab_size / 6):
        raise AssertionError("random replacements do not look uniform over the vocabulary")
    return None


def check_mlm_accuracy(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """Check a learner's `fn(prediction_scores (B,S,V), masked_lm_labels (B,S)) -> accuracy` (a float in
    [0, 1] over the predicted positions only); raise AssertionError naming the first mistake."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 9, 11, generator=g)
    labels = torch.full((4, 9), IGNORE_INDEX)
    labels[0, 1], labels[0, 4], labels[1, 2], labels[3, 8] = 3, 5, 7, 1
    labels[0, 1] = int(scores[0, 1].argmax())
    labels[3, 8] = int(scores[3, 8].argmax())
    want = 2 / 4
    got = _call(fn, scores.clone(), labels.clone())
    try:
        got = float(got)
    except (TypeError, ValueError, RuntimeError):
        raise AssertionError(f"return one number (the accuracy), got {type(got).__name__}"
                             + (f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else "")) from None
    if abs(got - 2 / 36) < 1e-6:
        raise AssertionError(f"got {got:.4f}: you divided by all positions; divide by the predicted ones "
                             f"(labels != -100)")
    if abs(got - 100 * want) < 1e-4:
        raise AssertionError(f"got {got:.4f}: return a fraction in [0, 1], not a percentage")
    if abs(got - want) > 1e-6:
        raise AssertionError(f"got {got:.4f}, expected {want}: count argmax(scores) == label only where "
                             f"labels != -100")


def check_perplexity(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """Check a learner's `fn(prediction_scores (B,S,V), masked_lm_labels (B,S)) -> perplexity`, defined as
    exp(mean cross-entropy over the predicted tokens); raise AssertionError naming the first mistake."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 7, 13, generator=g) * 2
    labels = torch.full((3, 7), IGNORE_INDEX)
    labels[0, :5] = torch.tensor([1, 2, 3, 4, 5])
    labels[2, 3] = 6
    ce = F.cross_entropy(scores.reshape(-1, 13), labels.reshape(-1), reduction="none")[labels.reshape(-1) >= 0]
    want = math.exp(ce.mean().item())
    got = _call(fn, scores.clone(), labels.clone())
    try:
        got = float(got)
    except (TypeError, ValueError, RuntimeError):
        raise AssertionError(f"return one number (the perplexity), got {type(got).__name__}") from None
    if abs(got - ce.exp().mean().item()) < 1e-4 * want and abs(got - want) > 1e-4 * want:
        raise AssertionError("you averaged exp(loss); perplexity is exp(mean loss)")
    per_seq = math.exp(torch.stack([ce[:5].mean(), ce[5:].mean()]).mean().item())
    if abs(got - per_seq) < 1e-4 * want:
        raise AssertionError("you averaged per sequence first; average over all predicted tokens")
    if abs(got - ce.mean().item()) < 1e-4:
        raise AssertionError(f"got {got:.4f}: that is the mean cross-entropy itself; perplexity is its exp")
    if abs(got - want) > 1e-4 * want:
        raise AssertionError(f"got {got:.4f}, expected {want:.4f}: exp of the cross-entropy averaged over "
                             f"positions with labels != -100")

# ----------------------------------------------------------------------------------------------------------
# 06 BertAdam
# ----------------------------------------------------------------------------------------------------------

def bertadam_reference_update(p: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                              lr_scheduled: float, b1: float = 0.9, b2: float = 0.999, e: float = 1e-6,
                              weight_decay: float = 0.01, max_grad_norm: float = 1.0
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One BertAdam update of one tensor, functional: returns (new_p, new_m, new_v); inputs are not modified.

    `lr_scheduled` is lr * schedule.get_lr(step) with step the count of updates made *before* this one. It runs
    the library's ``BertAdam.step`` on a copy (constant schedule), so the reference is the optimizer itself.
    """
    param = torch.nn.Parameter(p.detach().clone())
    param.grad = grad.detach().clone()
    optimizer = BertAdam([param], lr=lr_scheduled, schedule=None, b1=b1, b2=b2, e=e, weight_decay=weight_decay,
                         max_grad_norm=max_grad_norm)
    optimizer.state[param] = {"step": 0, "next_m": m.detach().clone(), "next_v": v.detach().clone()}
    optimizer.step()
    state = optimizer.state[param]
    return param.detach(), state["next_m"], state["next_v"]


def _bertadam_mistake(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm, mistake):
    """One BertAdam step with one classic mistake (for naming it): see _BERTADAM_MISTAKES."""
    if max_grad_norm > 0:
        norm = grad.norm().item()
        if mistake == "always clip":
            grad = grad * (max_grad_norm / (norm + 1e-6))
        elif norm > max_grad_norm:
            grad = grad * (max_grad_norm / (norm + 1e-6))
    if mistake == "L2 in the gradient":
        grad = grad + weight_decay * p
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    if mistake == "bias correction":
        update = (m / (1 - b1)) / ((v / (1 - b2)).sqrt() + e)
    elif mistake == "eps inside sqrt":
        update = m / (v + e).sqrt()
    else:
        update = m / (v.sqrt() + e)
    if mistake == "decay without lr":
        return p - lr * update - weight_decay * p, m, v
    if mistake != "L2 in the gradient":
        update = update + weight_decay * p
    return p - lr * update, m, v


_BERTADAM_MISTAKES = {
    "bias correction": "BertAdam has no bias correction: do not divide m by (1 - b1^t) or v by (1 - b2^t)",
    "eps inside sqrt": "epsilon goes outside the square root: m / (sqrt(v) + e), not m / sqrt(v + e)",
    "L2 in the gradient": "weight decay is added to the update (update = m / (sqrt(v) + e) + weight_decay * p), "
                          "not to the gradient before the moments (that is L2 regularisation, as in Adam)",
    "decay without lr": "the weight decay term is part of the update, so it is multiplied by lr too",
    "always clip": "clip only when the gradient's norm exceeds max_grad_norm; a small gradient stays unchanged",
}


def check_bertadam_step(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Run a learner's `fn(p, grad, m, v, lr_scheduled, b1, b2, e, weight_decay, max_grad_norm) -> (p, m, v)`
    against ours on tricky cases; raise AssertionError naming the first thing wrong (and the classic mistake
    it reproduces). The function must not modify its inputs."""
    g = torch.Generator().manual_seed(0)
    base = dict(b1=0.9, b2=0.999, e=1e-6, weight_decay=0.0, max_grad_norm=-1.0)
    cases = [
        ("the first step: m = v = 0", {}, 0.0),
        ("plain Adam moments (m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2), no clipping, no decay", {}, 1.0),
        ("weight decay added to the update (update += weight_decay * p, then times lr)",
         {"weight_decay": 0.1}, 1.0),
        ("per-tensor gradient clipping to max_grad_norm (grad *= max_norm / (norm + 1e-6) when norm > max_norm)",
         {"max_grad_norm": 1.0}, 1.0),
        ("clipping leaves small gradients unchanged", {"max_grad_norm": 100.0}, 1.0),
        ("everything together", {"weight_decay": 0.01, "max_grad_norm": 1.0, "b1": 0.8, "b2": 0.99, "e": 1e-3}, 1.0),
    ]
    for what, kw, mom in cases:
        args = {**base, **kw}
        p = torch.randn(3, 4, generator=g)
        grad = torch.randn(3, 4, generator=g) * 5
        m = torch.randn(3, 4, generator=g) * 0.1 * mom
        v = torch.rand(3, 4, generator=g) * 0.1 * mom
        lr = 0.01
        want = bertadam_reference_update(p, grad, m, v, lr, **args)
        given = [t.clone() for t in (p, grad, m, v)]
        got = _call(fn, *given, lr, **args, case=what)
        for name, original, passed in zip(("p", "grad", "m", "v"), (p, grad, m, v), given):
            if not torch.equal(original, passed):
                raise AssertionError(f"your function modified its input {name} in place (e.g. {name}.mul_(...) "
                                     f"or {name} -= ...); it must not modify its inputs: compute new tensors "
                                     f"({name}_new = ...) and return them ({what})")
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            raise AssertionError("return a tuple (new_p, new_m, new_v)")
        got = [torch.as_tensor(t) for t in got]
        mistakes = {hint: _bertadam_mistake(p, grad, m, v, lr, **args, mistake=key)
                    for key, hint in _BERTADAM_MISTAKES.items()}
        for i, (name, w, o) in enumerate(zip(("m", "v", "p"), (want[1], want[2], want[0]), (got[1], got[2], got[0]))):
            if o.shape != w.shape:
                raise AssertionError(f"new {name} has shape {tuple(o.shape)}, expected {tuple(w.shape)} ({what})")
            if not torch.allclose(o, w, rtol=1e-5, atol=1e-6):
                j = {"m": 1, "v": 2, "p": 0}[name]
                hint = next((f" - {h}" for h, bad in mistakes.items() if not torch.allclose(bad[j], w, rtol=1e-5,
                             atol=1e-6) and torch.allclose(o, bad[j], rtol=1e-5, atol=1e-6)), "")
                k = (o - w).abs().argmax().item()
                raise AssertionError(f"new {name} differs on case: {what}: element {k} is "
                                     f"{o.flatten()[k].item():.6g}, expected {w.flatten()[k].item():.6g}{hint}")
    return None

# ----------------------------------------------------------------------------------------------------------
# 09 t_total, 10 dynamic padding
# ----------------------------------------------------------------------------------------------------------

def check_num_update_steps(fn: Callable[[int, int, int], int]) -> None:
    """Check a learner's ``fn(num_examples, batch_size, epochs) -> updates`` (the t_total of BertAdam) on the
    cases that catch the classic off-by-one; raise AssertionError naming the first wrong case."""
    cases = [((8, 4, 1), "batches that divide the data exactly"),
             ((10, 4, 1), "a partial last batch is still an update (10 examples, batch 4 -> 3 updates)"),
             ((10, 4, 3), "every epoch has its own partial batch (3 epochs -> 9 updates, not int(10*3/4)=7)"),
             ((3, 32, 2), "a data set smaller than one batch is one update per epoch"),
             ((3668, 32, 3), "MRPC train, batch 32, 3 epochs")]
    for (n, b, e), what in cases:
        want = num_update_steps(n, b, e)
        got = _call(fn, n, b, e, case=f"fn({n}, {b}, {e}), {what}")
        if got != want:
            raise AssertionError(f"fn({n}, {b}, {e}) returned {got!r}, expected {want}: {what}")


def check_pad_collate(fn: Callable[[Sequence[Feature]], dict[str, torch.Tensor]]) -> None:
    """Check a learner's dynamic-padding collate against :func:`minibert.data.collate`; raise AssertionError
    naming the first wrong key or value."""
    cases = [("two sentences of different lengths", [
                 {"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0], "label": 1},
                 {"input_ids": [101, 8, 9, 10, 102], "token_type_ids": [0, 0, 0, 1, 1], "label": 0}]),
             ("one sentence: nothing to pad", [{"input_ids": [101, 5, 102], "token_type_ids": [0, 0, 0],
                                                "label": 0}]),
             ("equal lengths: no padding column", [{"input_ids": [101, 5, 102], "token_type_ids": [0, 0, 0],
                                                    "label": 1}] * 3)]
    hints = {"attention_mask": " - the mask is 1 on every real token and 0 on the padding",
             "labels": " - one label per example, from each feature's 'label'"}
    for what, feats in cases:
        want = collate(feats, pad_token_id=0)  # the cases use bert-base-uncased's ids: [PAD] = 0
        got = _call(fn, [dict(f) for f in feats], case=what)
        if not isinstance(got, Mapping):
            raise AssertionError(f"return a dict of tensors with keys {sorted(want)}, got {type(got).__name__}")
        for key, w in want.items():
            if key not in got:
                raise AssertionError(f"the batch has no {key!r} ({what}); expected keys {sorted(want)}")
            g = torch.as_tensor(got[key])
            if g.shape != w.shape:
                raise AssertionError(f"{key} has shape {tuple(g.shape)}, expected {tuple(w.shape)}: pad to the "
                                     f"longest sequence in the batch, not a fixed length ({what})")
            if not torch.equal(g.long(), w):
                raise AssertionError(f"{key} is {g.tolist()}, expected {w.tolist()} ({what}){hints.get(key, '')}")

# ----------------------------------------------------------------------------------------------------------
# 11 attention entropy
# ----------------------------------------------------------------------------------------------------------

def check_attention_entropy(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a learner's `fn(attn, mask) -> (layers, heads)` mean entropy against `head_statistics` on tricky input.

    `attn` is (layers, batch, heads, seq, seq) and `mask` (batch, seq) with 1 for real tokens. Tricky parts: keys
    with probability 0 (0 * log 0 must count as 0, not nan) and padding queries (they must be left out).
    """
    g = torch.Generator().manual_seed(0)
    layers, batch, heads, seq = 2, 3, 4, 6
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    scores = torch.randn(layers, batch, heads, seq, seq, generator=g)
    scores[:, 0, 0, :, :] = torch.tensor(-1e9).where(torch.eye(seq, dtype=torch.bool).logical_not(), 0.0)
    scores = scores + (1.0 - mask.float())[None, :, None, None, :] * -10000.0
    attn = scores.softmax(-1)
    ids = torch.zeros(batch, seq, dtype=torch.long)
    expected = head_statistics(BatchAttention(tuple(attn), ids, mask, []), cls_token_id=101, sep_token_id=102,
                               punct_token_ids=())["entropy"]  # entropy needs no ids; bert-base-uncased's here
    got = _call(fn, attn.clone(), mask.clone())
    try:
        got = np.asarray(got.detach() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"return a (layers, heads) tensor or array, got {type(got).__name__}") from None
    if got.shape != expected.shape:
        raise AssertionError(f"expected a (layers, heads) = {expected.shape} array, got shape {got.shape}")
    if np.isnan(got).any():
        raise AssertionError("your entropy has nan: 0 * log(0) must count as 0 (clamp p before the log)")
    bad = np.argwhere(~np.isclose(got, expected, atol=1e-5))
    if len(bad):
        layer, head = bad[0]
        per_query = -(attn.double() * attn.double().clamp_min(1e-30).log()).sum(-1)  # (L, B, A, S)
        all_queries = per_query.mean((1, 3)).numpy()
        m = mask.double()[None, :, None, :]
        per_sentence = ((per_query * m).sum(-1) / m.sum(-1)).mean(1).numpy()
        if np.allclose(got, all_queries, atol=1e-5):
            hint = (" - you averaged over padding queries too (sentence 3 has only 2 real tokens): weight each "
                    "query by the mask")
        elif np.allclose(got, per_sentence, atol=1e-5):
            hint = (" - you averaged each sentence first, then the sentences: average over all real queries of "
                    "the batch at once (a long sentence counts more)")
        elif np.allclose(got, expected / math.log(2), atol=1e-5):
            hint = " - that is in bits (log2): use the natural log (nats), as head_statistics does"
        elif np.allclose(got, -expected, atol=1e-5):
            hint = " - the sign is flipped: entropy is -sum_j p_j log p_j, never negative"
        elif np.allclose(got, ((-(attn.double() * attn.double().clamp_min(1e-30).log()).sum(-2) * m).sum(-1)
                               / mask.sum()).sum(1).numpy(), atol=1e-5):
            hint = (" - you summed over the queries (dim -2): each row attn[..., i, :] is query i's distribution "
                    "over the keys, so sum over the last dim")
        else:
            hint = " (entropy is -sum_j p_j log p_j over keys, averaged over real queries of every sentence)"
        raise AssertionError(f"layer {layer} head {head}: expected {expected[layer, head]:.5f}, "
                             f"got {got[layer, head]:.5f}{hint}")

# ----------------------------------------------------------------------------------------------------------
# 12 ROC AUC
# ----------------------------------------------------------------------------------------------------------

def _pairwise_auc(s: np.ndarray, y: np.ndarray, tie: float) -> float:
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(((pos > neg) + tie * (pos == neg)).mean())


def _rank_auc(s: np.ndarray, y: np.ndarray, average_ties: bool = True, first_rank: int = 1,
              subtract: bool = True) -> float:
    """The rank formula of the AUC, or one of its typical slips (ordinal ranks, ranks from 0, no P(P+1)/2)."""
    ranks = np.empty(len(s))
    ranks[np.argsort(s, kind="stable")] = np.arange(first_rank, len(s) + first_rank)
    if average_ties:
        for value in np.unique(s):
            ranks[s == value] = ranks[s == value].mean()
    p = int((y == 1).sum())
    return float((ranks[y == 1].sum() - (p * (p + 1) / 2 if subtract else 0)) / (p * (len(y) - p)))


def check_roc_auc(fn: Callable[[np.ndarray, np.ndarray], float]) -> None:
    """Check a learner's `fn(scores, labels) -> float` against `roc_auc` on tricky cases; name the first miss."""
    rng = np.random.default_rng(0)
    cases = {
        "perfect separation": (np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])),
        "perfectly wrong": (np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])),
        "all scores tied (ties count 1/2)": (np.full(6, 0.3), np.array([0, 1, 0, 1, 1, 0])),
        "ties across classes": (np.array([0.5, 0.5, 0.7, 0.2, 0.7]), np.array([1, 0, 0, 0, 1])),
        "unsorted, unbalanced": (rng.normal(size=50), (rng.random(50) < 0.7).astype(int)),
        "rounded scores with many ties": (rng.normal(size=200).round(1), (rng.random(200) < 0.4).astype(int)),
    }
    for name, (s, y) in cases.items():
        expected = roc_auc(s, y)
        got = _call(fn, s.copy(), y.copy(), case=name)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise AssertionError(f"return one number (the AUC), got {type(got).__name__}") from None
        if not abs(got - expected) < 1e-9:
            if abs(got - (1 - expected)) < 1e-9 and abs(expected - 0.5) > 1e-9:
                hint = " - that is 1 - AUC: rank from the lowest score up, and sum the ranks of the positives"
            elif abs(got - _pairwise_auc(s, y, 0.0)) < 1e-9:
                hint = " - ties count 0 in your AUC: a tie between a positive and a negative counts 1/2"
            elif abs(got - _pairwise_auc(s, y, 1.0)) < 1e-9:
                hint = " - ties count 1 in your AUC: a tie between a positive and a negative counts 1/2"
            elif abs(got - _rank_auc(s, y, average_ties=False)) < 1e-9:
                hint = " - tied scores got different ranks: give every tied score the mean of the ranks they span"
            elif abs(got - _rank_auc(s, y, first_rank=0)) < 1e-9:
                hint = " - your ranks start at 0: the lowest score has rank 1"
            elif abs(got - _rank_auc(s, y, subtract=False)) < 1e-9:
                hint = (" - an AUC lies in [0, 1]: subtract P(P+1)/2 (the positives' rank sum if they all scored "
                        "lowest) before dividing by P N")
            else:
                hint = ""
            raise AssertionError(f"case {name!r}: expected AUC {expected:.6f}, got {got:.6f} "
                                 f"(scores={np.round(s[:6], 2).tolist()}..., labels={y[:6].tolist()}...){hint}")

# ----------------------------------------------------------------------------------------------------------
# 07 the pre-training loss, 09 the fine-tuning loop
# ----------------------------------------------------------------------------------------------------------

def check_pretraining_loss(fn: Callable[..., Any], atol: float = 1e-5) -> None:
    """Check ``fn(prediction_scores (B,S,V), seq_relationship_score (B,2), masked_lm_labels (B,S),
    next_sentence_label (B,)) -> scalar`` against ``BertForPreTraining``'s loss (masked-LM cross-entropy over
    the labelled positions + NSP cross-entropy); raise AssertionError naming the first case that differs.
    atol covers float32 summation order over a few dozen terms."""
    g = torch.Generator().manual_seed(0)
    scores, nsp = torch.randn(3, 7, 13, generator=g) * 2, torch.randn(3, 2, generator=g)
    nsp_label = torch.tensor([0, 1, 1])
    labels = torch.full((3, 7), IGNORE_INDEX)
    labels[0, 1], labels[0, 5], labels[1, 2], labels[2, 6] = 4, 9, 12, 0
    cases = {
        "-100 marks the positions that are not predicted": labels,
        "a row with nothing masked": labels.masked_fill(torch.arange(3)[:, None] == 1, IGNORE_INDEX),
        "-1 (2019 style) also marks positions that are not predicted": labels.masked_fill(labels == IGNORE_INDEX, -1),
    }
    for case, lab in cases.items():
        expected = masked_lm_loss(scores, lab) + F.cross_entropy(nsp, nsp_label)
        got = _call(fn, scores.clone(), nsp.clone(), lab.clone(), nsp_label.clone(), case=case)
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"[{case}] expected a scalar tensor (MLM loss + NSP loss), got "
                                 f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
        if not torch.isfinite(got) or abs(got.item() - expected.item()) > atol:
            mlm_only = masked_lm_loss(scores, lab).item()
            hint = (" - that is the MLM loss alone: add the NSP cross-entropy" if abs(got.item() - mlm_only) < atol
                    else " (mean MLM cross-entropy over labelled positions only, plus the NSP cross-entropy)")
            raise AssertionError(f"[{case}] loss {got.item():.6f}, expected {expected.item():.6f}{hint}")


def check_train_steps(fn: Callable[..., Any], steps: int = 4) -> None:
    """Check a learner's ``fn(model, batches, optimizer) -> losses`` (one optimizer step per batch) against the
    same loop in ``minibert.course.solutions`` on a tiny BertForSequenceClassification; raise AssertionError
    naming the first step whose loss differs, and what that usually means. The two runs start from the same
    weights without dropout, so their losses agree to float32 rounding (rtol 1e-4 covers it)."""
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(1, 30, (4, 6), generator=g),
                "token_type_ids": torch.zeros(4, 6, dtype=torch.long),
                "attention_mask": torch.ones(4, 6, dtype=torch.long),
                "labels": torch.randint(0, 2, (4,), generator=g)} for _ in range(steps)]

    def run(loop: Callable[..., Any]) -> list[float]:
        torch.manual_seed(0)
        model = BertForSequenceClassification(config, num_labels=2)
        optimizer = BertAdam(model.parameters(), lr=1e-2, schedule=None)
        out = _call(loop, model, [dict(b) for b in batches], optimizer)
        try:
            return [float(x) for x in out]
        except (TypeError, ValueError, RuntimeError):
            raise AssertionError(f"return a list of {steps} losses (loss.item() of each step), got "
                                 f"{type(out).__name__}") from None

    def without(skip: str) -> Callable[..., list[float]]:  # the two classic bugs, to name them when they happen
        def loop(model, batches, optimizer):
            losses = []
            for batch in batches:
                loss = model(**batch)
                loss.backward()
                if skip != "step":
                    optimizer.step()
                if skip != "zero_grad":
                    optimizer.zero_grad()
                losses.append(loss.item())
            return losses
        return loop

    want, got = run(solutions.train_steps), run(fn)
    if len(got) != len(want):
        raise AssertionError(f"got {len(got)} losses for {len(want)} batches: return one loss per optimizer step")
    bugs = {"step": ": the weights never change - call optimizer.step() after loss.backward()",
            "zero_grad": ": the gradients add up across batches - call optimizer.zero_grad() after every step"}
    for i, (a, b) in enumerate(zip(got, want)):
        if not math.isclose(a, b, rel_tol=1e-4):
            hint = next((h for skip, h in bugs.items()
                         if all(math.isclose(x, y, rel_tol=1e-4) for x, y in zip(got, run(without(skip))))),
                        " (forward with the batch's labels, loss.backward(), optimizer.step(), optimizer.zero_grad())")
            raise AssertionError(f"loss at step {i + 1} is {a:.6f}, expected {b:.6f}{hint}")

# ----------------------------------------------------------------------------------------------------------
# 13 the best answer span of one SQuAD window
# ----------------------------------------------------------------------------------------------------------

def _squad_window(n_query: int, n_context: int, not_max: Sequence[int] = ()) -> Window:
    """[CLS] question [SEP] paragraph [SEP]: paragraph token j covers character j of the context."""
    offset = n_query + 2
    spans = [None] * offset + [(j, j + 1) for j in range(n_context)] + [None]
    is_max = [False] * offset + [j not in not_max for j in range(n_context)] + [False]
    return Window(example_index=0, doc_span_index=0, token_spans=spans, token_is_max_context=is_max)


def _reference_span(start: np.ndarray, end: np.ndarray, window: Window, n_best_size: int,
                    max_answer_length: int) -> tuple[int, int] | None:
    """The span run_squad's post-processing picks (minibert.squad.postprocess_predictions), as token indices."""
    n_context = sum(s is not None for s in window.token_spans)
    context = "".join(chr(0x4E00 + j) for j in range(n_context))  # one distinct character per token
    example = SquadExample("q", "question", context)
    _, nbest, _ = postprocess_predictions([example], [window], [SquadResult(start, end)], n_best_size,
                                          max_answer_length)
    best = nbest["q"][0]
    if not best["text"]:
        return None
    first = window.token_spans.index((best["char_start"], best["char_start"] + 1))
    return first, first + len(best["text"]) - 1


def _span_problem(span: tuple[int, int], window: Window, max_answer_length: int) -> str | None:
    """Why (start, end) cannot be an answer in this window, or None when it can."""
    s, e = span
    n = len(window.token_spans)
    for name, i in (("start", s), ("end", e)):
        if not 0 <= i < n:
            return f"its {name} {i} is outside the window's {n} tokens"
        if window.token_spans[i] is None:
            return (f"its {name}, token {i}, is not in the paragraph ([CLS], the question or [SEP]: "
                    f"window.token_spans[{i}] is None)")
    if e < s:
        return f"it ends (token {e}) before it starts (token {s})"
    if e - s + 1 > max_answer_length:
        return f"it is {e - s + 1} tokens long (end - start + 1), more than max_answer_length={max_answer_length}"
    if not window.token_is_max_context[s]:
        return (f"its start, token {s}, has its max context in another window (window.token_is_max_context[{s}] "
                "is False): a start counts only in the window where it has the most context")
    return None


def check_best_span(fn: Callable[..., Any]) -> None:
    """Check ``fn(start_logits, end_logits, window, n_best_size, max_answer_length) -> (start, end) | None`` (token
    indices in one window, end inclusive; None when no span is allowed) against run_squad's post-processing
    (``minibert.squad.postprocess_predictions``) on tricky windows; name the rule the answer breaks."""
    g = np.random.default_rng(0)
    n_query, n_context, max_len = 3, 12, 5
    offset = n_query + 2
    cases = []

    def case(name: str, boost: dict[str, dict[int, float]], not_max: Sequence[int] = ()) -> None:
        start, end = g.normal(size=offset + n_context + 1), g.normal(size=offset + n_context + 1)
        for i, value in boost.get("start", {}).items():
            start[i] += value
        for i, value in boost.get("end", {}).items():
            end[i] += value
        cases.append((name, start.astype(np.float32), end.astype(np.float32), _squad_window(n_query, n_context,
                                                                                             not_max)))

    c = offset  # the first paragraph token
    case("the best start and the best end make a valid span", {"start": {c + 2: 6}, "end": {c + 4: 6}})
    case("end before start", {"start": {c + 8: 9, c + 1: 5}, "end": {c + 3: 9, c + 2: 4}})
    case("the highest logits are in the question", {"start": {2: 12, c + 6: 4}, "end": {3: 12, c + 7: 4}})
    case("[CLS] has the highest logits", {"start": {0: 12, c + 5: 4}, "end": {0: 12, c + 5: 3}})
    case("the best start has its max context in another window",
         {"start": {c: 10, c + 4: 5}, "end": {c + 1: 10, c + 5: 5}}, not_max=(0, 1, 2))
    case(f"too long: the best pair spans {max_len + 1} tokens (max_answer_length={max_len})",
         {"start": {c + 3: 10, c + 6: 6}, "end": {c + 3 + max_len: 10, c + 7: 6}})
    case("no valid span: every paragraph token has its max context elsewhere", {}, not_max=range(n_context))
    case("the highest end logit is the final [SEP], after the paragraph",
         {"start": {c + 9: 8}, "end": {offset + n_context: 12, c + 10: 5}})

    for name, start, end, window in cases:
        expected = _reference_span(start, end, window, 20, max_len)
        got = _call(fn, start.copy(), end.copy(), window, 20, max_len, case=name)
        if got is not None:
            try:
                if len(got) != 2:
                    raise ValueError
                got = (int(got[0]), int(got[1]))
            except (TypeError, ValueError, IndexError):
                raise AssertionError(f"[{name}] return (start, end) token indices, or None, got {got!r}") from None
        if got == expected:
            continue
        if got is None:
            raise AssertionError(f"[{name}] you returned None, but ({expected[0]}, {expected[1]}) is a valid span "
                                 f"(score {start[expected[0]] + end[expected[1]]:.3f})")
        if expected is not None and got == (expected[0], expected[1] + 1):
            raise AssertionError(f"[{name}] your span {got} ends one token late: the end is inclusive, "
                                 f"{expected} covers tokens {expected[0]} to {expected[1]}")
        problem = _span_problem(got, window, max_len)
        if problem:
            raise AssertionError(f"[{name}] your span {got} cannot be an answer: {problem}")
        if expected is None:
            raise AssertionError(f"[{name}] your span {got}: expected None, no pair is allowed in this window")
        raise AssertionError(f"[{name}] your span {got} scores {start[got[0]] + end[got[1]]:.3f}, but "
                             f"({expected[0]}, {expected[1]}) is also valid and scores "
                             f"{start[expected[0]] + end[expected[1]]:.3f}: take the best start + end logit over "
                             f"all valid pairs")

# ----------------------------------------------------------------------------------------------------------
# 14 multiple choice: (batch, choices, seq) -> (batch * choices, seq) -> (batch, choices)
# ----------------------------------------------------------------------------------------------------------

def check_choice_probs(fn: Callable[..., Any], atol: float = 1e-5) -> None:
    """Check ``fn(model, input_ids, token_type_ids, attention_mask) -> probs (batch, num_choices)`` (flatten the
    choices into the batch, score each [CLS] with the model's classifier, reshape back, softmax over the choices)
    against ``BertForMultipleChoice`` itself with 4 and 3 choices; name the classic mistake."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForMultipleChoice(config, num_choices=4).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(50)  # spread the scores so a mistake shows in the probabilities
    g = torch.Generator().manual_seed(1)
    for name, (B, C, S) in {"4 choices": (2, 4, 7), "3 choices": (3, 3, 6)}.items():
        ids = torch.randint(1, 40, (B, C, S), generator=g)
        types = (torch.arange(S) >= S // 2).long().expand(B, C, S).contiguous()
        mask = torch.ones(B, C, S, dtype=torch.long)
        mask[0, 1, -2:] = 0
        ids[0, 1, -2:] = 0
        with torch.no_grad():
            logits = model(ids, types, mask)
            want = logits.softmax(-1)
            flat = lambda t: t.reshape(B * C, S)  # noqa: E731
            encoded, pooled = model.bert(flat(ids), flat(types), flat(mask), output_all_encoded_layers=False)
            scores = model.classifier(pooled).view(-1)  # (B * C,)
            unmasked = model.classifier(model.bert(flat(ids), flat(types), None, output_all_encoded_layers=False)[1])
            raw_cls = model.classifier(encoded[:, 0])
            mistakes = {
                "these are the scores (logits): apply a softmax over the choices (dim -1)": logits,
                "the softmax runs over the batch (dim 0): each question's choices (dim -1) must sum to 1":
                    logits.softmax(0),
                "choices of different questions are mixed: reshape the (batch * choices) scores with "
                f".view(batch, choices), the order the flattening used (here .view({B}, {C}))":
                    scores.view(C, B).t().softmax(-1),
                "the padding was not masked: pass attention_mask, flattened like input_ids":
                    unmasked.view(B, C).softmax(-1),
                "you scored the raw [CLS] state: the classifier reads the pooled output (model.bert(...)[1])":
                    raw_cls.view(B, C).softmax(-1),
            }
            try:
                got = _call(fn, model, ids.clone(), types.clone(), mask.clone(), case=name)
            except AssertionError as err:
                raise AssertionError(f"{err} - read the number of choices from input_ids.shape (batch, choices, "
                                     "seq): a hard-coded 4 breaks with 3 choices" if C != 4 else str(err)) from err
        hint = _which_mistake(got, mistakes, 1e-5)
        if isinstance(got, torch.Tensor) and tuple(got.shape) != (B, C):
            hint = (f" - read the number of choices from input_ids.shape (batch, choices, seq); with {C} choices "
                    "a hard-coded 4 breaks")
        _tensor_difference(f"[{name}] probs", got, want, atol, hint)

# ----------------------------------------------------------------------------------------------------------
# 15 IOB1 -> IOB2
# ----------------------------------------------------------------------------------------------------------

_IOB1_CASES = {
    "an entity of one word after O": ["O", "I-PER", "O"],
    "an entity at the start of the sentence": ["I-ORG", "I-ORG", "O", "O"],
    "I- continuing an entity of the same type": ["O", "I-LOC", "I-LOC", "I-LOC", "O"],
    "B- after I- of the same type: two adjacent entities": ["I-PER", "B-PER", "I-PER", "O"],
    "a type switch with no O between": ["O", "I-PER", "I-LOC", "I-LOC"],
    "I- after O, twice": ["I-MISC", "O", "I-MISC", "O"],
    "a sentence that starts and ends inside an entity": ["I-LOC", "O", "I-LOC"],
    "a trailing I-": ["O", "O", "I-MISC"],
    "only O": ["O", "O", "O"],
    "an empty sentence": [],
}


def check_iob1_to_iob2(fn: Callable[[list[str]], list[str]]) -> None:
    """Check a learner's ``fn(tags) -> tags`` (CoNLL-2003's IOB1 to IOB2) against ``metrics.iob1_to_iob2`` on the
    tricky sequences; name the rule the first wrong tag breaks. The input list must not be modified."""
    for name, tags in _IOB1_CASES.items():
        expected = iob1_to_iob2(tags)
        given = list(tags)
        got = _call(fn, given, case=name)
        if given != tags:
            raise AssertionError(f"[{name}] your function modified its input list; build a new list")
        try:
            got = list(got)
        except TypeError:
            raise AssertionError(f"[{name}] return a list of tags, got {type(got).__name__}") from None
        if len(got) != len(expected):
            raise AssertionError(f"[{name}] {tags}: got {len(got)} tags, expected {len(expected)} (one per word)")
        for i, (a, b) in enumerate(zip(got, expected)):
            if a == b:
                continue
            prev = "O" if i == 0 else expected[i - 1]
            where = "at the start of the sentence" if i == 0 else f"after {prev}"
            if b.startswith("B-") and tags[i].startswith("B-"):
                rule = f"a B-{b[2:]} in IOB1 already starts a new entity: keep it"
            elif b.startswith("B-") and (prev == "O" or i == 0):
                rule = f"an I-{b[2:]} {where} starts an entity: B-{b[2:]}"
                if i == 0 and len(tags) > 1 and tags[-1][2:] == b[2:]:
                    rule += "; nothing comes before the first tag (tags[i - 1] at i = 0 is the last tag)"
            elif b.startswith("B-"):
                rule = f"an I-{b[2:]} {where} starts a new entity of another type: B-{b[2:]}"
            elif b.startswith("I-"):
                rule = f"an I-{b[2:]} {where} continues that entity: keep I-{b[2:]}"
            else:
                rule = "O stays O"
            raise AssertionError(f"[{name}] {tags}: tag {i} is {a!r}, expected {b!r} ({rule})")

# ----------------------------------------------------------------------------------------------------------
# 16 memory: the static bytes, one layer's feed-forward activations, the largest batch
# ----------------------------------------------------------------------------------------------------------

def check_static_bytes(fn: Callable[[int, str], Mapping[str, int]]) -> None:
    """Check ``fn(num_parameters, optimizer) -> {"parameters", "gradients", "optimizer_state"}`` (bytes of a fp32
    fine-tuning step that do not depend on the batch) against ``memory.estimate`` for BERT-Base and -Large with
    BertAdam, AdamW and SGD; name the part that is wrong."""
    large = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    moments = {"bertadam": "m and v: two fp32 values per weight", "adamw": "m and v: two fp32 values per weight",
               "sgd": "nothing (plain SGD keeps no state)"}
    for config_name, config in (("BERT-Base", BertConfig()), ("BERT-Large", large)):
        n = memory.parameter_count(config)
        for optimizer in ("bertadam", "sgd", "adamw"):
            want = memory.estimate(config, 1, 8, optimizer=optimizer)
            case = f"{config_name}, {n:,} weights, {optimizer}"
            got = _call(fn, n, optimizer, case=case)
            if not isinstance(got, Mapping):
                raise AssertionError(f"[{case}] return a dict with keys 'parameters', 'gradients' and "
                                     f"'optimizer_state', got {type(got).__name__}")
            for part, what in (("parameters", "one fp32 value (4 bytes) per weight"),
                               ("gradients", "one fp32 gradient (4 bytes) per weight"),
                               ("optimizer_state", moments[optimizer])):
                if part not in got:
                    raise AssertionError(f"[{case}] your dict has no {part!r}")
                value, expected = got[part], getattr(want, part)
                if value != expected:
                    hint = (" - that counts values, not bytes: fp32 is 4 bytes each" if expected and value * 4 ==
                            expected else "")
                    raise AssertionError(f"[{case}] {part}: got {value:,}, expected {expected:,} bytes "
                                         f"({what}){hint}")


def _saved_bytes(run: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor]) -> int:
    """Bytes autograd saves for backward while ``run()`` runs, once per storage, leaving ``exclude`` out."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(saved.values())


def ffn_saved_bytes(batch_size: int, seq_len: int, hidden_size: int, intermediate_size: int) -> int:
    """Bytes one layer's feed-forward network (intermediate.dense -> GELU -> output.dense) saves for backward in
    fp32, counted on the real modules with ``saved_tensors_hooks``: the first linear's input (batch, seq, H), the
    GELU's input and its output, the second linear's input (both (batch, seq, I)). ``minibert.memory`` counts
    the same tensors in its "linear inputs" and "GELU input" terms."""
    config = BertConfig(vocab_size=8, hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=intermediate_size)
    layer = BertModel(config).encoder.layer[0].train()
    x = torch.randn(batch_size, seq_len, hidden_size, requires_grad=True)
    return _saved_bytes(lambda: layer.output.dense(layer.intermediate(x)), layer.parameters())


def check_ffn_activation_bytes(fn: Callable[[int, int, int, int], int]) -> None:
    """Check ``fn(batch_size, seq_len, hidden_size, intermediate_size) -> bytes`` that one layer's feed-forward
    network saves for backward in fp32 (counted on the real modules by :func:`ffn_saved_bytes`); name the
    tensor that is missing or extra."""
    for b, s, h, i in ((8, 128, 768, 3072), (32, 512, 768, 3072), (2, 16, 64, 256)):
        want = ffn_saved_bytes(b, s, h, i) if b * s * i <= 2 ** 22 else 4 * (b * s * h + 2 * b * s * i)
        case = f"batch {b}, seq {s}, H={h}, I={i}"
        got = _call(fn, b, s, h, i, case=case)
        if got == want:
            continue
        bsh, bsi = b * s * h, b * s * i
        hints = {4 * (bsh + bsi): "the GELU keeps its input too: (batch, seq, I) more",
                 bsh + 2 * bsi: "that counts values, not bytes: fp32 is 4 bytes each",
                 4 * (2 * bsh + 2 * bsi): "the FFN's output (batch, seq, H) is not saved by the FFN (the "
                                          "LayerNorm after it keeps its own input)",
                 4 * 3 * bsh: "the inner size is intermediate_size (4H), not hidden_size"}
        hint = f" - {hints[got]}" if got in hints else " (which tensors does each of linear, GELU, linear keep?)"
        raise AssertionError(f"[{case}] got {got:,} bytes, expected {want:,}{hint}")


def check_max_batch_size(fn: Callable[[BertConfig, int, float], int]) -> None:
    """Check ``fn(config, seq_len, memory_bytes) -> batch`` (the largest batch whose ``memory.estimate(config,
    batch, seq_len).peak`` fits in memory_bytes, fp32 and BertAdam; 0 when none does) against
    ``memory.max_batch_size``, on a 24 GB card among others; say whether the answer overflows or wastes."""
    large = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    cases = [("BERT-Base, seq 128, a 24 GB card", BertConfig(), 128, 24 * memory.GB),
             ("BERT-Base, seq 512, a 24 GB card", BertConfig(), 512, 24 * memory.GB),
             ("BERT-Base, seq 128, a 12 GiB Titan X", BertConfig(), 128, memory.TITAN_X_BYTES),
             ("BERT-Large, seq 512, an 8 GB card: nothing fits", large, 512, 8 * memory.GB)]
    for name, config, seq_len, memory_bytes in cases:
        want = memory.max_batch_size(config, seq_len, memory_bytes)
        got = _call(fn, config, seq_len, memory_bytes, case=name)
        if got == want:
            continue
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise AssertionError(f"[{name}] return a whole number of examples, got {got!r}")
        if got > want:
            peak = memory.estimate(config, int(got), seq_len).peak
            raise AssertionError(f"[{name}] batch {got} does not fit: estimate(...).peak = {peak / 1e9:.2f} GB > "
                                 f"{memory_bytes / 1e9:.2f} GB (the largest batch is the last one that fits, not "
                                 "the first that does not)")
        nxt = memory.estimate(config, int(got) + 1, seq_len).peak
        raise AssertionError(f"[{name}] batch {got + 1} fits too: its peak is {nxt / 1e9:.2f} GB <= "
                             f"{memory_bytes / 1e9:.2f} GB (expected {want})")

# ----------------------------------------------------------------------------------------------------------
# 17 length-bucketed prediction, results in the original order
# ----------------------------------------------------------------------------------------------------------

class _CountingModel(nn.Module):
    """Wraps a model and records the (batch, seq) of every call: the work a prediction loop asked for."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[tuple[int, int]] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        self.calls.append(tuple(ids.shape))
        return self.model(*args, **kwargs)


def _padded_tokens(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> int:
    batches = [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    return sum(len(b) * max(lengths[j] for j in b) for b in batches)


def check_bucketed_predict(fn: Callable[..., Any], atol: float = 1e-5) -> None:
    """Check ``fn(model, features, batch_size) -> logits (n, num_labels)``: batches of similar lengths (sorted,
    so little padding is computed), with row i the logits of features[i], in the original order. The reference
    runs every feature alone (no padding at all); the classic bug, rows left in sorted order or put back with
    the permutation instead of its inverse, is named."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config, num_labels=3).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger weights than BERT's init: attending to padding shows clearly
            p.mul_(10)
    lengths = [12, 3, 25, 7, 18, 5, 30, 9, 15, 4]  # argsort is not its own inverse: both un-permute bugs show
    g = torch.Generator().manual_seed(1)
    features = [{"input_ids": [2] + torch.randint(4, 50, (n - 2,), generator=g).tolist() + [3],
                 "token_type_ids": [0] * n} for n in lengths]
    batch_size = 4
    with torch.no_grad():
        want = torch.cat([model(torch.tensor([f["input_ids"]]), torch.tensor([f["token_type_ids"]]))
                          for f in features])
    counting = _CountingModel(model)
    with torch.no_grad():
        got = _call(fn, counting, [dict(f) for f in features], batch_size)
    if isinstance(got, (list, tuple)) and got and all(isinstance(t, torch.Tensor) for t in got):
        got = torch.cat([t.reshape(-1, want.shape[1]) for t in got])
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape) and not _close(got, want, atol):
        dist = torch.cdist(got.detach().double(), want.double())  # (got row, reference row)
        match = dist.argmin(1)
        if (dist.min(1).values <= 1e-4).all() and len(set(match.tolist())) == len(features):
            m = match.tolist()
            by_length = [lengths[j] for j in m]
            if by_length == sorted(by_length) or by_length == sorted(by_length, reverse=True):
                raise AssertionError("your rows are in length order (the order you batched in): put each row "
                                     "back at its feature's index, out[order] = sorted_out, so row i belongs to "
                                     "features[i]")
            raise AssertionError(f"every row is some feature's logits but in the wrong place (row 0 holds "
                                 f"features[{m[0]}]): to undo the sort write row k of the sorted results to "
                                 "index order[k] (out[order] = sorted_out), not out = sorted_out[order]")
    _tensor_difference("logits", got, want, atol, " - pass the attention_mask collate builds, so padding is "
                       "ignored" if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape) else "")
    if not counting.calls:
        raise AssertionError("the model was never called: run model(**batch) on each batch")
    if max(b for b, _ in counting.calls) > batch_size or len(counting.calls) != math.ceil(len(features) / batch_size):
        raise AssertionError(f"call the model on batches of batch_size={batch_size}: {len(features)} features need "
                             f"{math.ceil(len(features) / batch_size)} calls, you made {len(counting.calls)} "
                             f"of sizes {[b for b, _ in counting.calls]}")
    computed = sum(b * s for b, s in counting.calls)
    ascending = sorted(range(len(lengths)), key=lambda i: lengths[i])
    bucketed = max(_padded_tokens(lengths, ascending, batch_size),
                   _padded_tokens(lengths, ascending[::-1], batch_size))
    if computed > bucketed:
        raise AssertionError(f"your batches computed {computed} token positions, padding included; batched in "
                             f"length order they need at most {bucketed}: sort the features by length before "
                             "cutting batches (the original order needs "
                             f"{_padded_tokens(lengths, range(len(lengths)), batch_size)})")
