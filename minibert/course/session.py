"""The one call after a notebook's setup cell: which mode, on which device, and whether it is a dry run."""
from __future__ import annotations

import torch

from minibert import runtime

DRY_RUN_LINE = (f"DRY RUN: full mode's config, {runtime.DRY_RUN_UPDATES} updates per training loop, "
                f"{runtime.DRY_RUN_EVAL_BATCHES} batches per evaluation - its figures mean nothing")


def describe(mode: str, device: torch.device, threads: int, dry_run: bool) -> str:
    """The line ``start`` prints: mode, device (the GPU's name when there is one) and CPU threads."""
    where = str(device)
    if device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(device)})"
    line = f"{mode} mode on {where}, {threads} CPU thread{'s' if threads != 1 else ''}"
    return f"{line}\n{DRY_RUN_LINE}" if dry_run else line


def start() -> str:
    """Read the course mode (``$MINIBERT_MODE``, else full where there is a GPU), the device and the dry-run
    switch, print one line that says so, and return the mode ("fast" or "full").

    A dry run (``$MINIBERT_DRY_RUN=1``) is full mode's config with every loop cut short, so it needs full mode."""
    mode, dry = runtime.course_mode(), runtime.dry_run()
    if dry and mode != "full":
        raise ValueError(f"{runtime.DRY_RUN_ENV}=1 runs full mode's config with short loops, but the mode is "
                         f"{mode!r}: set {runtime.MODE_ENV}=full for a dry run, or unset {runtime.DRY_RUN_ENV}")
    print(describe(mode, runtime.default_device(), torch.get_num_threads(), dry))
    return mode
