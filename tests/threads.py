"""How many torch threads to run the tests with on this machine, now.

torch starts one OpenMP thread per core. When other processes keep those cores busy, every parallel op waits at
a barrier for a thread that is not running: beside two busy loops on 2 cores, a training-sized matmul ran 7x
slower on 2 threads than on 1 (12.8 s against 1.7 s for the same work). On an idle machine 2 threads are faster.
So the test session takes whichever count runs a small probe faster, once at its start, and every notebook's
kernel gets the same count. An explicit OMP_NUM_THREADS is kept as it is.

The probe runs in a fresh process, as a notebook's kernel starts: measured inside the test session, after the
session has set its own count, torch.set_num_threads(2) did not give two running threads again, both counts timed
alike and the choice became a coin flip (a busy machine then ran a notebook on 2 threads, 10x slower). Probed
again before each notebook, even in a fresh process, a loaded machine still gave some notebooks 2 threads; so the
count is chosen once per session, and every notebook runs on the count the session's header reports.
Under pytest-xdist (``make test`` runs tests/ and the dry run on 2 workers) each worker takes its share of
the cores instead.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time


def _probe() -> dict[int, float]:
    """Seconds that torch's default thread count and 1 thread take on the same small matmuls, in this process,
    in alternating rounds so that a moment of load falls on both."""
    import torch

    counts = list(dict.fromkeys((torch.get_num_threads(), 1)))
    x, w = torch.randn(2048, 128), torch.randn(128, 512)  # one feed-forward matmul of a small fast-mode model
    timings = dict.fromkeys(counts, 0.0)
    for _ in range(4):
        for n in counts:
            torch.set_num_threads(n)
            (x @ w).sum()  # warm-up: start the thread pool
            start = time.perf_counter()
            for _ in range(10):  # the total, stalls included: they are what makes a busy machine slow
                (x @ w).relu_().sum()
            timings[n] += time.perf_counter() - start
    return timings


def shared_thread_count(workers: int) -> int:
    """Threads for each of `workers` parallel test processes (pytest-xdist): the cores shared out among them, not
    probed, since two probes at once would each time the other's load."""
    return max(1, (os.cpu_count() or 1) // workers)


@functools.cache
def session_thread_count() -> tuple[int, dict[int, float]]:
    """(the faster of 1 and torch's default thread count, seconds each took on the probe), measured at the first
    call (the session's start) and reused. With OMP_NUM_THREADS set, that count and no timings."""
    if "OMP_NUM_THREADS" in os.environ:
        value = os.environ["OMP_NUM_THREADS"]
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"OMP_NUM_THREADS={value!r}: set it to a number of threads (1 or more), or unset it")
        return int(value), {}
    if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # one of the parallel workers of pytest -n
        return shared_thread_count(int(os.environ["PYTEST_XDIST_WORKER_COUNT"])), {}
    out = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True, timeout=300)
    timings = {int(k): v for k, v in json.loads(out.stdout).items()}
    # all cores only when clearly faster (idle 2 cores: 0.55x of 1 thread): a loaded machine's timings swing, and
    # there many threads cost up to 10x where 1 thread costs at most the cores' count
    many = max(timings)
    return (many if timings[many] < 0.8 * timings[1] else 1), timings


if __name__ == "__main__":
    print(json.dumps(_probe()))
