"""The course's run-time switches: fast or full mode, the device, seeds, and what the machine has."""

from __future__ import annotations

import functools
import logging
import os
import platform
import random
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence, TypeVar

import numpy as np
import torch

from minibert import assets

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
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
        report["bf16"] = str(torch.cuda.is_bf16_supported())
    report["data folder"] = str(assets.data_dir())
    for name in ("mrpc/train.tsv", "chnsenticorp/train.tsv", "vocab/bert-base-uncased-vocab.txt"):
        report[f"data: {name}"] = "found" if (assets.data_dir() / name).exists() else "MISSING"
    try:
        report["checkpoint"] = str(assets.checkpoint_path(None))
    except FileNotFoundError as err:
        report["checkpoint"] = f"MISSING: {err}"
    return report
