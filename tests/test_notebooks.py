"""Every notebook, top to bottom in fast mode, as on a learner's machine.

Each notebook starts with an empty data folder and an empty cache, and gets its data and checkpoints through
the course's own download code, from a local mirror of the public URLs (tests/mirror.py) instead of the
internet. There ``bert-base-uncased`` is a small BERT in the hub's layout, so the online path (download,
cache, ``bert.`` prefix, heads) runs end to end. Notebooks are found by name, so new ones are run too.
Run one with ``pytest tests/test_notebooks.py -k 04_``; set ``MINIBERT_NOTEBOOK_OUT`` to a folder to keep the
executed notebooks (with their outputs) there.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import warnings
from pathlib import Path

import nbformat
import psutil  # ipykernel's own dependency
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from minibert import assets
from mirror import Mirror, course_hub, source_data_dir
from threads import session_thread_count

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 900  # seconds per cell: generous, a busy 2-core machine runs fast mode several times slower
HUNG_AFTER = 90  # seconds in which the kernel used under IDLE_CPU of CPU time while a notebook runs: it is stuck
IDLE_CPU = 0.5  # seconds: an idle kernel's own threads (heartbeat, history) use about 0.01 s in 10 s


class KernelWatch:
    """Kills a notebook's kernel that has used (almost) no CPU for HUNG_AFTER seconds while the client waits on it.

    Beside two busy loops, 06's kernel finished its ipywidgets `interact` cell and then sat idle in epoll while
    nbclient waited (three runs of four, on 2 threads and on 1; never seen on an idle machine). Without this the test
    waits out the 900 s cell limit and fails. With it, the client sees a dead kernel within seconds and the test
    runs the notebook once more, with a warning. A kernel doing real work, however slowly, uses far more CPU."""

    def __init__(self, client: NotebookClient) -> None:
        self.client, self.killed, self._stop = client, False, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        last_cpu, since = None, time.monotonic()
        while not self._stop.wait(5):
            km = self.client.km
            pid = getattr(getattr(km, "provisioner", None), "pid", None) if km is not None else None
            if pid is None:
                continue
            try:  # the kernel's CPU time and its children's (a cell may run torchrun or a script and wait)
                kernel = psutil.Process(pid)
                own = kernel.cpu_times()
                cpu = own.user + own.system + own.children_user + own.children_system + sum(
                    sum(child.cpu_times()[:2]) for child in kernel.children(recursive=True))
            except psutil.Error:
                continue
            if last_cpu is None or cpu - last_cpu > IDLE_CPU:
                last_cpu, since = cpu, time.monotonic()
            elif time.monotonic() - since > HUNG_AFTER:
                self.killed = True
                os.kill(pid, signal.SIGKILL)
                return

    def __enter__(self) -> "KernelWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> str:
    with Mirror(source_data_dir(), course_hub(tmp_path_factory.mktemp("hub"))) as url:
        yield url


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if ".ipynb_checkpoints" not in p.parts}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_a_learners_machine(path, mirror, tmp_path, monkeypatch):
    # The kernel inherits this environment: fast mode, fresh folders, downloads from the mirror.
    monkeypatch.setenv("MINIBERT_MODE", "fast")
    monkeypatch.setenv(assets.MIRROR_ENV, mirror)
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(assets.CHECKPOINT_ENV, raising=False)
    # torch's default of one thread per core runs several times slower when other processes hold the cores:
    # the count the session measured at its start, so a busy machine gets 1 thread and an idle one all its cores
    monkeypatch.setenv("OMP_NUM_THREADS", str(session_thread_count()[0]))
    before = _listing(NOTEBOOK_DIR)
    for attempt in (1, 2):
        notebook = nbformat.read(path, as_version=4)
        # "python3" is this interpreter's own kernel: the test runs in the environment it was started from,
        # whether or not `make course` registered the "minibert" kernel that the notebooks name.
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
        watch = KernelWatch(client)
        try:
            with watch:
                client.execute()
            break
        except CellExecutionError as err:  # its message holds the cell's source and the traceback
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # without the terminal colours of the traceback
            pytest.fail(f"{path.name} failed in a cell:\n{plain}", pytrace=False)
        except DeadKernelError:
            if not watch.killed or attempt == 2:
                raise
            warnings.warn(f"{path.name}: the kernel did no work for {HUNG_AFTER} s and was killed; run again")
        finally:
            if os.environ.get("MINIBERT_NOTEBOOK_OUT"):
                Path(os.environ["MINIBERT_NOTEBOOK_OUT"]).mkdir(parents=True, exist_ok=True)
                nbformat.write(notebook, Path(os.environ["MINIBERT_NOTEBOOK_OUT"]) / path.name)
    assert _listing(NOTEBOOK_DIR) == before, \
        f"{path.name} left files next to the notebooks: write run outputs under assets.runs_dir(name)"
