"""The course's run-time switches: fast or full mode, the device, seeds, what the machine has, and the record of
a run's final figures (:func:`record_result`, which ``benchmarks/run_full.py`` collects into its table)."""

from __future__ import annotations

import functools
import json
import logging
import math
import numbers
import os
import platform
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypeVar

# Apple GPUs (MPS) lack some operations; with this PyTorch runs those on the CPU instead of raising. PyTorch reads it
# once, when it is imported: here it counts only if minibert is imported before torch (set it in the shell, or
# before `import torch`, otherwise).
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

import numpy as np  # noqa: E402  (after the variable above)
import torch  # noqa: E402

from minibert import assets  # noqa: E402

logger = logging.getLogger(__name__)
T = TypeVar("T")

MODE_ENV = "MINIBERT_MODE"
MODES = ("fast", "full")
# A dry run (Lightning's fast_dev_run): full mode's config, names, downloads and code paths, but every training loop
# stops after DRY_RUN_UPDATES optimizer updates and every evaluation after DRY_RUN_EVAL_BATCHES batches, so the
# GPU path runs end to end on a CPU in minutes. Its figures mean nothing; the notebooks say so.
DRY_RUN_ENV = "MINIBERT_DRY_RUN"
DRY_RUN_UPDATES = 2
DRY_RUN_EVAL_BATCHES = 2


def course_mode() -> str:
    """``$MINIBERT_MODE`` ('fast': CPU minutes, small subsets; 'full': real sizes on a GPU); unset, full iff CUDA."""
    mode = os.environ.get(MODE_ENV) or ("full" if torch.cuda.is_available() else "fast")
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV}={mode!r} is not a mode: set it to 'fast' or 'full' (or unset it)")
    return mode


def dry_run() -> bool:
    """True when ``$MINIBERT_DRY_RUN`` is 1 (or true/yes): loops stop after a few updates and batches."""
    value = os.environ.get(DRY_RUN_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{DRY_RUN_ENV}={value!r}: set it to 1 for a dry run, or 0 (or unset it) for a real one")


def dry_run_updates(loop: str) -> int | None:
    """How many optimizer updates the training loop ``loop`` may make: DRY_RUN_UPDATES in a dry run (said once in
    the log), else None (no limit)."""
    if not dry_run():
        return None
    _say_dry_run(loop, f"{DRY_RUN_UPDATES} optimizer updates")
    return DRY_RUN_UPDATES


def dry_run_cut(items: Sequence[T], batch_size: int, loop: str) -> Sequence[T]:
    """What the evaluation loop ``loop`` goes through: all of ``items``, or in a dry run the first
    DRY_RUN_EVAL_BATCHES batches of ``batch_size`` of them (said once in the log). A prefix, so a caller can
    match the results to ``items[:len(results)]``."""
    if not dry_run():
        return items
    _say_dry_run(loop, f"{DRY_RUN_EVAL_BATCHES} batches")
    return items[:DRY_RUN_EVAL_BATCHES * batch_size]


@functools.lru_cache(maxsize=None)
def _say_dry_run(loop: str, limit: str) -> None:
    logger.warning("dry run (%s=1): %s stops after %s; its figures mean nothing", DRY_RUN_ENV, loop, limit)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model.eval()`` (dropout off) inside the block; afterwards every submodule is back in the train/eval mode it
    was in, even when the block raises. Every inference loop runs in it."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def default_device() -> torch.device:
    """The CUDA GPU when there is one, else an Apple GPU (MPS) when there is one, else the CPU.

    On MPS, operations PyTorch has no Metal kernel for run on the CPU when ``PYTORCH_ENABLE_MPS_FALLBACK=1`` was set
    before torch was imported (importing minibert first sets it); otherwise they raise NotImplementedError."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def has_native_bf16(device: torch.device | str | None = None) -> bool:
    """True on a CUDA GPU whose tensor cores compute in bf16: compute capability 8.0 or more (A100, A10, L4, RTX 30xx
    and later). A T4 or a V100 only emulates bf16, slower than fp16 (and than fp32), although
    ``torch.cuda.is_bf16_supported()`` says True there: its default counts emulation."""
    device = torch.device(device) if device is not None else default_device()
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def environment_report() -> dict[str, str]:
    """What a learner needs to know about this machine before the course: versions, device, data, checkpoint."""
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mode": course_mode(),
        "device": str(default_device()),
        "cpu threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
        major, minor = torch.cuda.get_device_capability(0)
        report["bf16"] = (f"native (compute capability {major}.{minor}): precision='auto' trains in bf16"
                          if has_native_bf16("cuda") else
                          f"emulated only (compute capability {major}.{minor} < 8.0): precision='auto' trains in "
                          "fp16 with a GradScaler")
    elif torch.backends.mps.is_available():
        fallback = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1"
        report["mps fallback"] = ("on: operations MPS lacks run on the CPU" if fallback else
                                  "off: set PYTORCH_ENABLE_MPS_FALLBACK=1 before torch is imported")
    report["data folder"] = str(assets.data_dir())
    for name in ("mrpc/train.tsv", "chnsenticorp/train.tsv", "vocab/bert-base-uncased-vocab.txt"):
        report[f"data: {name}"] = "found" if (assets.data_dir() / name).exists() else "MISSING"
    try:
        report["checkpoint"] = str(assets.checkpoint_path(None))
    except FileNotFoundError as err:
        report["checkpoint"] = f"MISSING: {err}"
    return report


RESULT_FILE = "result.json"
FRACTIONS = ("accuracy", "f1", "exact_match", "precision", "recall")  # metrics recorded as fractions


def record_result(name: str, metrics: Mapping[str, float], split: str = "dev", **details: Any) -> Path:
    """Write a notebook's final figures to ``runs_dir(name)/result.json`` for ``benchmarks/run_full.py``'s table.

    ``name`` is the task, one of ``run_full.PUBLISHED`` (e.g. "mrpc", "squad_v1.1"); ``metrics`` its figures,
    accuracy, F1 and exact match as fractions (SQuAD's EM of 80.9 is 0.809); ``split`` which data they were
    measured on. ``details`` (JSON values: the checkpoint, the training seconds, the plan's message) are kept as
    given. The file also records the mode, whether it was a dry run, the device, and the peak GPU memory this
    process has allocated so far."""
    for key, value in metrics.items():
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise TypeError(f"record_result({name!r}): metric {key!r} must be a finite number, got {value!r}")
        if key in FRACTIONS and not 0 <= value <= 1:
            raise ValueError(f"record_result({name!r}): {key}={value!r} must be a fraction in [0, 1] "
                             f"(an EM of 80.9 is 0.809)")
    device = default_device()
    record = {
        "name": name, "split": split, "metrics": {k: float(v) for k, v in metrics.items()},
        "mode": course_mode(), "dry_run": dry_run(), "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
        "written": time.time(), **details,
    }
    path = assets.runs_dir(name) / RESULT_FILE
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def read_result(name: str) -> dict[str, Any] | None:
    """What :func:`record_result` wrote for ``name``, or None when nothing was recorded."""
    path = assets.cache_dir() / "runs" / name / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
