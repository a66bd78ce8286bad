"""The course's run-time switches: fast or full mode, the device, seeds, and what the machine has."""

from __future__ import annotations

import os
import platform
import random
import sys

import numpy as np
import torch

from minibert import assets

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
