"""The notebooks as saved, and the harness that runs them under nbval (conftest.py, tests/notebook_world.py).

The notebooks themselves are validated by nbval in the same session (``make test`` runs ``pytest --nbval``; one
notebook: ``python -m pytest --nbval notebooks/04_masked_lm.ipynb``). Here: the saved notebooks are lean and can be
compared (a cell with outputs but no execution count is silently skipped by nbval), the saved form of outputs is
built as a frontend shows them, and a failing, stale, hung or dead notebook gives one clear failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from notebook_world import (NOTEBOOK_DIR, REPO, SCRIPT_REMOVED, WIDGET_VIEW, lean, machine_replacements,
                            outputs_from_messages)

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 2**20
PROGRESS_TEXT = re.compile(r"\d+%\|")  # what a tqdm bar leaves in a saved notebook: "  0%|          | 0.00/999k"


def _texts(cell) -> list[str]:
    texts = []
    for out in cell.get("outputs", []):
        texts.append(out.get("text", ""))
        texts += [v for k, v in out.get("data", {}).items() if isinstance(v, str) and not k.startswith("image/")]
        texts += out.get("traceback", [])
    return texts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_notebook_is_lean_and_comparable(path):
    raw = path.read_bytes()
    assert len(raw) < MAX_BYTES, f"{path.name} is {len(raw) / 2**20:.1f} MiB: keep figures small (notebook_world)"
    nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    assert nb.metadata.kernelspec.name == "python3", f"{path.name}: the kernelspec must be python3"
    assert "widgets" not in nb.metadata, f"{path.name} carries widget state: regenerate with `make notebooks`"
    machine = [p for p, _ in machine_replacements()] + ["/tmp/"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code):
        where = f"{path.name} code cell {number}"
        if cell.outputs:
            assert cell.execution_count is not None, f"{where} has outputs but no execution count: nbval skips it"
        for out in cell.outputs:
            assert WIDGET_VIEW not in out.get("data", {}), f"{where} saves a widget view"
            assert "application/javascript" not in out.get("data", {}), f"{where} saves JavaScript"
            assert out.output_type != "error", f"{where} was saved with an error"
        for text in _texts(cell):
            assert not PROGRESS_TEXT.search(text), f"{where} saves a progress bar's text: {text[:80]!r}"
            found = [m for m in machine if m in text]
            assert not found, f"{where} saves this machine's path {found[0]!r}: {text[:120]!r}"
        source = cell.source.splitlines()
        if "# NBVAL_IGNORE_OUTPUT" in source:
            at = source.index("# NBVAL_IGNORE_OUTPUT")
            assert at == 0 and len(source) > 1 and source[1].startswith("# ("), \
                f"{where}: `# NBVAL_IGNORE_OUTPUT` goes on the first line, with a `# (reason)` line under it"
    counts = [c.execution_count for c in code]
    assert counts in ([None] * len(code), list(range(1, len(code) + 1))), \
        f"{path.name}: saved outputs must be one top-to-bottom run (execution counts {counts})"


def test_every_notebook_has_saved_outputs():
    """nbval compares only cells that were run: a notebook saved without outputs would pass without a check."""
    unrun = [p.name for p in NOTEBOOKS if all(c.get("execution_count") is None for c in
                                              json.loads(p.read_text(encoding="utf-8"))["cells"]
                                              if c["cell_type"] == "code")]
    if len(unrun) == len(NOTEBOOKS):
        pytest.skip("no notebook has saved outputs yet: `make notebooks` saves them")
    assert not unrun, f"saved without outputs: {unrun}; run `make notebooks` and commit them"


def _msg(kind: str, **content) -> dict:
    return {"msg_type": kind, "header": {"msg_type": kind}, "parent_header": {}, "metadata": {}, "content": content}


def _display(text: str, display_id: str | None = None, kind: str = "display_data") -> dict:
    return _msg(kind, data={"text/plain": text}, metadata={},
                transient={"display_id": display_id} if display_id else {})


def test_outputs_are_what_a_frontend_shows():
    messages = [
        _msg("stream", name="stdout", text="epoch 1\n"),
        _msg("stream", name="stdout", text="10%\r50%\r100%\n"),  # a carriage return overwrites its line
        _display("curve after 0 updates", display_id="live"),
        _msg("stream", name="stderr", text="a warning\n"),
        _display("curve after 100 updates", display_id="live", kind="update_display_data"),
        _msg("stream", name="stdout", text="done\n"),
    ]
    outs = outputs_from_messages(messages)
    assert [(o.output_type, o.get("name")) for o in outs] == [
        ("stream", "stdout"), ("display_data", None), ("stream", "stderr"), ("stream", "stdout")]
    assert outs[0].text == "epoch 1\n100%\n"
    assert outs[1].data["text/plain"] == "curve after 100 updates"  # a live plot keeps its last frame

    waited = outputs_from_messages([_display("frame 1"), _msg("clear_output", wait=True), _display("frame 2")])
    assert [o.data["text/plain"] for o in waited] == ["frame 2"]
    cleared = outputs_from_messages([_display("frame 1"), _msg("clear_output", wait=False)])
    assert cleared == []


def test_lean_outputs_drop_widgets_and_scripts_and_paths():
    here = str(REPO)
    outs = [
        new_output("display_data", data={WIDGET_VIEW: {"model_id": "abc"}, "text/plain": "VBox(children=(...))"}),
        new_output("display_data", data={"text/html": "<div id='bertviz'></div><script>draw()</script>"}),
        new_output("display_data", data={"application/javascript": "draw()"}),
        new_output("display_data", data={"text/html": '<div id="bertviz-5f3a">Layer:</div>', "text/plain": "<HTML>"}),
        new_output("stream", name="stdout", text=f"saved to {here}/runs/x and /scratch/data/mrpc\n"),
    ]
    saved = lean(outs, [("/scratch/data", "$MINIBERT_DATA"), *machine_replacements()])
    assert [o.output_type for o in saved] == ["display_data", "stream"]
    assert saved[0].data == {"text/plain": SCRIPT_REMOVED}  # one note for the scripts, once per cell
    assert saved[1].text == "saved to <minibert>/runs/x and $MINIBERT_DATA/mrpc\n"


def test_sanitize_rules_replace_temporary_names_whole_and_times():
    """nbval applies tests/nbval_sanitize.cfg's rules in file order: a temporary name whose random letters end like
    a time (tmpq0k_ab5s) is one <tmp>, as any other, so two runs compare equal whatever names they drew."""
    from nbval.plugin import get_sanitize_patterns

    rules = get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text(encoding="utf-8"))

    def sanitize(text: str) -> str:  # as nbval's IPyNbCell.sanitize
        for regex, replace in dict(rules).items():
            text = re.sub(regex, replace, text)
        return text

    for name in ("tmpabcdefgh", "tmpq0k_ab5s", "tmp_x12_3ms", "tmpab_1_9us", "tmp3_q_7min", "tmp0000002h"):
        assert sanitize(f"$TMPDIR/{name}\n") == "$TMPDIR/<tmp>\n", name
    assert sanitize("3 steps in 12.3 s (0.52 ms/step), 45.6 it/s\n") == "3 steps in <time> (<time>/step), <rate>\n"
    assert sanitize("<Foo object at 0x7f3a2c1b5d90>, 2 CPU threads") == "<Foo object at <address>>, <n> CPU threads"


def _notebook(path: Path, *cells) -> Path:
    nb = new_notebook(cells=list(cells))
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, path)
    return path


def _pytest(folder: Path, *args: str) -> tuple[dict[str, tuple[str, str]], str]:
    """Run pytest with the repository's conftest on notebooks in ``folder``: {test id: (outcome, message)}."""
    report = folder / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MINIBERT_MODE": "fast", "OMP_NUM_THREADS": "1"}  # one thread: no probe, these cells need no speed
    env.pop("MINIBERT_DRY_RUN", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider",
                           f"--junitxml={report}", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    results = {}
    for case in ET.parse(report).iter("testcase"):
        outcome = next(((child.tag, child.get("message", "") + (child.text or "")) for child in case
                        if child.tag in ("failure", "error", "skipped")), ("passed", ""))
        results[f"{case.get('classname').removesuffix('.ipynb')}::{case.get('name')}"] = outcome
    return results, proc.stdout + proc.stderr


def test_harness_saves_outputs_and_reports_one_failure_per_notebook(tmp_path):
    """`make notebooks` saves a run that `--nbval` then passes; a failing cell is the notebook's one failure
    (no NameErrors after it); a changed output fails its cell; a kernel that dies or hangs fails its cell at once."""
    good = _notebook(tmp_path / "good.ipynb",
                     new_code_cell("import os, tempfile\nfrom IPython.display import display, clear_output\n"
                                   "print(os.environ['MINIBERT_DATA'], tempfile.mkdtemp())"),
                     new_code_cell("h = display('frame 1', display_id=True)\nh.update('frame 2')\n"
                                   "print('0.123 s')\n1 + 1;"))
    stale = _notebook(tmp_path / "stale.ipynb", new_code_cell("print(['puppet', '##eer'])"),
                      new_code_cell("print('still runs')"))
    results, log = _pytest(tmp_path, "--write-outputs", good.name)
    assert all(outcome == "passed" for outcome, _ in results.values()), log
    saved = nbformat.read(good, as_version=4).cells
    assert saved[0].outputs[0].text.startswith("$MINIBERT_DATA $TMPDIR/tmp"), saved[0].outputs
    assert [o.data["text/plain"] for o in saved[1].outputs if "data" in o] == ["'frame 2'"]
    assert [c.execution_count for c in saved] == [1, 2]
    assert "execute_result" not in [o.output_type for o in saved[1].outputs]  # `;` hides the value, as in Jupyter
    nb = nbformat.read(good, as_version=4)
    nb.cells[1].outputs[-1].text = "9.876 s\n"  # another run's time: tests/nbval_sanitize.cfg lets it pass
    nbformat.write(nb, good)

    nb = nbformat.read(stale, as_version=4)
    nb.cells[0].outputs = [new_output("stream", name="stdout", text="['puppeteer']\n")]
    nb.cells[1].outputs = [new_output("stream", name="stdout", text="still runs\n")]
    nb.cells[0].execution_count, nb.cells[1].execution_count = 1, 2
    nbformat.write(nb, stale)
    failing = _notebook(tmp_path / "failing.ipynb", new_code_cell("x = 1"), new_code_cell("1 / 0"),
                        new_code_cell("print(x, y)"), new_code_cell("print(x)"))
    hung = _notebook(tmp_path / "hung.ipynb", new_code_cell("import time\ntime.sleep(300)"),
                     new_code_cell("print('after')"))
    died = _notebook(tmp_path / "died.ipynb", new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))
    results, log = _pytest(tmp_path, "--nbval", "--hung-kernel-after=10", good.name, stale.name, failing.name,
                           hung.name, died.name)
    outcome = {k: v[0] for k, v in results.items()}
    assert outcome == {
        "good::Cell 0": "passed", "good::Cell 1": "passed",
        "stale::Cell 0": "failure", "stale::Cell 1": "passed",
        "failing::Cell 0": "passed", "failing::Cell 1": "failure", "failing::Cell 2": "skipped",
        "failing::Cell 3": "skipped",
        "hung::Cell 0": "failure", "hung::Cell 1": "skipped",
        "died::Cell 0": "failure"}, log
    assert "Cell outputs differ" in results["stale::Cell 0"][1] and "puppeteer" in results["stale::Cell 0"][1]
    assert "ZeroDivisionError" in results["failing::Cell 1"][1] and "1 / 0" in results["failing::Cell 1"][1]
    assert "Cell 1 of this notebook failed above" in results["failing::Cell 2"][1]
    assert "NameError" not in log
    assert "hung.ipynb: the kernel used no CPU for 10 s" in results["hung::Cell 0"][1]
    assert "died.ipynb: the kernel died while this cell ran (exit code -9" in results["died::Cell 0"][1]


def test_parallel_workers_share_the_cores_and_skip_the_probe(monkeypatch):
    """Under pytest -n (make test's tests/ and dry run) each worker takes its share of the cores, at least 1,
    without the probe (two at once would time each other's load); OMP_NUM_THREADS still wins."""
    import threads

    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    assert [threads.shared_thread_count(w) for w in (1, 2, 3, 16)] == [8, 4, 2, 1]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setattr(threads.subprocess, "run", lambda *a, **k: pytest.fail("probed under xdist"))
    unprobed = threads.session_thread_count.__wrapped__  # not the session's cached count
    assert unprobed() == (4, {})
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert unprobed() == (3, {})
