"""How many torch threads to run the tests with on this machine, now.

torch starts one OpenMP thread per core. When other processes keep those cores busy, every parallel op waits at
a barrier for a thread that is not running: beside two busy loops on 2 cores, a training-sized matmul ran 7x
slower on 2 threads than on 1 (12.8 s against 1.7 s for the same work). On an idle machine 2 threads are faster.
So the test session and each notebook's kernel take whichever count runs a small probe faster. An explicit
OMP_NUM_THREADS is kept as it is.
"""

from __future__ import annotations

import os
import time

import torch


# Read once, at import (conftest imports this before the session sets its own count): torch's default and
# whether the user chose a count. Read later, they would be the session's choice and the notebook's own setenv.
DEFAULT_THREADS = torch.get_num_threads()
EXPLICIT = "OMP_NUM_THREADS" in os.environ


def fastest_thread_count() -> tuple[int, dict[int, float]]:
    """(the faster of 1 and torch's default thread count, seconds each took on the probe)."""
    default, current = DEFAULT_THREADS, torch.get_num_threads()
    if EXPLICIT or default == 1:
        return default, {}
    x, w = torch.randn(2048, 128), torch.randn(128, 512)  # one feed-forward matmul of a small fast-mode model
    timings: dict[int, float] = {}
    try:
        for n in (default, 1):
            torch.set_num_threads(n)
            (x @ w).sum()  # warm-up: start the thread pool
            start = time.perf_counter()
            for _ in range(40):  # the total, stalls included: they are what makes a busy machine slow
                (x @ w).relu_().sum()
            timings[n] = time.perf_counter() - start
    finally:
        torch.set_num_threads(current)
    return min(timings, key=timings.get), timings
