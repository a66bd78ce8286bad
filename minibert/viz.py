"""Looking inside BERT: attention for a sentence or pair, bertviz views, offline heat maps, per-head statistics.

The per-head statistics follow Clark et al. 2019, "What Does BERT Look At? An Analysis of BERT's Attention"
(sections 3-4): how much attention each head puts on [CLS], on [SEP], on punctuation, on the previous and the
next token, and the entropy of its attention distributions, averaged over the real (non-padding) tokens of a
corpus and shown as a layer x head grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from minibert.features import EncodedBatch, TextInput, encode_batch, run_encoder
from minibert.runtime import dry_run_cut
from minibert.tokenization import BertTokenizer

# ----------------------------------------------------------------------------------------------------------
# Attention from a model


@dataclass
class AttentionResult:
    """Attention of one sentence or pair: a tuple per layer of (1, heads, seq, seq) probabilities and its tokens.

    `attentions[layer][0, head, i, j]` is how much query token i attends to key token j (rows sum to 1).
    `sentence_b_start` is the index of the first token of sentence B (None for a single sentence), as bertviz wants.
    """

    tokens: list[str]
    attentions: tuple[torch.Tensor, ...]
    sentence_b_start: int | None = None
    input_ids: list[int] = field(default_factory=list)
    token_type_ids: list[int] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.attentions)

    @property
    def num_heads(self) -> int:
        return int(self.attentions[0].shape[1])

    def matrix(self, layer: int, head: int) -> np.ndarray:
        """The (seq, seq) attention matrix of one head, rows = queries (from), columns = keys (to)."""
        _check_layer_head(layer, head, self.num_layers, self.num_heads)
        return self.attentions[layer][0, head].numpy()


def _check_layer_head(layer: int, head: int, num_layers: int, num_heads: int) -> None:
    if not -num_layers <= layer < num_layers:
        raise ValueError(f"layer {layer} is out of range for a model with {num_layers} layers; "
                         f"use 0..{num_layers - 1} (or a negative index from the top)")
    if not -num_heads <= head < num_heads:
        raise ValueError(f"head {head} is out of range for a model with {num_heads} heads per layer; "
                         f"use 0..{num_heads - 1}")


def _model_attention(model: torch.nn.Module, batch: EncodedBatch) -> tuple[torch.Tensor, ...]:
    """Run the encoder in eval mode without gradients and return its attention probabilities per layer."""
    out = run_encoder(model, batch, output_attentions=True)
    if not (isinstance(out, (tuple, list)) and len(out) == 3):
        raise TypeError("expected the model to return (encoded_layers, pooled, attentions) when called with "
                        "output_attentions=True (the minibert BertModel contract); got "
                        f"{type(out).__name__} of length {len(out) if isinstance(out, (tuple, list)) else '?'}")
    return tuple(a.detach().float().cpu() for a in out[2])


def get_attention(model: torch.nn.Module, tokenizer: BertTokenizer, text_a: str, text_b: str | None = None,
                  max_seq_length: int = 512) -> AttentionResult:
    """Attention of a minibert model (a BertModel or any task model holding one at `.bert`) for a sentence or pair.

    The input is built as in the paper (section 3, Figure 2): [CLS] A [SEP] (B [SEP]), segment ids 0 for A, 1 for B.
    """
    batch = encode_batch(tokenizer, [text_a if text_b is None else (text_a, text_b)], max_seq_length)
    attentions = _model_attention(model, batch)
    tokens = batch.tokens[0]
    types = batch.token_type_ids[0].tolist()
    b_start = types.index(1) if text_b is not None and 1 in types else None  # segment B starts after [SEP]
    return AttentionResult(tokens=tokens, attentions=attentions, sentence_b_start=b_start,
                           input_ids=batch.input_ids[0].tolist(), token_type_ids=batch.token_type_ids[0].tolist())


@dataclass
class BatchAttention:
    """Attention for a padded batch: a tuple per layer of (batch, heads, seq, seq), with ids, mask and tokens."""

    attentions: tuple[torch.Tensor, ...]
    input_ids: torch.Tensor       # (batch, seq)
    attention_mask: torch.Tensor  # (batch, seq), 1 for real tokens
    tokens: list[list[str]]


def iter_batch_attention(model: torch.nn.Module, tokenizer: BertTokenizer, texts: Sequence[TextInput],
                         max_seq_length: int = 128, batch_size: int = 32) -> Iterator[BatchAttention]:
    """Attention for many sentences (or (a, b) pairs), one padded batch at a time (memory stays one batch); in a
    dry run (``MINIBERT_DRY_RUN=1``), the first batches only."""
    texts = dry_run_cut(texts, batch_size, "attention")
    for start in range(0, len(texts), batch_size):
        batch = encode_batch(tokenizer, texts[start:start + batch_size], max_seq_length)
        att = _model_attention(model, batch)
        yield BatchAttention(att, batch.input_ids, batch.attention_mask, batch.tokens)


def batch_attention(model: torch.nn.Module, tokenizer: BertTokenizer, texts: Sequence[TextInput],
                    max_seq_length: int = 128,
                    batch_size: int = 32) -> list[BatchAttention]:
    """Attention for many sentences (or (a, b) pairs), in padded batches: the input of `head_statistics`."""
    return list(iter_batch_attention(model, tokenizer, texts, max_seq_length, batch_size))


# ----------------------------------------------------------------------------------------------------------
# Per-head statistics (Clark et al. 2019)

HEAD_STATISTICS = ("cls", "sep", "punct", "prev", "next", "entropy")
STATISTIC_TITLES = {
    "cls": "attention to [CLS]", "sep": "attention to [SEP]", "punct": "attention to . or ,",
    "prev": "attention to previous token", "next": "attention to next token",
    "entropy": "entropy (nats)",
}


def punctuation_ids(tokenizer: BertTokenizer, symbols: str = ".,") -> list[int]:
    """Vocabulary ids of punctuation tokens (Clark et al. look at periods and commas)."""
    vocab = tokenizer.vocab
    return [vocab[s] for s in symbols if s in vocab]


def head_statistics(batches: BatchAttention | Iterable[BatchAttention], cls_token_id: int, sep_token_id: int,
                    punct_token_ids: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-head averages over all real query tokens of a corpus, each a (layers, heads) array.

    For each head: the attention mass on [CLS], on [SEP] and on punctuation (the ids come from the tokenizer:
    ``tokenizer.cls_token_id``, ``tokenizer.sep_token_id``, :func:`punctuation_ids`); the weight on the
    previous token i-1 and the next token i+1 (averaged over queries that have a real neighbour); the entropy
    -sum_j p_j log p_j of the query's distribution (nats). Padding queries are ignored and padding keys carry
    zero weight. Clark et al. 2019, sections 3.1-3.3.
    """
    if isinstance(batches, BatchAttention):
        batches = [batches]
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    for b in batches:
        att = torch.stack([a.double() for a in b.attentions])   # (layers, batch, heads, seq, seq)
        if att.shape[1] != b.input_ids.shape[0] or att.shape[-1] != b.input_ids.shape[1]:
            raise ValueError(f"attention of shape {tuple(att.shape[1:])} per layer does not match input_ids of "
                             f"shape {tuple(b.input_ids.shape)}; pass the ids the attention was computed from")
        mask = b.attention_mask.double()                     # (batch, seq)
        ids = b.input_ids

        def add(name: str, per_query: torch.Tensor, weight: torch.Tensor) -> None:
            # per_query: (layers, batch, heads, q); weight: (batch, q) -> sum over batch and q
            s = (per_query * weight[None, :, None, :]).sum(dim=(1, 3))
            sums[name] = sums.get(name, 0) + s
            counts[name] = counts.get(name, 0) + weight.sum()

        for name, key_is in (("cls", ids == cls_token_id), ("sep", ids == sep_token_id),
                             ("punct", torch.isin(ids, torch.tensor(list(punct_token_ids), dtype=ids.dtype)))):
            add(name, (att * key_is.double()[None, :, None, None, :]).sum(-1), mask)
        # A[..., i+1, i] (query i+1 -> its previous token) and A[..., i, i+1] (query i -> its next token)
        both_real = mask[:, 1:] * mask[:, :-1]
        add("prev", torch.diagonal(att, offset=-1, dim1=-2, dim2=-1), both_real)
        add("next", torch.diagonal(att, offset=1, dim1=-2, dim2=-1), both_real)
        entropy = -(att * torch.log(att.clamp_min(1e-30))).sum(-1)     # 0 * log(tiny) = 0 for padded keys
        add("entropy", entropy, mask)
    if not sums:
        raise ValueError("head_statistics needs at least one batch of attention; got none")
    return {name: (sums[name] / counts[name]).numpy() for name in HEAD_STATISTICS}


def corpus_head_statistics(model: torch.nn.Module, tokenizer: BertTokenizer, texts: Sequence[TextInput],
                           max_seq_length: int = 128, batch_size: int = 32) -> dict[str, np.ndarray]:
    """`head_statistics` over many sentences, with [CLS], [SEP] and '.' ',' ids taken from the tokenizer."""
    return head_statistics(iter_batch_attention(model, tokenizer, texts, max_seq_length, batch_size),
                           tokenizer.cls_token_id, tokenizer.sep_token_id, punctuation_ids(tokenizer))


def notable_heads(stats: dict[str, np.ndarray], top: int = 2, threshold: float = 0.5) -> list[str]:
    """Plain-language lines naming the heads that stand out in each statistic, read off the numbers."""
    lines = []
    for name in HEAD_STATISTICS:
        grid = stats[name]
        order = np.argsort(grid, axis=None)
        picks = order[:top] if name == "entropy" else order[::-1][:top]
        desc = []
        for flat in picks:
            layer, head = np.unravel_index(flat, grid.shape)
            desc.append(f"layer {layer} head {head} ({grid[layer, head]:.2f})")
        if name == "entropy":
            bl, bh = np.unravel_index(order[-1], grid.shape)
            lines.append(f"most focused heads (lowest entropy): {', '.join(desc)}; broadest: layer {bl} head {bh} "
                         f"({grid[bl, bh]:.2f}); by layer (mean) " + " ".join(f"{m:.2f}" for m in grid.mean(axis=1)))
            continue
        n_above = int((grid > threshold).sum())
        layer_means = grid.mean(axis=1)
        lines.append(f"{STATISTIC_TITLES[name]}: strongest {', '.join(desc)}; {n_above} of {grid.size} heads put "
                     f"more than {threshold:.0%} there; by layer (mean) "
                     + " ".join(f"{m:.2f}" for m in layer_means))
    return lines


# ----------------------------------------------------------------------------------------------------------
# Offline heat maps (matplotlib / seaborn)


def plot_attention(result: AttentionResult, layer: int = 0, head: int = 0, ax: Any = None,
                   cmap: str = "viridis", annotate: bool = False) -> Any:
    """Heat map of one head's attention, queries (from) down, keys (to) across; works without JavaScript."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    m = result.matrix(layer, head)
    if ax is None:
        size = max(4.0, 0.32 * len(result.tokens) + 1.5)
        _, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(m, ax=ax, cmap=cmap, vmin=0.0, vmax=1.0, square=True, annot=annotate, fmt=".2f",
                xticklabels=result.tokens, yticklabels=result.tokens, cbar_kws={"shrink": 0.7})
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(f"layer {layer}, head {head}")
    ax.tick_params(axis="x", labelrotation=90)
    ax.tick_params(axis="y", labelrotation=0)
    return ax


def plot_layer(result: AttentionResult, layer: int = 0, ncols: int = 4) -> Any:
    """All heads of one layer as small heat maps (no token labels), to spot the recurring patterns at a glance."""
    import matplotlib.pyplot as plt

    _check_layer_head(layer, 0, result.num_layers, result.num_heads)
    n = result.num_heads
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.3 * nrows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if h < n:
            ax.imshow(result.matrix(layer, h), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"head {h}", fontsize=9)
        else:
            ax.axis("off")
    fig.suptitle(f"layer {layer}: rows = queries, columns = keys")
    fig.tight_layout()
    return fig


def plot_head_statistics(stats: dict[str, np.ndarray], names: Sequence[str] = HEAD_STATISTICS,
                         ncols: int = 3) -> Any:
    """One layer x head heat map per statistic (Clark et al. 2019, Figures 2-4 in grid form)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        grid = stats[name]
        vmax = None if name == "entropy" else 1.0
        sns.heatmap(grid, ax=ax, cmap="magma", vmin=0.0, vmax=vmax, cbar_kws={"shrink": 0.8})
        ax.set_title(STATISTIC_TITLES.get(name, name))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------
# bertviz head view and model view

# The JavaScript that bertviz 1.4 loads from a CDN; `js_base` swaps these for local copies (see bertviz #63).
BERTVIZ_CDN = {
    "require.js": "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js",
    "d3": "https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min",
    "jquery": "https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min",
}


def _for_bertviz(result: AttentionResult, decimals: int | None) -> list[torch.Tensor]:
    """Attention as bertviz takes it; rounded (in float64, so the JSON holds short numbers) to keep pages small."""
    if decimals is None:
        return list(result.attentions)
    return [a.double().round(decimals=decimals) for a in result.attentions]


def _bertviz_html(view: str, result: AttentionResult, js_base: str | None, decimals: int | None,
                  **kwargs: Any) -> str:
    try:
        import bertviz
    except ImportError as e:  # pragma: no cover - bertviz is in the course extras
        raise ImportError("bertviz is not installed; `pip install bertviz`, or use plot_attention (offline)") from e
    fn = getattr(bertviz, view)
    html = fn(_for_bertviz(result, decimals), result.tokens, sentence_b_start=result.sentence_b_start,
              html_action="return", **kwargs).data
    if js_base is not None:
        base = js_base.rstrip("/")
        local = {"require.js": f"{base}/require.js", "d3": f"{base}/d3.min", "jquery": f"{base}/jquery.min"}
        for key, url in BERTVIZ_CDN.items():
            if url not in html:
                raise RuntimeError(f"bertviz's HTML no longer loads {url}; this bertviz version is not the one "
                                   "minibert.viz knows (1.4.x): call without js_base or update BERTVIZ_CDN")
            html = html.replace(url, local[key])
    return html


def head_view_html(result: AttentionResult, js_base: str | None = None, layer: int | None = None,
                   heads: Sequence[int] | None = None, decimals: int | None = 4) -> str:
    """bertviz's head view as an HTML fragment (CDN JavaScript, or copies under `js_base` when given).

    Probabilities are rounded to `decimals` (None keeps float32): a pair of 20 tokens in BERT-base is
    12 x 12 x 20 x 20 numbers per view, and bertviz writes five views for a pair.
    """
    return _bertviz_html("head_view", result, js_base, decimals, layer=layer, heads=list(heads) if heads else None)


def model_view_html(result: AttentionResult, js_base: str | None = None, decimals: int | None = 4) -> str:
    """bertviz's model view (every layer x head thumbnail) as an HTML fragment."""
    return _bertviz_html("model_view", result, js_base, decimals)


def save_view(result: AttentionResult, path: str | Path, view: str = "head_view", js_base: str | None = None,
              title: str = "minibert attention", decimals: int | None = 4) -> Path:
    """Write a standalone HTML page of a bertviz view, to open in a browser when the notebook cannot run it."""
    if view not in ("head_view", "model_view"):
        raise ValueError(f"view must be 'head_view' or 'model_view', not {view!r}")
    body = (head_view_html(result, js_base, decimals=decimals) if view == "head_view"
            else model_view_html(result, js_base, decimals=decimals))
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
            f"<body>\n{body}\n</body></html>\n")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def show_head_view(result: AttentionResult, layer: int | None = None, heads: Sequence[int] | None = None,
                   decimals: int | None = 4) -> None:
    """Display bertviz's interactive head view in the notebook (needs the CDN JavaScript; see notebook 11)."""
    import bertviz

    bertviz.head_view(_for_bertviz(result, decimals), result.tokens, sentence_b_start=result.sentence_b_start,
                      layer=layer, heads=list(heads) if heads else None)


def show_model_view(result: AttentionResult, decimals: int | None = 4) -> None:
    """Display bertviz's model view in the notebook."""
    import bertviz

    bertviz.model_view(_for_bertviz(result, decimals), result.tokens, sentence_b_start=result.sentence_b_start)
