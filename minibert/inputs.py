"""The rules every input and label of a BERT model obeys, stated once.

=====================  =========================================================================================
input_ids              token ids in [0, vocab_size), of dtype long or int32 (the two that nn.Embedding takes)
token_type_ids         segment ids in [0, type_vocab_size): segment A is 0, B is 1 (same dtypes)
attention_mask         1 (a token) or 0 (padding)
class labels           in [0, num_classes); ``IGNORE_INDEX`` (-100, PyTorch's) or -1 (the 2019 code's) mark a
                       position or row that is not predicted
answer positions       token positions >= 0 (one past the sequence: the answer is not in this window), or -100/-1
regression targets     finite numbers
=====================  =========================================================================================

Each rule is a pure function, True where a value breaks it; :func:`first_index` gives the first offending
position. Three places turn that into an error, each naming what it knows: ``data.collate`` names the example
(guid and batch row), ``BertModel.forward`` (through :func:`check_model_inputs`) the argument and position, and
each head's loss (through :func:`check_class_labels` and its two siblings) its labels. A bad id is then a
readable ValueError instead of an IndexError deep in an embedding or a CUDA device-side assert.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from minibert.config import BertConfig

IGNORE_INDEX = -100  # the label of what is not predicted: cross_entropy's default ignore_index
IGNORED_LABELS = (IGNORE_INDEX, -1)  # -1 is the 2019 code's mark for the same
ID_DTYPES = (torch.long, torch.int32)  # the index dtypes nn.Embedding accepts
POSITION_KEYS = ("start_positions", "end_positions")

Index = tuple[int, ...]


# ----------------------------------------------------------------------------------------------------------
# The rules: a tensor in, a boolean tensor of the same shape out (True = breaks the rule)


def outside(values: torch.Tensor, low: float, high: float | None = None,
            ignore: Sequence[int] = ()) -> torch.Tensor:
    """True where a value is not in [low, high) (NaN is never inside) and is not one of ``ignore``."""
    inside = values >= low
    if high is not None:
        inside &= values < high
    for value in ignore:
        inside |= values == value
    return ~inside


def invalid_input_ids(input_ids: torch.Tensor, vocab_size: int | None) -> torch.Tensor:
    return outside(input_ids, 0, vocab_size)


def invalid_segment_ids(token_type_ids: torch.Tensor, type_vocab_size: int = 2) -> torch.Tensor:
    return outside(token_type_ids, 0, type_vocab_size)


def invalid_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask != 0) & (attention_mask != 1)


def invalid_labels(labels: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    return outside(labels, 0, num_classes, ignore=IGNORED_LABELS)


def invalid_positions(positions: torch.Tensor) -> torch.Tensor:
    return outside(positions, 0, None, ignore=IGNORED_LABELS)


def invalid_targets(targets: torch.Tensor) -> torch.Tensor:
    return ~torch.isfinite(targets)


def first_index(invalid: torch.Tensor) -> Index | None:
    """The first True position of a rule's result in row-major order (``values[index]`` is the culprit), or None."""
    found = invalid.nonzero()
    return tuple(found[0].tolist()) if len(found) else None


# ----------------------------------------------------------------------------------------------------------
# What each one expects, for the error messages


def explain(name: str, value: float, limit: int | None = None, at: str = "", largest: float | None = None) -> str:
    """``"{name} contain {value}{at}; expected ..."``: what was found, where, and what a valid value is.

    ``limit`` is the upper bound of the rule (vocab_size, type_vocab_size, num_classes; None: unbounded);
    ``largest`` (the largest class label of the batch) turns a label past ``num_labels`` into the fix to make.
    """
    if name == "input_ids":
        want = f"token ids in the vocabulary {_range(limit)}; was the text tokenized with this model's vocab.txt?"
    elif name == "token_type_ids":
        want = f"segment ids in {_range(limit)} (segment A is 0, B is 1)"
    elif name == "attention_mask":
        want = "0 (padding) or 1 (token)"
    elif name in POSITION_KEYS:
        want = (f"token positions >= 0 (past the end of the sequence means 'no answer in this window'; "
                f"{IGNORE_INDEX} or -1 ignores the row)")
    elif isinstance(value, float) and not math.isfinite(value):
        want = "finite regression targets"
    else:
        want = f"class ids in {_range(limit)} ({IGNORE_INDEX} or -1 where no prediction is made)"
        if name == "labels" and limit is not None and largest is not None and largest >= limit:
            want += f"; build the model with num_labels={int(largest) + 1}"
    return f"{name} contain {_show(value)}{at}; expected {want}"


def _range(limit: int | None) -> str:
    return f"[0, {limit})" if limit is not None else ">= 0"


def _show(value: float) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else str(int(value)) if value.is_integer() else str(value)
    return str(value)


def _at(index: Index) -> str:
    """' at row 1, position 3' for an index into a (batch, seq) tensor, ' at row 1' into a (batch,) one."""
    return " at " + ", ".join(f"{what} {i}" for what, i in zip(("row", "position"), index))


def _is_compiling() -> bool:
    """True while torch.compile traces (reading values back would break the graph); False on torch < 2.3."""
    fn = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(fn()) if fn is not None else False


# ----------------------------------------------------------------------------------------------------------
# The model's checks: shapes and dtypes always (free); values, when asked, in one host sync per call


def check_model_inputs(config: BertConfig, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                       attention_mask: torch.Tensor | None = None, check_values: bool = True) -> bool:
    """Raise ValueError naming the argument and what to change; return True when the mask hides nothing.

    With ``check_values`` every rule runs on the device and the three answers (and whether the mask is all
    ones) are read back together, in one host sync; without it (batches checked when they were built) nothing
    waits for the device and a given mask is kept.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a (batch, seq) tensor of token ids, got {shape}; "
                         "for one sentence use ids.unsqueeze(0)")
    batch, seq = input_ids.shape
    if batch == 0 or seq == 0:
        what = "an empty batch (no sequences)" if batch == 0 else "an empty sequence (0 tokens)"
        raise ValueError(f"input_ids has shape {(batch, seq)}: {what}; a batch needs at least one sequence, "
                         "and a sequence at least [CLS] and [SEP] (encode text with the tokenizer)")
    if seq > config.max_position_embeddings:
        raise ValueError(f"sequence length {seq} exceeds max_position_embeddings="
                         f"{config.max_position_embeddings}; truncate with max_seq_length<="
                         f"{config.max_position_embeddings}")
    for name, ids in (("input_ids", input_ids), ("token_type_ids", token_type_ids)):
        if ids is not None and ids.dtype not in ID_DTYPES:
            what = "integer token ids" if name == "input_ids" else "integer segment ids"
            raise ValueError(f"{name} must hold {what} of dtype torch.long (or torch.int32), got dtype {ids.dtype}; "
                             f"convert with {name}.long()")
    for name, t, hint in (("token_type_ids", token_type_ids, ""),
                          ("attention_mask", attention_mask, " (1 = real token, 0 = padding)")):
        if t is not None and tuple(t.shape) != (batch, seq):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {(batch, seq)} like input_ids{hint}")
    if not check_values or _is_compiling():
        return attention_mask is None
    rules = [("input_ids", input_ids, invalid_input_ids(input_ids, config.vocab_size), config.vocab_size)]
    if token_type_ids is not None:
        rules.append(("token_type_ids", token_type_ids, invalid_segment_ids(token_type_ids, config.type_vocab_size),
                      config.type_vocab_size))
    if attention_mask is not None:
        rules.append(("attention_mask", attention_mask, invalid_mask(attention_mask), None))
    answers = [bad.any() for _, _, bad, _ in rules] + ([attention_mask.all()] if attention_mask is not None else [])
    found = torch.stack(answers).tolist()  # the one host sync
    for (name, values, bad, limit), broken in zip(rules, found):
        if broken:
            index = first_index(bad)
            raise ValueError(explain(name, values[index].item(), limit, _at(index)))
    return attention_mask is None or found[-1]


def check_class_labels(labels: torch.Tensor, name: str, shape: tuple[int, ...], num_classes: int,
                       check_values: bool = True) -> torch.Tensor:
    """``labels`` as cross_entropy takes them: long, of ``shape``, -1 turned into IGNORE_INDEX. Raise ValueError
    for a wrong shape or dtype, and (with ``check_values``: one host sync) for a value outside [0, num_classes)."""
    labels = _integer(labels, name, shape, "integer class ids")
    if check_values and not _is_compiling():
        bad = invalid_labels(labels, num_classes)
        if bad.any().item():  # the host sync
            index = first_index(bad)
            raise ValueError(explain(name, labels[index].item(), num_classes, _at(index),
                                     largest=labels.max().item()))
    return labels.masked_fill(labels == -1, IGNORE_INDEX)


def check_positions(positions: torch.Tensor, name: str, batch: int, seq: int,
                    check_values: bool = True) -> torch.Tensor:
    """Answer positions (batch,) as cross_entropy takes them: long, with the ignored rows and the positions past
    the sequence (an answer outside this window, ignored as in run_squad) set to IGNORE_INDEX."""
    positions = _integer(positions, name, (batch,), "integer token positions")
    if check_values and not _is_compiling():
        bad = invalid_positions(positions)
        if bad.any().item():  # the host sync
            index = first_index(bad)
            raise ValueError(explain(name, positions[index].item(), None, _at(index)))
    return positions.masked_fill((positions < 0) | (positions >= seq), IGNORE_INDEX)


def check_regression_targets(targets: torch.Tensor, name: str, batch: int, dtype: torch.dtype,
                             check_values: bool = True) -> torch.Tensor:
    """Regression targets (batch,) in ``dtype``, checked finite (with ``check_values``: one host sync)."""
    if not isinstance(targets, torch.Tensor) or targets.numel() != batch:
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"{name} has shape {shape}, expected ({batch},): one target per row")
    targets = targets.reshape(batch).to(dtype)
    if check_values and not _is_compiling():
        bad = invalid_targets(targets)
        if bad.any().item():  # the host sync
            index = first_index(bad)
            raise ValueError(explain(name, targets[index].item(), None, _at(index)))
    return targets


def _integer(labels: torch.Tensor, name: str, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """``labels`` reshaped to ``shape`` as long; a wrong shape or a non-integer dtype is a ValueError."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape {shape}, got {type(labels).__name__}")
    if labels.numel() != math.prod(shape) or (labels.dim() and labels.shape[0] != shape[0]):
        raise ValueError(f"{name} has shape {tuple(labels.shape)}, expected {shape}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dtype.is_complex:
        raise ValueError(f"{name} must hold {what}, got dtype {labels.dtype}; use torch.long")
    return labels.reshape(shape).long()
