"""Load real BERT weights by name, and save them so that minibert and transformers read them back.

A checkpoint is a folder with ``config.json`` (HF) or ``bert_config.json`` (Google) and ``model.safetensors``
or ``pytorch_model.bin``. Names differ a little between sources, and we accept them all:

- a ``bert.`` prefix (pre-training and task checkpoints) or none (bare ``BertModel`` checkpoints);
- ``LayerNorm.gamma``/``beta`` (old TF-converted files) for ``LayerNorm.weight``/``bias``;
- the ``embeddings.position_ids`` buffer some files carry (positions are recomputed, so it is dropped);
- ``cls.predictions.decoder.weight`` (a copy of the tied word embeddings) and ``decoder.bias``.

Heads that the file lacks (a classifier on top of a pre-trained encoder, or the pooler after MLM-only
pre-training) are initialized fresh and listed in
a log line, as the 2019 library did. Weights of the encoder that are missing, keys nobody knows, and
shapes that differ raise (or only warn with ``strict=False``), naming the key and both shapes.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .modeling import BertConfig, BertPreTrainedModel

logger = logging.getLogger(__name__)

CONFIG_NAMES = ("config.json", "bert_config.json")
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
BASE_PARTS = ("embeddings.", "encoder.", "pooler.")  # keys of the bare encoder
HEAD_PARTS = ("cls.", "classifier.", "qa_outputs.")  # keys of task heads, used by some models, not others
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
TIED_COPIES = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def _resolve_folder(name_or_path: str | os.PathLike | None) -> Path:
    path = Path(name_or_path).expanduser() if name_or_path is not None else None
    if path is not None and path.is_dir():
        return path
    from .assets import checkpoint_path
    return Path(checkpoint_path(name_or_path))


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {what} (looked for {', '.join(names)}); a BERT checkpoint folder "
                            f"needs one of each of {CONFIG_NAMES} and {WEIGHTS_NAMES}")


def read_config(folder: str | os.PathLike) -> tuple[BertConfig, dict[str, Any]]:
    """The BertConfig of a checkpoint folder, and the raw JSON (for keys such as ``id2label``)."""
    path = _find(Path(folder), CONFIG_NAMES, "config")
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    return BertConfig.from_dict(raw), raw


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.bin`` (loaded with ``weights_only=True``: no code runs)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it is a pickle that holds more than tensors, and unpickling it could run "
            f"arbitrary code ({str(err).splitlines()[0]}). Use a model.safetensors file, or, only if you trust "
            "its source, convert it yourself with torch.load(path, weights_only=False)") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (got {type(state).__name__})")
    return state


def _normalize_keys(state: dict[str, torch.Tensor], base_prefix: str) -> dict[str, torch.Tensor]:
    """Rename file keys to this model's names: legacy gamma/beta, and the ``bert.`` prefix added or removed."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("LayerNorm.gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith("LayerNorm.beta"):
            key = key[: -len("beta")] + "bias"
        bare = key[len("bert."):] if key.startswith("bert.") else key
        if bare.startswith(BASE_PARTS):
            key = base_prefix + bare
        out[key] = value
    return out


def load_state_dict_into(model: BertPreTrainedModel, state: dict[str, torch.Tensor], strict: bool = True,
                         source: str = "checkpoint") -> dict[str, list[str]]:
    """Copy ``state`` into ``model`` by name; returns the report (missing, new heads, unused, mismatched)."""
    base_prefix = "bert." if hasattr(model, "bert") else ""
    state = _normalize_keys(state, base_prefix)
    own = model.state_dict()
    tied = {k for k in own if k in TIED_COPIES}
    for buffer in BUFFERS:
        state.pop(base_prefix + buffer, None)
    if "cls.predictions.decoder.bias" in state:  # transformers stores the output bias twice, tied
        bias = state.pop("cls.predictions.decoder.bias")
        state.setdefault("cls.predictions.bias", bias)
    decoder = state.pop("cls.predictions.decoder.weight", None)  # a copy of the word embeddings (tied)

    report: dict[str, list[str]] = {"missing": [], "new_heads": [], "unused": [], "unexpected": [], "mismatched": []}
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in own and key not in tied:
            if tuple(value.shape) != tuple(own[key].shape):
                report["mismatched"].append(f"{key}: {tuple(value.shape)} in the file, "
                                            f"{tuple(own[key].shape)} in the model")
            else:
                to_load[key] = value
        elif key.startswith(HEAD_PARTS) or key == base_prefix + "pooler.dense.weight" or \
                key == base_prefix + "pooler.dense.bias":
            report["unused"].append(key)  # another model's head, or a pooler this model does not have
        else:
            report["unexpected"].append(f"{key}: {tuple(value.shape)}")
    for key in own:
        if key in to_load or key in tied or any(m.startswith(key + ":") for m in report["mismatched"]):
            continue
        # the pooler is absent from MLM-only checkpoints (BertForMaskedLM has none): initialize it like a head
        is_head = key.startswith(HEAD_PARTS) or key.startswith(base_prefix + "pooler.")
        report["new_heads" if is_head else "missing"].append(f"{key}: {tuple(own[key].shape)}")
    if decoder is not None and "bert.embeddings.word_embeddings.weight" in to_load and tied:
        if not torch.equal(decoder, to_load["bert.embeddings.word_embeddings.weight"]):
            logger.warning("cls.predictions.decoder.weight in the %s differs from the word embeddings; "
                           "minibert ties them and uses the word embeddings", source)

    problems = []
    if report["missing"]:
        problems.append("missing from the file: " + _listing(report["missing"], ", "))
    if report["unexpected"]:
        problems.append(f"unexpected in the file (no such weight in {type(model).__name__}): "
                        + _listing(report["unexpected"], ", "))
    if report["mismatched"]:
        problems.append("shape mismatch: " + _listing(report["mismatched"], "; "))
    if problems:
        message = (f"cannot load the {source} into {type(model).__name__}: " + " | ".join(problems)
                   + ". Check that config.json matches the weights (and num_labels for a task head), "
                     "or pass strict=False to load what fits and keep the rest initialized")
        if strict:
            raise ValueError(message)
        logger.warning(message)
    model.load_state_dict(to_load, strict=False)
    if report["new_heads"]:
        logger.info("Weights of %s not initialized from the %s (newly initialized): %s", type(model).__name__,
                    source, [k.split(":")[0] for k in report["new_heads"]])
    if report["unused"]:
        logger.info("Weights from the %s not used in %s: %s", source, type(model).__name__, report["unused"])
    return report


def _listing(items: list[str], sep: str, limit: int = 6) -> str:
    more = f"{sep}... and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


def load_pretrained(cls: type[BertPreTrainedModel], name_or_path: str | os.PathLike | None = None, *,
                    strict: bool = True, config: BertConfig | None = None, attn_implementation: str = "sdpa",
                    **model_kwargs: Any):
    """Build ``cls`` from a checkpoint: None (the packaged all-MiniLM-L6-v2), a folder, or a hub name.

    ``model_kwargs`` go to the constructor (e.g. ``num_labels=3``); ``config`` overrides the folder's config
    (e.g. to change dropout); ``attn_implementation`` is "sdpa" (fused, default) or "explicit". The model is
    returned in eval mode, like transformers' ``from_pretrained``.
    """
    from .heads import model_kwargs_from_config
    folder = _resolve_folder(name_or_path)
    file_config, raw = read_config(folder)
    for key, value in model_kwargs_from_config(cls, raw).items():
        model_kwargs.setdefault(key, value)
    model = cls(config or file_config, **model_kwargs)
    weights = _find(folder, WEIGHTS_NAMES, "weights file")
    load_state_dict_into(model, read_state_dict(weights), strict=strict, source=str(weights))
    return model.set_attn_implementation(attn_implementation).eval()


def save_pretrained(model: BertPreTrainedModel, folder: str | os.PathLike) -> Path:
    """Write ``config.json`` (HF-compatible) and ``model.safetensors`` (one copy of each tied tensor)."""
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"model_type": "bert", "architectures": [type(model).__name__], "pad_token_id": 0}
    num_labels = getattr(model, "num_labels", None)
    if num_labels is not None:
        extra["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        extra["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
    model.config.to_json_file(folder / "config.json", **extra)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in TIED_COPIES}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def count_parameters(module: nn.Module) -> int:
    """Number of distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
