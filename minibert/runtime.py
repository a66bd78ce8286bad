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


def course_mode() -> str:
    """``$MINIBERT_MODE`` ('fast': CPU minutes, small subsets; 'full': real sizes on a GPU); unset, full iff CUDA."""
    mode = os.environ.get(MODE_ENV) or ("full" if torch.cuda.is_available() else "fast")
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV}={mode!r} is not a mode: set it to 'fast' or 'full' (or unset it)")
    return mode


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
