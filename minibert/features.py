"""Feature extraction: hidden states as JSON lines (the 2019 `extract_features.py` example) and sentence vectors.

The JSON layout is the original's, one line per input:
`{"linex_index": 0, "features": [{"token": "[CLS]", "layers": [{"index": -1, "values": [...]}, ...]}, ...]}`
(values rounded to 6 decimals). Sentence vectors from [CLS], the pooler and mean pooling are compared on MRPC
without any training by the ROC AUC of their cosine similarity against the paraphrase label.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np
import torch

from minibert.data import collate
from minibert.datasets import InputExample
from minibert.metrics import roc_auc
from minibert.runtime import dry_run_cut, eval_mode
from minibert.tokenization import BertTokenizer

TextInput = Union[str, tuple[str, str]]  # a sentence, or a pair (text_a, text_b)
DEFAULT_LAYERS = (-1, -2, -3, -4)


# ----------------------------------------------------------------------------------------------------------
# Turning text into model input (as the 2019 examples do)


def unwrap_bert(model: torch.nn.Module) -> torch.nn.Module:
    """The BertModel inside a task model (held at `.bert`), or the model itself."""
    return getattr(model, "bert", model)


@dataclass
class EncodedBatch:
    """A padded batch: ids, segment ids and mask (batch, seq), with each row's real tokens."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    tokens: list[list[str]]


def encode_batch(tokenizer: BertTokenizer, texts: Sequence[TextInput], max_seq_length: int = 128) -> EncodedBatch:
    """Sentences or pairs -> ``[CLS] A [SEP] (B [SEP])`` by the tokenizer (pairs truncated longest first, paper
    section 3), padded by :func:`minibert.data.collate` with the tokenizer's [PAD] (mask 0) to the longest."""
    if not texts:
        raise ValueError("encode_batch needs at least one text")
    encoded = []
    for text in texts:
        if isinstance(text, str):
            encoded.append(tokenizer.encode(text, max_length=max_seq_length))
        elif isinstance(text, (tuple, list)) and len(text) == 2:
            encoded.append(tokenizer.encode(text[0], text[1], max_length=max_seq_length))
        else:
            raise TypeError(f"expected a sentence (str) or a pair (text_a, text_b), got {text!r}")
    batch = collate(encoded, tokenizer.pad_token_id)
    tokens = [tokenizer.convert_ids_to_tokens(e["input_ids"]) for e in encoded]
    return EncodedBatch(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], tokens)


def run_encoder(model: torch.nn.Module, batch: EncodedBatch, output_attentions: bool = False) -> tuple:
    """The encoder's output for a batch (of a BertModel or a task model's `.bert`), in eval mode without
    gradients, on the model's device; the model's train/eval mode is restored afterwards."""
    bert = unwrap_bert(model)
    device = next(bert.parameters()).device
    with eval_mode(bert), torch.no_grad():
        return bert(batch.input_ids.to(device), batch.token_type_ids.to(device), batch.attention_mask.to(device),
                    output_all_encoded_layers=True, output_attentions=output_attentions)


def _forward(model: torch.nn.Module, batch: EncodedBatch) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """All encoder layers (list of (batch, seq, hidden)) and the pooled output (None for a BertModel built
    without its pooler), on the CPU in float32."""
    layers, pooled = run_encoder(model, batch)[:2]
    return [h.float().cpu() for h in layers], None if pooled is None else pooled.float().cpu()


# ----------------------------------------------------------------------------------------------------------
# extract_features: JSON lines in the 2019 layout

_PAIR_RE = re.compile(r"^(.*) \|\|\| (.*)$")


def read_examples(lines: Iterable[str] | str | Path) -> list[TextInput]:
    """Inputs of the 2019 extract_features: one per line, `text` or `text_a ||| text_b`; a path or lines."""
    if isinstance(lines, (str, Path)) and Path(lines).is_file():
        lines = Path(lines).read_text(encoding="utf-8").split("\n")
    elif isinstance(lines, (str, Path)):
        raise FileNotFoundError(f"no input file at {lines}; pass a path to a text file or a list of lines")
    examples: list[TextInput] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        m = _PAIR_RE.match(line)
        examples.append((m.group(1), m.group(2)) if m else line)
    return examples


def extract_features(model: torch.nn.Module, tokenizer: BertTokenizer, texts: Sequence[TextInput],
                     output_file: str | Path,
                     layers: Sequence[int] = DEFAULT_LAYERS, max_seq_length: int = 128, batch_size: int = 8) -> Path:
    """Write each text's per-token hidden states of `layers` as one JSON line, in the 2019 example's layout.

    Layer indices count the encoder layers as `model(..., output_all_encoded_layers=True)` returns them:
    0 is the first Transformer block, -1 the last (the paper's feature-based NER used the sum or the
    concatenation of the last four, section 5.3). In a dry run (``MINIBERT_DRY_RUN=1``), the first batches' texts
    only.
    """
    output_file = Path(output_file)
    texts = dry_run_cut(texts, batch_size, "extract_features")
    num_layers = unwrap_bert(model).config.num_hidden_layers
    for i in layers:
        if not -num_layers <= i < num_layers:
            raise ValueError(f"layer index {i} is out of range for a model with {num_layers} layers; "
                             f"use -{num_layers}..{num_layers - 1}")
    with output_file.open("w", encoding="utf-8") as f:
        for start in range(0, len(texts), batch_size):
            batch = encode_batch(tokenizer, texts[start:start + batch_size], max_seq_length)
            hidden, _ = _forward(model, batch)
            for row, tokens in enumerate(batch.tokens):
                features = [{"token": tok,
                             "layers": [{"index": i, "values": [round(float(x), 6) for x in hidden[i][row, t]]}
                                        for i in layers]}
                            for t, tok in enumerate(tokens)]
                f.write(json.dumps({"linex_index": start + row, "features": features}) + "\n")
    return output_file


def read_features(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records of an extract_features JSON lines file, checking their layout."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg}); expected one record per line") from e
            if not isinstance(rec, dict) or "linex_index" not in rec or "features" not in rec:
                raise ValueError(f"{path}:{n}: expected keys 'linex_index' and 'features' (the extract_features "
                                 f"layout), got {sorted(rec) if isinstance(rec, dict) else type(rec).__name__}")
            yield rec


def feature_matrix(record: dict[str, Any], layer: int = -1) -> tuple[list[str], np.ndarray]:
    """Tokens and the (tokens, hidden) array of one layer from an extract_features record."""
    tokens, rows = [], []
    for feat in record["features"]:
        by_index = {lay["index"]: lay["values"] for lay in feat["layers"]}
        if layer not in by_index:
            raise KeyError(f"layer {layer} is not in this record (it has {sorted(by_index)}); "
                           "extract it with extract_features(..., layers=[...])")
        tokens.append(feat["token"])
        rows.append(by_index[layer])
    return tokens, np.asarray(rows, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# Sentence vectors and their similarity

POOLINGS = ("cls", "mean", "pooled")


@dataclass
class SentenceVectors:
    """Sentence vectors of N texts: `cls` and `mean` are (layers, N, hidden), `pooled` is (N, hidden)."""

    cls: np.ndarray
    mean: np.ndarray
    pooled: np.ndarray


def sentence_vectors(model: torch.nn.Module, tokenizer: BertTokenizer, texts: Sequence[TextInput],
                     max_seq_length: int = 128,
                     batch_size: int = 32) -> SentenceVectors:
    """[CLS] vector and masked mean over real tokens for every layer, and the pooler output ([CLS] -> dense -> tanh).

    Mean pooling averages every real token, [CLS] and [SEP] included (what sentence-transformers does). In a dry
    run (``MINIBERT_DRY_RUN=1``), for the first batches' worth of texts only (``texts[:N]``).
    """
    if not texts:
        raise ValueError("sentence_vectors needs at least one text")
    texts = dry_run_cut(texts, batch_size, "sentence_vectors")
    # batch texts of similar length together (less padding, faster), then put the rows back in input order
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]) if isinstance(texts[i], str) else
                   len(texts[i][0]) + len(texts[i][1]))
    cls, mean, pooled = [], [], []
    for start in range(0, len(texts), batch_size):
        batch = encode_batch(tokenizer, [texts[i] for i in order[start:start + batch_size]], max_seq_length)
        hidden, pool = _forward(model, batch)
        h = torch.stack(hidden)                              # (layers, batch, seq, hidden)
        m = batch.attention_mask.float()[None, :, :, None]   # (1, batch, seq, 1)
        cls.append(h[:, :, 0])
        mean.append((h * m).sum(2) / m.sum(2))
        pooled.append(pool if pool is not None else torch.full(h.shape[1:2] + h.shape[3:], float("nan")))
    back = torch.argsort(torch.tensor(order))
    return SentenceVectors(torch.cat(cls, 1)[:, back].numpy(), torch.cat(mean, 1)[:, back].numpy(),
                           torch.cat(pooled, 0)[back].numpy())


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (..., N, hidden) arrays -> (..., N)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def similarity_auc(vectors_a: SentenceVectors, vectors_b: SentenceVectors,
                   labels: Sequence[int]) -> dict[str, np.ndarray]:
    """ROC AUC of cos(a, b) against the labels, per pooling: `cls` and `mean` per layer, `pooled` one value."""
    labels = np.asarray(labels)
    return {
        "cls": np.array([roc_auc(s, labels) for s in cosine_similarity(vectors_a.cls, vectors_b.cls)]),
        "mean": np.array([roc_auc(s, labels) for s in cosine_similarity(vectors_a.mean, vectors_b.mean)]),
        "pooled": np.array([roc_auc(cosine_similarity(vectors_a.pooled, vectors_b.pooled), labels)]),
    }


def mrpc_similarity_auc(model: torch.nn.Module, tokenizer: BertTokenizer, examples: Sequence[InputExample],
                        max_seq_length: int = 128,
                        batch_size: int = 32) -> dict[str, np.ndarray]:
    """Paraphrase detection without training: encode each MRPC sentence alone, score a pair by cosine similarity.

    `examples` are InputExample-like (text_a, text_b, label with 1 = paraphrase). Returns `similarity_auc`.
    """
    if not examples:
        raise ValueError("mrpc_similarity_auc needs at least one example")
    examples = dry_run_cut(examples, batch_size, "sentence_vectors")  # so the labels match the vectors
    labels = [int(e.label) for e in examples]
    va = sentence_vectors(model, tokenizer, [e.text_a for e in examples], max_seq_length, batch_size)
    vb = sentence_vectors(model, tokenizer, [e.text_b for e in examples], max_seq_length, batch_size)
    return similarity_auc(va, vb, labels)


def plot_auc_by_layer(aucs: dict[str, np.ndarray], ax: Any = None, title: str = "MRPC dev, no training") -> Any:
    """Line chart of ROC AUC per layer for [CLS] and mean pooling, the pooler as a horizontal line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    layers = np.arange(1, len(aucs["cls"]) + 1)
    ax.plot(layers, aucs["mean"], "o-", label="mean pooling")
    ax.plot(layers, aucs["cls"], "s-", label="[CLS]")
    ax.axhline(float(aucs["pooled"][0]), color="gray", ls="--", label="pooled output (last layer)")
    ax.axhline(0.5, color="black", lw=0.8, ls=":", label="chance")
    ax.set_xticks(layers)
    ax.set_xlabel("encoder layer")
    ax.set_ylabel("ROC AUC of cosine similarity")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


# ----------------------------------------------------------------------------------------------------------
# 2-D projection of word vectors


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, hidden) rows onto their first two principal components: (N, 2) and the explained variance ratios."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"pca_2d needs a (N >= 2, hidden) array, got shape {x.shape}")
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    return centred @ vt[:2].T, var[:2] / var.sum()


def word_vectors(model: torch.nn.Module, tokenizer: BertTokenizer, sentences: Sequence[str], words: Sequence[str],
                 layer: int = -1) -> np.ndarray:
    """Contextual vector of `words[i]` (a single WordPiece) inside `sentences[i]`, at encoder layer `layer`."""
    if len(sentences) != len(words):
        raise ValueError(f"got {len(sentences)} sentences but {len(words)} words; pass one word per sentence")
    batch = encode_batch(tokenizer, list(sentences))
    hidden, _ = _forward(model, batch)
    out = []
    for row, (toks, word) in enumerate(zip(batch.tokens, words)):
        piece = tokenizer.tokenize(word)
        if len(piece) != 1:
            raise ValueError(f"{word!r} is {len(piece)} WordPieces {piece}; pick a word that is one WordPiece")
        if piece[0] not in toks:
            raise ValueError(f"{word!r} does not occur in sentence {row}: {sentences[row]!r}")
        out.append(hidden[layer][row, toks.index(piece[0])].numpy())
    return np.stack(out)


def plot_projection(points: np.ndarray, groups: Sequence[str], texts: Sequence[str] | None = None,
                    ax: Any = None, title: str = "") -> Any:
    """Scatter of 2-D points coloured by group, optionally labelled with a text each."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    for g in dict.fromkeys(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        ax.scatter(points[idx, 0], points[idx, 1], label=g, s=28)
    if texts is not None:
        for (px, py), t in zip(points, texts):
            ax.annotate(t, (px, py), fontsize=7, alpha=0.7, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
