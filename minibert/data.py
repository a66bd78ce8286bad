"""Encoded examples -> padded tensors: the one collate that fine-tuning, pre-training, features and viz share.

An *encoded example* (a "feature", as the 2019 scripts call it) is a dict of unpadded lists made by the
tokenizer, e.g. from :func:`encode_examples`::

    {"input_ids": [101, 7592, 102], "token_type_ids": [0, 0, 0], "attention_mask": [1, 1, 1], "label": 1}

:func:`collate` pads a list of them to the longest in the batch ("dynamic padding") and returns the batch dict
that goes straight into ``model(**batch)``:

==========================  ======================================  ============================================
feature key                 batch tensor                            padded with
==========================  ======================================  ============================================
input_ids                   (batch, seq) long                       the tokenizer's ``pad_token_id``
token_type_ids              (batch, seq) long (zeros if missing)    0 (segment A)
attention_mask              (batch, seq) long (ones where real)     0 (padding is not attended)
label / labels: a number    ``labels`` (batch,)                     - (long; float for regression)
label / labels: a list      ``labels`` (batch, seq)                 -100 (per-token labels, e.g. NER)
masked_lm_labels (a list)   (batch, seq)                            -100 (not predicted)
start_positions, end_pos.   (batch,) long                           - (answer spans, SQuAD)
next_sentence_label         (batch,) long                           - (0 = IsNext, 1 = NotNext)
guid (optional)             dropped                                 used to name the example in errors
==========================  ======================================  ============================================

Multiple choice (SWAG): each of ``input_ids``/``token_type_ids``/``attention_mask`` is a list with one
encoding per choice; the batch is ``(batch, num_choices, seq)``, every choice padded to the longest of the batch.

Ids and labels are checked here, once, when the batch is built on the CPU (no GPU sync), by the rules of
``minibert.inputs``, with errors that name the example; the training loop can then skip the model's own
per-forward checks.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from minibert.datasets import InputExample, check_labels
from minibert.inputs import (
    IGNORE_INDEX, POSITION_KEYS, explain, first_index, invalid_input_ids, invalid_labels, invalid_mask,
    invalid_positions, invalid_segment_ids, invalid_targets,
)
from minibert.tokenization import BertTokenizer

__all__ = ["Feature", "IGNORE_INDEX", "LABEL_KEYS", "collate", "encode_examples", "feature_length"]

Feature = dict[str, Any]
# keys the heads take as targets (ppb 0.6.2 names); a feature's "label" becomes "labels"
LABEL_KEYS = ("labels", "start_positions", "end_positions", "masked_lm_labels", "next_sentence_label")
_INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


def encode_examples(examples: Sequence[InputExample], tokenizer: BertTokenizer, max_seq_length: int = 128,
                    num_labels: int | None = None) -> list[Feature]:
    """Tokenize ``InputExample``s into unpadded features ``[CLS] a [SEP] (b [SEP])`` of at most ``max_seq_length``.

    Each feature keeps the tokenizer's ``input_ids``, ``token_type_ids`` and ``attention_mask``, the example's
    ``guid`` (for error messages) and its ``label`` when it has one. Padding is left to :func:`collate`, per
    batch. Every label must be a class index (in ``[0, num_labels)`` when given); a mismatch names the example.
    """
    if len(examples) == 0:
        raise ValueError("no examples to encode: the split is empty; check the file or the subset size")
    check_labels(list(examples), num_labels)  # names the file and line of a bad label
    features = []
    for ex in examples:
        enc = tokenizer.encode(ex.text_a, ex.text_b, max_length=max_seq_length)
        feat: Feature = {"guid": ex.guid, **{k: list(enc[k]) for k in _INPUT_KEYS}}
        if ex.label is not None:
            feat["label"] = int(ex.label)
        features.append(feat)
    return features


def _is_choices(ids: Any) -> bool:
    """True when ``input_ids`` holds one encoding per choice (a list of lists or a 2-D tensor)."""
    if isinstance(ids, torch.Tensor):
        return ids.dim() == 2
    return len(ids) > 0 and isinstance(ids[0], (list, tuple, np.ndarray, torch.Tensor))


def feature_length(feature: Feature) -> int:
    """Tokens the feature needs after padding: its length, or its longest choice for multiple choice."""
    ids = feature["input_ids"]
    return max((len(c) for c in ids), default=0) if _is_choices(ids) else len(ids)


def _name(feature: Feature, index: int) -> str:
    guid = feature.get("guid")
    return f"example {guid!r} (batch row {index})" if guid is not None else f"batch row {index}"


def _sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, torch.Tensor) and value.dim() > 0)


def _rows(features: Sequence[Feature], key: str, choices: int | None) -> list[Any]:
    """The per-example values of ``key``, flattened to one sequence per row (batch x choices rows)."""
    if choices is None:
        return [f[key] for f in features]
    return [c for f in features for c in f[key]]


def _pad(rows: list[Any], length: int, value: int, dtype: torch.dtype) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=dtype)
    for i, r in enumerate(rows):
        if len(r):
            out[i, :len(r)] = torch.as_tensor(r, dtype=dtype)
    return out


def collate(features: Sequence[Feature], pad_token_id: int, pad_to_multiple_of: int | None = None,
            vocab_size: int | None = None, num_labels: int | None = None) -> dict[str, torch.Tensor]:
    """Pad encoded examples to the longest in the batch and stack them (see the module docstring for the keys).

    ``pad_token_id`` is ``tokenizer.pad_token_id``. ``pad_to_multiple_of`` rounds the length up (8 suits GPU
    tensor cores). With ``vocab_size`` the ids and with ``num_labels`` the class labels are checked too. Every
    problem raises ValueError naming the example (its ``guid`` when it has one) and what to change.
    """
    if len(features) == 0:
        raise ValueError("collate got an empty batch; pass at least one encoded example")
    keys = set(features[0]) - {"guid"}  # the guid is optional: it only names examples in errors
    for i, f in enumerate(features):
        if "input_ids" not in f:
            raise ValueError(f"{_name(f, i)} has no 'input_ids' (keys {sorted(f)}); encode it with the tokenizer, "
                             "e.g. encode_examples(examples, tokenizer)")
        if set(f) - {"guid"} != keys:
            raise ValueError(f"{_name(f, i)} has keys {sorted(set(f) - {'guid'})} but {_name(features[0], 0)} has "
                             f"{sorted(keys)}; every example of a batch needs the same fields (e.g. all labelled "
                             "or none)")
    multiple_choice = _is_choices(features[0]["input_ids"])
    choices = None
    if multiple_choice:
        choices = len(features[0]["input_ids"])
        for i, f in enumerate(features):
            if not _is_choices(f["input_ids"]) or len(f["input_ids"]) != choices:
                n = len(f["input_ids"]) if _is_choices(f["input_ids"]) else "no list of"
                raise ValueError(f"{_name(f, i)} has {n} choices but {_name(features[0], 0)} has {choices}; "
                                 "multiple choice needs the same number of choices in every example")
    ids_rows = _rows(features, "input_ids", choices)
    per_row = 1 if choices is None else choices
    longest = max(len(r) for r in ids_rows)
    if longest == 0:
        raise ValueError("every example in the batch is empty (0 tokens); encode with the tokenizer, which adds "
                         "[CLS] and [SEP]")
    if pad_to_multiple_of:
        longest = int(math.ceil(longest / pad_to_multiple_of) * pad_to_multiple_of)

    lengths = [len(r) for r in ids_rows]
    for key in ("token_type_ids", "attention_mask"):
        if key in keys:
            for row, r in enumerate(_rows(features, key, choices)):
                if len(r) != lengths[row]:
                    f = row // per_row
                    raise ValueError(f"{_name(features[f], f)}: {key} has {len(r)} entries but input_ids has "
                                     f"{lengths[row]}; they must align token by token")
    batch = {"input_ids": _pad(ids_rows, longest, pad_token_id, torch.long)}
    batch["token_type_ids"] = (_pad(_rows(features, "token_type_ids", choices), longest, 0, torch.long)
                               if "token_type_ids" in keys else torch.zeros_like(batch["input_ids"]))
    if "attention_mask" in keys:
        batch["attention_mask"] = _pad(_rows(features, "attention_mask", choices), longest, 0, torch.long)
    else:
        batch["attention_mask"] = (torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]).long()
    _check_inputs(batch, features, per_row, vocab_size)
    if choices is not None:  # (batch * choices, seq) -> (batch, choices, seq)
        batch = {k: v.view(len(features), choices, longest) for k, v in batch.items()}

    for key in sorted(keys - set(_INPUT_KEYS)):
        out_key = "labels" if key == "label" else key
        if out_key in batch:
            raise ValueError("the examples have both 'label' and 'labels'; keep one of them")
        values = [f[key] for f in features]
        if _sequence(values[0]):  # per-token labels: pad with IGNORE_INDEX
            for i, (f, v) in enumerate(zip(features, values)):
                if not _sequence(v) or len(v) != feature_length(f):
                    raise ValueError(f"{_name(f, i)}: {key} has {len(v) if _sequence(v) else 'no list of'} "
                                     f"entries but input_ids has {feature_length(f)}; per-token labels need one "
                                     f"per token ({IGNORE_INDEX} where no prediction is made)")
            batch[out_key] = _pad(values, longest, IGNORE_INDEX, torch.long)
        else:
            is_float = any(isinstance(v, (float, np.floating)) or (isinstance(v, torch.Tensor)
                                                                   and v.dtype.is_floating_point) for v in values)
            batch[out_key] = torch.tensor([float(v) if is_float else int(v) for v in values],
                                          dtype=torch.float32 if is_float else torch.long)
        if out_key in LABEL_KEYS:
            _check_labels(batch[out_key], out_key, features, num_labels if out_key == "labels" else None,
                          vocab_size if out_key == "masked_lm_labels" else None)
    return batch


def _check_inputs(batch: dict[str, torch.Tensor], features: Sequence[Feature], per_row: int,
                  vocab_size: int | None) -> None:
    """Ids in the vocabulary, segment ids 0/1, mask 0/1 (the rules of ``minibert.inputs``): on the CPU, before
    any model sees them, naming the example."""
    for key, bad, limit in (("input_ids", invalid_input_ids(batch["input_ids"], vocab_size), vocab_size),
                            ("token_type_ids", invalid_segment_ids(batch["token_type_ids"]), 2),
                            ("attention_mask", invalid_mask(batch["attention_mask"]), None)):
        index = first_index(bad)
        if index is not None:
            row, position = index
            f, choice = divmod(row, per_row)
            at = f" at position {position}" + (f" of choice {choice}" if per_row > 1 else "")
            raise ValueError(f"{_name(features[f], f)}: {explain(key, batch[key][index].item(), limit, at)}")


def _check_labels(labels: torch.Tensor, key: str, features: Sequence[Feature], num_labels: int | None,
                  vocab_size: int | None) -> None:
    """Class ids in [0, num_labels) or ignored (-100, -1), answer positions >= 0, finite regression targets (the
    rules of ``minibert.inputs``), naming the example."""
    if labels.dtype.is_floating_point:
        bad, limit = invalid_targets(labels), None
    elif key in POSITION_KEYS:
        bad, limit = invalid_positions(labels), None
    else:
        limit = {"labels": num_labels, "masked_lm_labels": vocab_size, "next_sentence_label": 2}[key]
        bad = invalid_labels(labels, limit)
    index = first_index(bad)
    if index is not None:
        row = index[0]
        at = f" at position {index[1]}" if len(index) > 1 else ""
        largest = labels.max().item() if key == "labels" else None
        raise ValueError(f"{_name(features[row], row)}: {explain(key, labels[index].item(), limit, at, largest)}")
