"""pytest hooks for the whole repository: the torch thread count of the session, and the notebooks under nbval.

``python -m pytest --nbval notebooks/01_tokenizer.ipynb`` (or ``make test``, which validates them all) runs a
notebook in the world of tests/notebook_world.py: its own empty data folder and caches, downloads from a local
mirror, the session's thread count, fast mode unless ``MINIBERT_MODE=full MINIBERT_DRY_RUN=1`` asks for full
mode's dry run (then run with ``--nbval-lax``: errors count, outputs are not compared). Around nbval:

- outputs are compared in their saved form (tests/notebook_world.py: ``lean``), after the regular expressions of
  tests/nbval_sanitize.cfg, for what legitimately varies (times, addresses);
- a cell that fails is the notebook's one failure: the cells after it are skipped, not run into NameErrors;
- a kernel that dies, or uses no CPU for HUNG_AFTER seconds (``--hung-kernel-after``) while a cell runs, fails
  that cell within POLL seconds, named, instead of at nbval's cell timeout (CELL_TIMEOUT here);
- ``--write-outputs`` (``make notebooks``) runs the notebooks the same way and saves their outputs into them.

Why nbval and not nbclient, which ran the notebooks before: beside busy loops 06's kernel sometimes sat idle after
its ``interact`` cell while the client waited for that cell's reply. The reply had arrived: after 25 s idle the
client's shell socket held it (``zmq.EVENTS`` gave POLLIN), and reading that flag let nbclient go on. nbclient
polls the shell socket with zmq.asyncio, whose wake-up is edge-triggered, and its mimic of the ipywidgets Output
widget (which ``interact`` creates) sends comm messages on that same socket from another coroutine while the poll
waits: a send can consume the edge, and the poll then sleeps until the cell's timeout (nbclient issue #312). nbval
uses the blocking client, whose poll is level-triggered, and sends nothing but execute requests. The idle check
above stays, as the backstop it was then.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import sys
import time
from pathlib import Path
from queue import Empty

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))  # mirror, threads, notebook_world

import torch  # noqa: E402
from threads import session_thread_count, shared_thread_count  # noqa: E402

SANITIZE = Path(__file__).resolve().parent / "tests" / "nbval_sanitize.cfg"
CELL_TIMEOUT = 1800  # seconds a cell may run: beside two busy loops a 2-core machine runs fast mode 2-4x slower
# (14's training cell, 406 s idle, passed 900 s there); a stuck kernel is caught by HUNG_AFTER, not by this
HUNG_AFTER = 90  # seconds in which the kernel (with its children) used under IDLE_CPU of CPU time: it is stuck
IDLE_CPU = 0.5  # seconds: an idle kernel's own threads (heartbeat, history) use about 0.01 s in 10 s
POLL = 5  # seconds between looks at the kernel while a cell runs
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HEADER: list[str] = []


def pytest_addoption(parser) -> None:
    group = parser.getgroup("nbval")
    group.addoption("--write-outputs", action="store_true",
                    help="run the notebooks as --nbval-lax does and save their outputs into them (make notebooks)")
    group.addoption("--hung-kernel-after", type=float, default=HUNG_AFTER, metavar="SECONDS",
                    help=f"fail a cell whose kernel used no CPU for this long (default {HUNG_AFTER})")


def pytest_configure(config) -> None:
    """Run the session on the faster thread count for this machine's load (see tests/threads.py); set nbval's
    defaults for this course when it runs."""
    workers = getattr(config.option, "numprocesses", None)  # pytest-xdist's -n, in its controller (runs no test)
    if isinstance(workers, int) and workers > 0 and "OMP_NUM_THREADS" not in os.environ:
        _HEADER.append(f"torch threads: {shared_thread_count(workers)} in each of {workers} workers")
    else:
        n, timings = session_thread_count()
        torch.set_num_threads(n)
        probe = ", ".join(f"{k} thread(s) {v * 1e3:.0f} ms" for k, v in timings.items()) or "OMP_NUM_THREADS"
        _HEADER.append(f"torch threads: {n} (probe: {probe})")
    opt = config.option
    if getattr(opt, "write_outputs", False):
        opt.nbval_lax, opt.nbval = True, False
    if getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False):
        if not opt.nbval_kernel_name:
            opt.nbval_current_env = True  # this interpreter's environment, whatever kernels are registered
        opt.nbval_sanitize_with = opt.nbval_sanitize_with or str(SANITIZE)
        if opt.nbval_cell_timeout == 2000:  # nbval's default
            opt.nbval_cell_timeout = CELL_TIMEOUT
        config.pluginmanager.register(NotebookHooks(config), "minibert-notebooks")


def pytest_report_header(config) -> list[str]:
    return _HEADER


class NotebookRun:
    """What the hooks keep about the notebook being run: the IOPub messages of each cell, the cell running now,
    its saved-form outputs, and the first cell that failed."""

    def __init__(self, notebook) -> None:
        self.notebook = notebook
        self.messages: dict[str, list[dict]] = {}
        self.msg_ids: dict[int, str] = {}  # code-cell number -> the execute request's id
        self.outputs: dict[int, list] = {}
        self.current = None
        self.failed: str | None = None  # "Cell 3" when a cell raised, died or hung: the rest is skipped
        self.stale = False  # an output differed from the saved one
        self.listing = _listing()


def _listing() -> set[str]:
    from notebook_world import NOTEBOOK_DIR
    return {str(p.relative_to(NOTEBOOK_DIR)) for p in NOTEBOOK_DIR.rglob("*") if ".ipynb_checkpoints" not in p.parts}


class NotebookHooks:
    """The hooks around nbval's notebook files (IPyNbFile) and cells (IPyNbCell); other tests pass through."""

    def __init__(self, config) -> None:
        from nbval import plugin
        import notebook_world

        self.config, self.plugin, self.nw = config, plugin, notebook_world
        self.world = None
        self.run: NotebookRun | None = None
        self.write = config.option.write_outputs
        hooks = self
        original_get, original_compare, original_repr = (plugin.IPyNbFile.get_kernel_message,
                                                         plugin.IPyNbCell.compare_outputs,
                                                         plugin.IPyNbCell.repr_failure)

        def get_kernel_message(file, timeout=None, stream="iopub"):
            msg = original_get(file, timeout=timeout, stream=stream)
            if hooks.run is not None and stream == "iopub":
                hooks.run.messages.get(msg["parent_header"].get("msg_id"), []).append(msg)
            return msg

        def compare_outputs(cell, test, ref, skip_compare=None):
            # what `make notebooks` saves, instead of nbval's raw list; its streams merged as nbval merges the
            # reference's (all of a stream's text in one, even across a display)
            ours = plugin.coalesce_streams(copy.deepcopy(hooks.saved_outputs(cell)))
            return original_compare(cell, ours, notebook_world.lean(ref, hooks.world.replacements()), skip_compare)

        def repr_failure(cell, excinfo):
            text = original_repr(cell, excinfo)
            return text if config.get_terminal_writer().hasmarkup else _ANSI.sub("", text)

        plugin.IPyNbFile.get_kernel_message = get_kernel_message
        plugin.IPyNbCell.compare_outputs = compare_outputs
        plugin.IPyNbCell.repr_failure = repr_failure

    # --- the world, per session and per notebook ---------------------------------------------------------------

    def pytest_report_header(self, config) -> list[str]:
        mode = self.nw.world_mode()
        what = {"fast": "fast mode, outputs compared" if config.option.nbval else "fast mode",
                "dry-run": "full mode, dry run", "full": "full mode (the learner's own folders and hub)"}[mode]
        return [f"notebooks: {what}; fresh data folder and caches per notebook, local mirror"
                if mode != "full" else f"notebooks: {what}"]

    def pytest_unconfigure(self, config) -> None:
        if self.world is not None:
            self.world.stop()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        if not isinstance(item, self.plugin.IPyNbCell):
            return (yield)
        if self.run is None or self.run.notebook is not item.parent:
            if self.world is None:
                self.world = self.nw.World()
                self.world.start()
            self.world.enter(Path(item.parent.path))
            self.run = NotebookRun(item.parent)
        result = yield  # nbval starts the notebook's kernel here, in the world's environment
        self._watch(item.parent.kernel)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        if not isinstance(item, self.plugin.IPyNbCell):
            return (yield)
        if self.run.failed:
            pytest.skip(f"not run: {self.run.failed} of this notebook failed above")
        self.run.current = item
        try:
            return (yield)
        finally:
            self.saved_outputs(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if isinstance(item, self.plugin.IPyNbCell) and call.when == "call" and report.failed:
            error = call.excinfo.value
            if isinstance(error, self.plugin.NbCellError) and str(error) == "Cell outputs differ":
                self.run.stale = True  # a stale output: the notebook's state is fine, the next cells still run
            else:
                self.run.failed = self.run.failed or f"Cell {item.cell_num}"
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        if not isinstance(item, self.plugin.IPyNbCell):
            return (yield)
        try:
            return (yield)  # after the notebook's last cell nbval stops its kernel here
        finally:
            if nextitem is None or nextitem.parent is not item.parent:
                self._finish(item.parent)

    def _finish(self, notebook) -> None:
        run, self.run = self.run, None
        try:
            if self.write and not run.failed:
                self.nw.save(notebook.nb, {**run.outputs}, Path(notebook.path))
            left = _listing() - run.listing
        finally:
            self.world.leave()
        assert not left, (f"{Path(notebook.path).name} left {sorted(left)} next to the notebooks: "
                          "write run outputs under assets.runs_dir(name)")

    # --- outputs ------------------------------------------------------------------------------------------------

    def saved_outputs(self, cell) -> list:
        """The cell's outputs in saved form, built once from the IOPub messages of its execution."""
        run = self.run
        if cell.cell_num not in run.outputs and cell.cell_num in run.msg_ids:
            messages = run.messages.pop(run.msg_ids[cell.cell_num], [])
            run.outputs[cell.cell_num] = self.nw.lean(self.nw.outputs_from_messages(messages),
                                                      self.world.replacements())
        return run.outputs.get(cell.cell_num, [])

    # --- a kernel that dies or hangs ----------------------------------------------------------------------------

    def _watch(self, kernel) -> None:
        """Wrap the kernel's execute and wait-for-reply: record each cell's request id, and while waiting look
        every POLL seconds whether the kernel is alive and working."""
        if getattr(kernel, "_minibert_watched", False):
            return
        kernel._minibert_watched = True
        hooks = self

        def execute_cell_input(source, allow_stdin=None):
            # with the history stored, as a learner's frontend does: IPython's "a trailing ; hides the value" looks
            # the cell up there (nbval's store_history=False showed `<Axes: ...>` under `plot(...);`)
            msg_id = kernel.kc.execute(source, store_history=True, allow_stdin=False, stop_on_error=False)
            hooks.run.messages[msg_id] = []
            hooks.run.msg_ids[hooks.run.current.cell_num] = msg_id
            return msg_id

        def await_reply(msg_id, timeout=None):
            deadline = None if timeout is None else time.monotonic() + timeout
            idle = IdleClock(kernel.km.provisioner.pid)
            while True:
                wait = POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic()))
                try:
                    msg = kernel.get_message(stream="shell", timeout=wait)
                except Empty:
                    hooks._check_kernel(kernel, idle)
                    if deadline is not None and time.monotonic() >= deadline:
                        raise  # nbval's own timeout: it interrupts the kernel for a traceback
                    continue
                if msg["parent_header"].get("msg_id") == msg_id:
                    if msg["content"]["status"] == "aborted":
                        raise RuntimeError("Kernel aborted execution request")
                    return

        kernel.execute_cell_input, kernel.await_reply = execute_cell_input, await_reply

    def _check_kernel(self, kernel, idle: "IdleClock") -> None:
        cell = self.run.current
        name = Path(cell.parent.path).name
        if not kernel.km.is_alive():
            process = getattr(kernel.km.provisioner, "process", None)
            code = process.poll() if process is not None else None
            kernel.stop()
            raise self.plugin.NbCellError(
                cell.cell_num, f"{name}: the kernel died while this cell ran (exit code {code}; -9 is often the "
                               "system killing it for memory)", cell.cell.source)
        hung_after = self.config.option.hung_kernel_after
        if idle.seconds() >= hung_after:
            try:
                os.kill(kernel.km.provisioner.pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass
            kernel.stop()
            raise self.plugin.NbCellError(
                cell.cell_num, f"{name}: the kernel used no CPU for {hung_after:g} s while this cell ran, so it was "
                               "stopped (a kernel that waits for nothing: a lost message or a deadlock)",
                cell.cell.source)


class IdleClock:
    """Seconds since the kernel process (with its children: a cell may wait on a script it started) last used
    more than IDLE_CPU of CPU time."""

    def __init__(self, pid: int) -> None:
        import psutil  # ipykernel's own dependency

        self.process = psutil.Process(pid)
        self.error = psutil.Error
        self.last_cpu, self.since = self._cpu(), time.monotonic()

    def _cpu(self) -> float | None:
        try:
            own = self.process.cpu_times()
            return own.user + own.system + own.children_user + own.children_system + sum(
                sum(child.cpu_times()[:2]) for child in self.process.children(recursive=True))
        except self.error:
            return None

    def seconds(self) -> float:
        cpu = self._cpu()
        if cpu is None or self.last_cpu is None or cpu - self.last_cpu > IDLE_CPU:
            self.last_cpu, self.since = cpu, time.monotonic()
        return time.monotonic() - self.since
