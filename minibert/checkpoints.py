"""Load real BERT weights by name, and save them so that minibert and transformers read them back.

A checkpoint is a folder with ``config.json`` (HF) or ``bert_config.json`` (Google) and ``model.safetensors``
or ``pytorch_model.bin``. Names differ a little between sources, and we accept them all:

- a ``bert.`` prefix (pre-training and task checkpoints) or none (bare ``BertModel`` checkpoints);
- ``LayerNorm.gamma``/``beta`` (old TF-converted files) for ``LayerNorm.weight``/``bias``;
- the ``embeddings.position_ids`` buffer some files carry (positions are recomputed, so it is dropped);
- ``cls.predictions.decoder.weight`` (a copy of the tied word embeddings) and ``decoder.bias``.

Heads that the file lacks (a classifier on top of a pre-trained encoder, the MLM head of a sentence-embedding
checkpoint, or the pooler after MLM-only pre-training) are initialized fresh, and a WARNING names each one and
says it starts from random values and must be trained. Weights of the encoder that are missing, keys nobody
knows, and shapes that differ raise (or only warn with ``strict=False``), naming the key and both shapes.

This module knows the config (one layer below) and files, not the model classes (one layer above): a model
tells it its heads through ``checkpoint_heads`` (prefix -> name), and the caller passes the other models' heads
(``known_heads``); ``BertPreTrainedModel.from_pretrained`` is built from the functions here.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import pickletools
import re
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from minibert.assets import checkpoint_path
from minibert.config import BertConfig

logger = logging.getLogger(__name__)

CONFIG_NAMES = ("config.json", "bert_config.json")
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
BASE_PARTS = ("embeddings.", "encoder.", "pooler.")  # keys of the bare encoder
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
# transformers writes the MLM output bias twice (decoder.bias, tied to predictions.bias) and the decoder weight,
# a copy of the word embeddings
MLM_DECODER_WEIGHT, MLM_DECODER_BIAS, MLM_BIAS = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                                                   "cls.predictions.bias")


def resolve_folder(name_or_path: str | os.PathLike | None, cache_dir: str | os.PathLike | None = None) -> Path:
    """A checkpoint folder: the path itself when it is a folder, else the packaged (None) or hub checkpoint
    (downloaded into ``cache_dir`` when given)."""
    path = Path(name_or_path).expanduser() if name_or_path is not None else None
    if path is not None and path.is_dir():
        return path
    return Path(checkpoint_path(name_or_path, cache_dir))


@contextlib.contextmanager
def checkpoint_folder(name_or_path: str | os.PathLike | None,
                      cache_dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """:func:`resolve_folder`, and also a ``.tar.gz`` archive (how the 2019 links served ``bert_config.json`` +
    ``pytorch_model.bin``), extracted to a temporary folder for as long as the ``with`` block runs."""
    path = Path(name_or_path).expanduser() if name_or_path is not None else None
    if path is None or not path.is_file():
        yield resolve_folder(name_or_path, cache_dir)
        return
    if not tarfile.is_tarfile(path):
        raise ValueError(f"{path} is a file, not a checkpoint folder or a .tar.gz archive of one; pass the folder "
                         f"that holds {' or '.join(CONFIG_NAMES)} and {' or '.join(WEIGHTS_NAMES)}")
    with tempfile.TemporaryDirectory(prefix="minibert-archive-") as tmp:
        logger.info("extracting archive %s to %s", path, tmp)
        yield _extract_archive(path, Path(tmp))


def _extract_archive(archive: Path, dest: Path) -> Path:
    """Extract plain files and folders only (no links, nothing outside ``dest``); the folder with the config."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute()
                   or ".." in Path(m.name).parts]
            if bad:
                raise ValueError(f"refusing to extract {archive}: {bad[:3]} are links or point outside the archive")
            tar.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ValueError(f"cannot read {archive}: the archive is truncated or corrupt ({err}); download it "
                         "again") from None
    for folder in (dest, *sorted(p for p in dest.iterdir() if p.is_dir())):
        if any((folder / name).is_file() for name in CONFIG_NAMES):
            return folder
    raise FileNotFoundError(f"{archive} holds no {' or '.join(CONFIG_NAMES)}; a model archive holds the config "
                            f"and {' or '.join(WEIGHTS_NAMES)}")


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {what} (looked for {', '.join(names)}); a BERT checkpoint folder "
                            f"needs one of each of {CONFIG_NAMES} and {WEIGHTS_NAMES}")


def find_weights(folder: str | os.PathLike) -> Path:
    """The weights file of a checkpoint folder (``model.safetensors`` preferred over ``pytorch_model.bin``)."""
    return _find(Path(folder), WEIGHTS_NAMES, "weights file")


def read_config(folder: str | os.PathLike) -> tuple[BertConfig, dict[str, Any]]:
    """The BertConfig of a checkpoint folder, and the raw JSON (for keys such as ``id2label``). Read through
    ``BertConfig.from_json_file``, so every error names the file."""
    path = _find(Path(folder), CONFIG_NAMES, "config")
    config = BertConfig.from_json_file(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw.get("id2label", {}), dict):
        raise ValueError(f"{path}: id2label must map class ids to names, e.g. {{\"0\": \"LABEL_0\", \"1\": "
                         f"\"LABEL_1\"}}, got {raw['id2label']!r}; fix it, or remove it and pass num_labels=")
    num_labels = raw.get("num_labels", 1)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"{path}: num_labels must be an int >= 1, got {num_labels!r}")
    return config, raw


def torch_load(path: Path, expected: str, if_unsafe: str, if_corrupt: str) -> Any:
    """``torch.load(path, weights_only=True)``: no code in the file runs. A whole pickle (torch.save's or
    pickle.dump's) that holds objects other than tensors and plain data is refused as unsafe (``if_unsafe`` says
    what to do); a truncated or damaged file is called that, with ``expected`` and ``if_corrupt``, and never
    sent to the unsafe loader, which could not repair it."""
    try:
        with warnings.catch_warnings():  # a pickle.dump file makes torch warn of its protocol: it is refused below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except pickle.UnpicklingError as err:
        objects = _pickled_objects(path)
        if objects is not None:  # a well-formed pickle of objects weights_only will not build
            named = re.search(r"(unsupported GLOBAL|Unsupported global: GLOBAL|Unsupported class) (\S+)", str(err))
            what = ", ".join(objects[:3]) or (named.group(2) if named else "objects it cannot name")
            raise ValueError(f"refusing to load {path}: it holds objects other than tensors ({what}), and "
                             f"unpickling them could run arbitrary code. {if_unsafe}") from None
        lines = [line for line in str(err).splitlines() if line.strip()]
        after = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.strip().endswith("error:")]
        reason = (after or lines[-1:] or [type(err).__name__])[0].strip()[:200]  # torch's own explanation
        raise ValueError(f"cannot read {path}: the file is truncated or corrupt ({reason}); expected {expected}. "
                         f"{if_corrupt}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"cannot read {path}: the file is truncated or corrupt ({reason}); expected {expected}. "
                         f"{if_corrupt}") from None


TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # the start of torch.save's pre-1.6 format (a pickled magic number)
# what a state dict of tensors holds (the safe loader builds these): left out of the names an error gives
_PLAIN_GLOBALS = re.compile(r"collections\.OrderedDict|torch\._utils\._rebuild_\w+|torch\.\w*Storage|torch\.Size|"
                            r"torch\.(u?int\d+|float\d+|bfloat16|bool|complex\d+)")


def _pickled_objects(path: Path) -> list[str] | None:
    """The classes and functions the pickle in ``path`` would import (read with pickletools, so nothing runs),
    or None when the file is not a whole pickle: random bytes can look like a forbidden global to the unpickler,
    and a damaged file is corrupt, not unsafe. Reads torch.save's zip format, its legacy format (a magic number,
    then the object's pickle) and a plain pickle.dump file."""
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        if head.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl")
                stream, pickles = io.BytesIO(archive.read(name)), 1
        else:  # legacy: the magic number, the protocol version and the system info come before the object
            stream, pickles = io.BytesIO(path.read_bytes()), 4 if head == TORCH_LEGACY_MAGIC else 1
        found: list[str] = []
        for _ in range(pickles):
            strings: list[Any] = []  # what was pushed, as far as STACK_GLOBAL's two names need it
            memo: dict[int, Any] = {}
            for op, arg, _ in pickletools.genops(stream):  # raises on a truncated or damaged pickle
                if op.name == "GLOBAL":
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = strings[-1] if strings else None
                elif op.name.endswith("PUT"):
                    memo[arg] = strings[-1] if strings else None
                elif op.name.endswith("GET"):
                    strings.append(memo.get(arg))
                elif isinstance(arg, str):
                    strings.append(arg)
    except (ValueError, KeyError, StopIteration, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError):
        return None
    return [g for g in dict.fromkeys(found) if not _PLAIN_GLOBALS.fullmatch(g)]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.bin`` (loaded with ``weights_only=True``: no code runs)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as err:
            raise ValueError(f"cannot read {path}: the file is truncated or corrupt ({err}); expected a "
                             "safetensors file of tensors. Download or copy it again") from None
    state = torch_load(path, expected="a state dict of tensors saved with torch.save",
                       if_unsafe="Use a model.safetensors file instead. Only if you trust the file's source, convert "
                                 "it once: state = torch.load(path, weights_only=False) (pickle.load(f) for a file "
                                 "written with pickle.dump; .state_dict() if it holds a whole model), then "
                                 "safetensors.torch.save_file({k: torch.as_tensor(v).contiguous() for k, v in "
                                 "state.items()}, 'model.safetensors')",
                       if_corrupt="Download or copy it again")
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


def _tied_copies(state: dict[str, torch.Tensor]) -> set[str]:
    """Keys whose tensor is the same as an earlier key's (a tied matrix: the MLM decoder is the embeddings)."""
    seen, tied = set(), set()
    for key, value in state.items():
        ident = (value.data_ptr(), tuple(value.shape))
        if ident in seen:
            tied.add(key)
        seen.add(ident)
    return tied


def _head_name(key: str, base_prefix: str, heads: dict[str, str]) -> str:
    """Which head a weight belongs to: the longest declared prefix, the pooler, or the key's first part."""
    if key.startswith(base_prefix + "pooler."):
        return "pooler (dense + tanh on [CLS])"
    matches = [prefix for prefix in heads if key.startswith(prefix)]
    if matches:
        prefix = max(matches, key=len)
        return f"{heads[prefix]} ({prefix}*)"
    return key.split(".")[0]


def load_state_dict_into(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True,
                         source: str = "checkpoint", known_heads: Iterable[str] = ()) -> dict[str, list[str]]:
    """Copy ``state`` into ``model`` by name; returns the report (missing, new heads, unused, mismatched).

    The encoder's weights must all be there. Everything else the model has (its task heads, and the pooler)
    may be missing: it keeps its fresh initialization, and a WARNING names each such head. Weights in the
    file that belong to some other model's head (a prefix in ``known_heads``) are skipped (logged at INFO).
    """
    base_prefix = "bert." if hasattr(model, "bert") else ""
    own_heads: dict[str, str] = getattr(model, "checkpoint_heads", {})
    known_heads = tuple({*known_heads, *own_heads})
    state = _normalize_keys(state, base_prefix)
    own = model.state_dict()
    tied = _tied_copies(own)
    for buffer in BUFFERS:
        state.pop(base_prefix + buffer, None)
    if MLM_DECODER_BIAS in state:
        state.setdefault(MLM_BIAS, state.pop(MLM_DECODER_BIAS))
    decoder = state.pop(MLM_DECODER_WEIGHT, None)  # a copy of the word embeddings (tied)

    report: dict[str, list[str]] = {"missing": [], "new_heads": [], "unused": [], "unexpected": [], "mismatched": []}
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in own and key not in tied:
            if tuple(value.shape) != tuple(own[key].shape):
                report["mismatched"].append(f"{key}: {tuple(value.shape)} in the file, "
                                            f"{tuple(own[key].shape)} in the model")
            else:
                to_load[key] = value
        elif (known_heads and key.startswith(known_heads)) or key.startswith(base_prefix + "pooler."):
            report["unused"].append(key)  # another model's head, or a pooler this model does not have
        else:
            report["unexpected"].append(f"{key}: {tuple(value.shape)}")
    for key in own:
        if key in to_load or key in tied or any(m.startswith(key + ":") for m in report["mismatched"]):
            continue
        # outside the encoder (a task head) or the pooler (absent after MLM-only pre-training): starts fresh
        in_encoder = key.startswith(base_prefix) and not key.startswith(base_prefix + "pooler.")
        is_head = not in_encoder if base_prefix else key.startswith("pooler.")
        report["new_heads" if is_head else "missing"].append(f"{key}: {tuple(own[key].shape)}")
    word_embeddings = base_prefix + "embeddings.word_embeddings.weight"
    if decoder is not None and word_embeddings in to_load and MLM_DECODER_WEIGHT in tied:
        if not torch.equal(decoder, to_load[word_embeddings]):
            logger.warning("%s in the %s differs from the word embeddings; minibert ties them and uses the "
                           "word embeddings", MLM_DECODER_WEIGHT, source)

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
    nonfinite = [k for k, v in to_load.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise ValueError(f"the {source} holds NaN or infinite values in {_listing(nonfinite, ', ')}: it is damaged "
                         "or was saved from a run that diverged; load another checkpoint (an earlier one of that run)")
    model.load_state_dict(to_load, strict=False)
    if report["new_heads"]:
        keys = [k.split(":")[0] for k in report["new_heads"]]
        names = list(dict.fromkeys(_head_name(k, base_prefix, own_heads) for k in keys))
        logger.warning("Weights of %s not initialized from the %s: the %s start%s from random values and must be "
                       "trained before %s outputs mean anything (newly initialized: %s)", type(model).__name__,
                       source, ", ".join(names), "s" if len(names) == 1 else "", "its" if len(names) == 1 else
                       "their", _listing(keys, ", "))
    if report["unused"]:
        logger.info("Weights from the %s not used in %s: %s", source, type(model).__name__, report["unused"])
    return report


def _listing(items: list[str], sep: str, limit: int = 6) -> str:
    more = f"{sep}... and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``config.json`` (HF-compatible) and ``model.safetensors`` (one copy of each tied tensor)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"model_type": "bert", "architectures": [type(model).__name__]}
    num_labels = getattr(model, "num_labels", None)
    if num_labels is not None:
        extra["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        extra["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
    model.config.to_json_file(folder / "config.json", **extra)
    own = model.state_dict()
    tied = _tied_copies(own)
    state = {k: v.detach().contiguous().cpu() for k, v in own.items() if k not in tied}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
