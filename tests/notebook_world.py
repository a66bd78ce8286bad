"""The world every notebook runs in under nbval (``make test``, ``make notebooks``, ``pytest --nbval x.ipynb``),
and the saved form of its outputs.

A notebook runs as on a learner's machine: an empty data folder, cache and Hugging Face cache of its own, data and
checkpoints downloaded by the course's own code from a local mirror of the public URLs (tests/mirror.py), and the
torch thread count the session chose (tests/threads.py). Fast mode by default; ``MINIBERT_MODE=full
MINIBERT_DRY_RUN=1`` is full mode's dry run, where the mirror serves small stand-ins under the hub names; plain
``MINIBERT_MODE=full`` (a GPU) keeps the learner's own folders and the real hub.

What is saved is what a reader without a kernel can use: figures as PNG at 72 dpi, no widget views (their state is
not saved, so they would show as ``VBox(children=...``), no JavaScript (a saved notebook's scripts do not run), no
progress bars (``TQDM_DISABLE``), and the run's folders written as the variables that named them (``$MINIBERT_DATA``)
instead of this machine's paths. nbval compares a fresh run in the same saved form, so what is compared is exactly
what is committed.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import output_from_msg

import mirror
from minibert import assets
from minibert.runtime import DRY_RUN_ENV, dry_run
from threads import session_thread_count

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
FIGURE_DPI = 72  # IPython's classic inline resolution: a 10 x 3.2 inch figure is a 720 x 230 PNG of ~30 kB
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SCRIPT_REMOVED = "[interactive view: JavaScript, not saved with the notebook; run the cell to see it]"
# Variables the world sets for each notebook's kernel; None removes one (a learner's own setting must not leak in).
HF_VARIABLES = ("HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE")


def world_mode() -> str:
    """"fast" (the default), "dry-run" (MINIBERT_MODE=full MINIBERT_DRY_RUN=1) or "full" (a real full run)."""
    mode = os.environ.get("MINIBERT_MODE") or "fast"
    if mode not in ("fast", "full"):
        raise ValueError(f"MINIBERT_MODE={mode!r}: the notebooks run in 'fast' or 'full' mode")
    if mode == "full":
        return "dry-run" if dry_run() else "full"
    if dry_run():
        raise ValueError(f"{DRY_RUN_ENV}=1 is a dry run of full mode: set MINIBERT_MODE=full with it")
    return "fast"


def hub_for(mode: str, folder: Path) -> dict[str, Path]:
    """The checkpoints the mirror serves: in fast mode none under a real model's name (fast notebooks then use the
    packaged all-MiniLM-L6-v2 and say so); in a dry run small stand-ins under every hub name full mode asks for."""
    return mirror.dry_run_hub(folder) if mode == "dry-run" else mirror.course_hub(folder)


@dataclass
class World:
    """One pytest session's notebook world: a temporary root, the mirror, the thread count and the IPython
    profile every kernel starts with. ``enter(notebook)`` gives a notebook its own folders; ``leave()`` restores
    the environment."""

    mode: str = field(default_factory=world_mode)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="minibert-notebooks-")))
    mirror_url: str | None = None
    _mirror: mirror.Mirror | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    folder: Path | None = None  # the current notebook's folder

    def start(self) -> None:
        profile = self.root / "ipython" / "profile_default"
        profile.mkdir(parents=True)
        (profile / "ipython_kernel_config.py").write_text(
            "# written by tests/notebook_world.py: lean PNG figures in every notebook the tests run\n"
            "c.InlineBackend.figure_formats = {'png'}\n"
            f"c.InlineBackend.rc = {{'figure.dpi': {FIGURE_DPI}}}\n")
        if self.mode != "full":
            source = mirror.source_data_dir()  # read before any notebook's MINIBERT_DATA replaces the variable
            self._mirror = mirror.Mirror(source, hub_for(self.mode, self.root / "hub"))
            self.mirror_url = self._mirror.__enter__()

    def stop(self) -> None:
        self.leave()
        if self._mirror is not None:
            self._mirror.__exit__(None, None, None)
        shutil.rmtree(self.root, ignore_errors=True)

    def environment(self, folder: Path) -> dict[str, str | None]:
        """The variables a notebook's kernel starts with (None: unset)."""
        env: dict[str, str | None] = {
            "OMP_NUM_THREADS": str(session_thread_count()[0]),
            "TQDM_DISABLE": "1",  # a bar's text form (`0%| | 0.00/999k`) is all a saved notebook would keep
            "IPYTHONDIR": str(self.root / "ipython"),
            "MINIBERT_MODE": "fast" if self.mode == "fast" else "full",
            DRY_RUN_ENV: "1" if self.mode == "dry-run" else None,
        }
        if self.mode != "full":
            env |= {
                assets.MIRROR_ENV: self.mirror_url,
                assets.DATA_ENV: str(folder / "data"),
                assets.CACHE_ENV: str(folder / "cache"),
                assets.CHECKPOINT_ENV: None,
                "HF_HOME": str(folder / "huggingface"),  # a learner's cached bert-base-uncased must not leak in
                "TMPDIR": str(folder / "tmp"),
                **dict.fromkeys(HF_VARIABLES),
            }
        return env

    def enter(self, notebook: Path) -> None:
        self.leave()
        self.folder = self.root / notebook.stem
        (self.folder / "tmp").mkdir(parents=True)
        if self.mode == "dry-run":  # full mode's big files the offline data lacks: small stand-ins, marked as such
            mirror.write_stand_in_data(self.folder / "data")
        for key, value in self.environment(self.folder).items():
            self._saved_env.setdefault(key, os.environ.get(key))
            _set_env(key, value)

    def leave(self) -> None:
        for key, value in self._saved_env.items():
            _set_env(key, value)
        self._saved_env.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def replacements(self) -> list[tuple[str, str]]:
        """This machine's paths in a notebook's outputs -> what the saved notebook shows instead."""
        pairs = []
        if self.folder is not None and self.mode != "full":
            pairs += [(str(self.folder / "data"), "$MINIBERT_DATA"), (str(self.folder / "cache"), "$MINIBERT_CACHE"),
                      (str(self.folder / "huggingface"), "$HF_HOME"), (str(self.folder / "tmp"), "$TMPDIR")]
        return sorted(pairs + machine_replacements(), key=lambda pair: len(pair[0]), reverse=True)


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def machine_replacements() -> list[tuple[str, str]]:
    """Paths of this machine that any run may print: the installed packages, the environment, the clone, home."""
    packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    pairs = [(p, "<site-packages>") for p in sorted(packages, key=len, reverse=True)]
    pairs += [(sys.prefix, "<python environment>"), (str(REPO), "<minibert>")]
    home = os.path.expanduser("~")
    if home not in ("/", ""):
        pairs.append((home, "~"))
    return pairs


def scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    for path, placeholder in replacements:
        text = text.replace(path, placeholder)
    return text


_CARRIAGE_RETURN = re.compile(r"^.*\r(?=[^\n])", re.MULTILINE)


def outputs_from_messages(messages: list[dict]) -> list[nbformat.NotebookNode]:
    """A cell's outputs as a frontend without widgets shows them, from the kernel's IOPub messages: streams merged
    (a carriage return overwrites its line), ``clear_output`` honoured (with ``wait``, at the next output), an
    ``update_display_data`` replacing the display it names (a live plot keeps its last frame)."""
    outputs: list[nbformat.NotebookNode] = []
    displays: dict[str, list[int]] = {}
    clear_at_next = False
    for msg in messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "clear_output":
            if content.get("wait"):
                clear_at_next = True
            else:
                outputs, displays, clear_at_next = [], {}, False
            continue
        if kind == "update_display_data":
            for i in displays.get(content.get("transient", {}).get("display_id"), []):
                outputs[i] = nbformat.from_dict({"output_type": "display_data", "data": content["data"],
                                                 "metadata": content.get("metadata", {})})
            continue
        if kind not in ("stream", "display_data", "execute_result", "error"):
            continue
        if clear_at_next:
            outputs, displays, clear_at_next = [], {}, False
        out = output_from_msg(msg)
        if kind == "stream" and outputs and outputs[-1].output_type == "stream" and outputs[-1].name == out.name:
            outputs[-1].text += out.text
        else:
            display_id = content.get("transient", {}).get("display_id")
            if display_id:
                displays.setdefault(display_id, []).append(len(outputs))
            outputs.append(out)
    for out in outputs:
        if out.output_type == "stream":
            out.text = _CARRIAGE_RETURN.sub("", out.text)
    return outputs


def lean(outputs: list, replacements: list[tuple[str, str]]) -> list[nbformat.NotebookNode]:
    """Outputs in their saved form: widget views dropped, JavaScript and the HTML of a cell that draws with it
    replaced by one note, this machine's paths replaced."""
    saved = []
    scripted = any("application/javascript" in o.get("data", {}) or "<script" in o.get("data", {}).get("text/html", "")
                   or o.get("data", {}).get("text/plain") == SCRIPT_REMOVED for o in outputs)  # saved: the note
    for out in outputs:
        out = nbformat.from_dict(out)
        if out.output_type in ("display_data", "execute_result"):
            data = out.data
            if WIDGET_VIEW in data:
                continue  # its state is not saved: without a kernel it could only show as text
            if "application/javascript" in data or (scripted and "text/html" in data):
                # a script, and the HTML of its view (bertviz's `<div id="bertviz-<random>">`), which it fills
                if not any(o.get("data", {}).get("text/plain") == SCRIPT_REMOVED for o in saved):
                    saved.append(nbformat.from_dict({"output_type": "display_data", "metadata": {},
                                                     "data": {"text/plain": SCRIPT_REMOVED}}))
                continue
            out.data = {k: scrub(v, replacements) if isinstance(v, str) and not k.startswith("image/") else v
                        for k, v in data.items()}
        elif out.output_type == "stream":
            out.text = scrub(out.text, replacements)
        elif out.output_type == "error":
            out.evalue = scrub(out.evalue, replacements)
            out.traceback = [scrub(line, replacements) for line in out.traceback]
        saved.append(out)
    return saved


def save(notebook: nbformat.NotebookNode, outputs: dict[int, list], path: Path) -> None:
    """Write ``notebook`` with ``outputs`` (code-cell number -> saved outputs) as one top-to-bottom run: execution
    counts 1, 2, ... in order, no widget state, the standard ``python3`` kernel."""
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells):
        cell.outputs = outputs.get(number, [])
        cell.execution_count = number + 1
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = number + 1
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
