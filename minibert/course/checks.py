"""Exercise checkers: run a learner's function against minibert on tricky cases and name the first difference.

One section per notebook, in course order. Each ``check_*`` raises AssertionError with a message that says
which case failed and what was expected. References are the library's own code paths (explicit attention,
``BertAdam.step``, ``masked_lm_loss``, ``head_statistics``, ``roc_auc``), not second copies of the math.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from minibert import assets
from minibert.course import solutions
from minibert.metrics import roc_auc
from minibert.heads import BertForSequenceClassification, masked_lm_loss
from minibert.modeling import BertConfig, BertModel, explicit_attention, extended_attention_mask
from minibert.optimization import BertAdam
from minibert.pretraining import IGNORE_INDEX
from minibert.tokenization import BasicTokenizer, WordpieceTokenizer, load_vocab
from minibert.data import Feature, collate
from minibert.training import num_update_steps
from minibert.viz import BatchAttention, head_statistics


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
        except Exception as err:  # the learner's bug, reported with the input that triggered it
            raise AssertionError(f"{what} raised {type(err).__name__}: {err} on input {case!r} "
                                 f"(expected {expected})") from err
        if list(got) != expected:
            raise AssertionError(f"{what} differs on input {case!r}: got {list(got)}, expected {expected}")
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

def _tensor_difference(name: str, theirs: Any, ours: torch.Tensor, atol: float) -> None:
    if not isinstance(theirs, torch.Tensor):
        raise AssertionError(f"{name}: expected a tensor, got {type(theirs).__name__}")
    if tuple(theirs.shape) != tuple(ours.shape):
        raise AssertionError(f"{name}: shape {tuple(theirs.shape)}, expected {tuple(ours.shape)}")
    diff = (theirs.detach().float() - ours.detach().float()).abs()
    if not torch.isfinite(theirs).all():
        idx = tuple(int(i) for i in (~torch.isfinite(theirs)).nonzero()[0])
        raise AssertionError(f"{name}: non-finite value {theirs[idx].item()} at index {idx} (is a masked "
                             "row all -inf, or did you divide by zero?)")
    if diff.max() > atol:
        idx = tuple(int(i) for i in (diff > atol).nonzero()[0])
        raise AssertionError(f"{name}: at index {idx} got {theirs[idx].item():.6f}, expected "
                             f"{ours[idx].item():.6f} (max abs difference {diff.max().item():.2e} > {atol})")


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d) + mask) v on (..., seq, head_dim) tensors; mask (batch, seq) of 1/0 or None.
    Returns (context, probabilities), computed by the library's explicit attention path."""
    additive = None if mask is None else extended_attention_mask(mask, q.dtype)
    return explicit_attention(q, k, v, additive)


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
        out = fn(q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone())
        if not (isinstance(out, tuple) and len(out) == 2):
            raise AssertionError(f"[{case}] fn must return (context, probs), got {type(out).__name__}")
        ctx, probs = reference_attention(q, k, v, mask)
        _tensor_difference(f"[{case}] probs", out[1], probs, atol)
        _tensor_difference(f"[{case}] context", out[0], ctx, atol)


def check_bert_layer(fn: Callable[..., Any], atol: float = 1e-5) -> None:
    """Check ``fn(layer, hidden_states, attention_mask) -> hidden_states`` (a hand-written forward of one
    ``BertLayer`` in eval mode, attention_mask (batch, seq) of 1/0) against ``BertLayer`` itself."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64)
    layer = BertModel(config).encoder.layer[0].eval()
    with torch.no_grad():
        for p in layer.parameters():  # non-trivial LayerNorm gains and biases expose a skipped step
            p.add_(torch.randn_like(p) * 0.1)
        x = torch.randn(2, 5, 32)
        mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        expected, _ = layer(x, extended_attention_mask(mask, x.dtype))
        got = fn(layer, x.clone(), mask.clone())
    _tensor_difference("layer output", got, expected, atol)

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
            raise AssertionError(f"[{case}] your function raised {type(err).__name__}: {err}") from err
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"[{case}] expected a scalar tensor (the mean over labelled positions), got "
                                 f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
        if not torch.isfinite(got) or abs(got.item() - expected.item()) > atol:
            raise AssertionError(f"[{case}] loss {got.item():.6f}, expected {expected.item():.6f} (is every "
                                 "ignored label excluded from both the sum and the count?)")

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
    before = ids.clone()
    inputs, labels = fn(ids, special, vocab_size, mask_token_id, torch.Generator().manual_seed(1))
    if not torch.equal(ids, before):
        raise AssertionError("your function changed input_ids in place; work on a copy (ids.clone())")
    if inputs.shape != ids.shape or labels.shape != ids.shape:
        raise AssertionError(f"inputs/labels must have shape {tuple(ids.shape)}, got {tuple(inputs.shape)} and "
                             f"{tuple(labels.shape)}")
    target = labels != IGNORE_INDEX
    if (labels == -1).any():
        raise AssertionError("use -100 (IGNORE_INDEX) for positions that are not predicted, not -1")
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
    rows = target.sum(1).float()
    if rows.std() == 0 and rows[0] == 0:
        raise AssertionError("no target in any row")
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
    got = float(fn(scores, labels))
    if abs(got - 2 / 36) < 1e-6:
        raise AssertionError(f"got {got:.4f}: you divided by all positions; divide by the predicted ones "
                             f"(labels != -100)")
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
    got = float(fn(scores, labels))
    if abs(got - ce.exp().mean().item()) < 1e-4 * want and abs(got - want) > 1e-4 * want:
        raise AssertionError("you averaged exp(loss); perplexity is exp(mean loss)")
    per_seq = math.exp(torch.stack([ce[:5].mean(), ce[5:].mean()]).mean().item())
    if abs(got - per_seq) < 1e-4 * want:
        raise AssertionError("you averaged per sequence first; average over all predicted tokens")
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


def check_bertadam_step(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Run a learner's `fn(p, grad, m, v, lr_scheduled, b1, b2, e, weight_decay, max_grad_norm) -> (p, m, v)`
    against ours on tricky cases; raise AssertionError naming the first thing wrong."""
    g = torch.Generator().manual_seed(0)
    base = dict(b1=0.9, b2=0.999, e=1e-6, weight_decay=0.0, max_grad_norm=-1.0)
    cases = [
        ("no bias correction: with m=v=0 the first update is g*(1-b1)/(|g|*sqrt(1-b2)+e), not sign(g)", {}, 0.0),
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
        inputs = [t.clone() for t in (p, grad, m, v)]
        want = bertadam_reference_update(p, grad, m, v, lr, **args)
        try:
            got = fn(*[t.clone() for t in inputs], lr, **args)
        except Exception as exc:  # name the case that crashed
            raise AssertionError(f"your function raised {type(exc).__name__}: {exc} on case: {what}") from exc
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            raise AssertionError("return a tuple (new_p, new_m, new_v)")
        for name, w, o in zip(("m", "v", "p"), (want[1], want[2], want[0]), (got[1], got[2], got[0])):
            o = torch.as_tensor(o)
            if o.shape != w.shape:
                raise AssertionError(f"{name} has shape {tuple(o.shape)}, expected {tuple(w.shape)} ({what})")
            if not torch.allclose(o, w, rtol=1e-5, atol=1e-6):
                i = (o - w).abs().argmax().item()
                raise AssertionError(f"new {name} differs on case: {what}: element {i} is "
                                     f"{o.flatten()[i].item():.6g}, expected {w.flatten()[i].item():.6g}")
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
        try:
            got = fn(n, b, e)
        except Exception as exc:
            raise AssertionError(f"fn({n}, {b}, {e}) raised {type(exc).__name__}: {exc} ({what})") from exc
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
    for what, feats in cases:
        want = collate(feats, pad_token_id=0)  # the cases use bert-base-uncased's ids: [PAD] = 0
        try:
            got = fn(feats)
        except Exception as exc:
            raise AssertionError(f"your function raised {type(exc).__name__}: {exc} on case: {what}") from exc
        for key, w in want.items():
            if key not in got:
                raise AssertionError(f"the batch has no {key!r} ({what}); expected keys {sorted(want)}")
            g = torch.as_tensor(got[key])
            if g.shape != w.shape:
                raise AssertionError(f"{key} has shape {tuple(g.shape)}, expected {tuple(w.shape)}: pad to the "
                                     f"longest sequence in the batch, not a fixed length ({what})")
            if not torch.equal(g.long(), w):
                raise AssertionError(f"{key} is {g.tolist()}, expected {w.tolist()} ({what})")

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
    got = fn(attn.clone(), mask.clone())
    got = np.asarray(got.detach() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
    if got.shape != expected.shape:
        raise AssertionError(f"expected a (layers, heads) = {expected.shape} array, got shape {got.shape}")
    if np.isnan(got).any():
        raise AssertionError("your entropy has nan: 0 * log(0) must count as 0 (clamp p before the log)")
    bad = np.argwhere(~np.isclose(got, expected, atol=1e-5))
    if len(bad):
        layer, head = bad[0]
        all_queries = (-(attn.double() * attn.double().clamp_min(1e-30).log()).sum(-1)).mean((1, 3)).numpy()
        hint = (" - you averaged over padding queries too (sentence 2 has only 2 real tokens): weight each "
                "query by the mask" if np.allclose(got, all_queries, atol=1e-5) else
                " (entropy is -sum_j p_j log p_j over keys, averaged over real queries of every sentence)")
        raise AssertionError(f"layer {layer} head {head}: expected {expected[layer, head]:.5f}, "
                             f"got {got[layer, head]:.5f}{hint}")

# ----------------------------------------------------------------------------------------------------------
# 12 ROC AUC
# ----------------------------------------------------------------------------------------------------------

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
        got = float(fn(s.copy(), y.copy()))
        if not abs(got - expected) < 1e-9:
            raise AssertionError(f"case {name!r}: expected AUC {expected:.6f}, got {got:.6f} "
                                 f"(scores={np.round(s[:6], 2).tolist()}..., labels={y[:6].tolist()}...)")

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
        try:
            got = fn(scores.clone(), nsp.clone(), lab.clone(), nsp_label.clone())
        except NotImplementedError:
            raise
        except Exception as err:
            raise AssertionError(f"[{case}] your function raised {type(err).__name__}: {err}") from err
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
        return [float(x) for x in loop(model, [dict(b) for b in batches], optimizer)]

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
