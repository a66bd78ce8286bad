"""minibert installed the way a learner installs it: non-editable, with pip, from this checkout, offline.

- A plain ``pip install --target`` copy keeps its data in ``$MINIBERT_CACHE/data``, never inside the install.
- Notebook 00's config and setup cells, run the Colab way: in a Python that has what Colab has (this environment's
  packages, minibert left out), with ``google.colab`` importable and imported (an empty stand-in package) and
  ``MINIBERT_INSTALL`` pointing the setup cell's ``%pip install`` at a wheel built from this checkout. The cell
  installs minibert, then downloads its data (from tests/mirror.py) into the cache.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from minibert import assets
from mirror import Mirror, course_hub, source_data_dir

REPO = Path(__file__).resolve().parent.parent
PIP_OFFLINE = ["--no-index", "--no-deps", "--no-build-isolation", "--disable-pip-version-check", "-q"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built from a copy of what a build reads (a build writes build/ and *.egg-info
    into its source folder, which must stay clean)."""
    source = tmp_path_factory.mktemp("checkout")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "minibert", source / "minibert", ignore=shutil.ignore_patterns("__pycache__"))
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run([sys.executable, "-m", "pip", "wheel", *PIP_OFFLINE, "-w", str(wheelhouse), str(source)],
                   check=True, capture_output=True, text=True)
    (built,) = wheelhouse.glob("minibert-*.whl")
    return built


def learner_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without what points minibert at the clone's data, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in (assets.DATA_ENV, assets.CHECKPOINT_ENV, assets.MIRROR_ENV, "PYTHONPATH")}
    env.update({assets.CACHE_ENV: str(tmp_path / "cache"), "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
                "OMP_NUM_THREADS": "1", **extra})
    return env


def test_a_pip_install_keeps_its_data_in_the_cache_not_in_site_packages(wheel, tmp_path):
    target = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", *PIP_OFFLINE, "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    with Mirror(source_data_dir(), {}) as url:
        env = learner_env(tmp_path, PYTHONPATH=str(target), **{assets.MIRROR_ENV: url})
        script = ("import json, minibert, minibert.assets as a; a.download('swag_sample'); "
                  "print(json.dumps([minibert.__file__, str(a.data_dir()), a.in_checkout()]))")
        out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                             check=True).stdout
    module, data, in_checkout = json.loads(out.splitlines()[-1])
    assert Path(module).is_relative_to(target), "the test ran the clone, not the installed copy"
    assert (data, in_checkout) == (str(tmp_path / "cache" / "data"), False)
    assert (tmp_path / "cache" / "data" / "swag" / "sample.json").is_file()
    assert not (target / "data").exists()


def colab_python(tmp_path: Path) -> Path:
    """A Python like Colab's: this environment's packages (torch, IPython, bertviz, ...) but not minibert, and an
    empty ``google.colab`` package (the module that the setup cell looks for)."""
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    own_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    preinstalled = tmp_path / "preinstalled"
    preinstalled.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():  # everything but minibert's editable install
        if not entry.name.startswith(("minibert", "__editable__", "__editable___minibert")) and \
                entry.suffix != ".pth":
            (preinstalled / entry.name).symlink_to(entry)
    (own_site / "colab-preinstalled.pth").write_text(f"{preinstalled}\n")
    (tmp_path / "fake" / "google" / "colab").mkdir(parents=True)
    (tmp_path / "fake" / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s module."""\n')
    return python


RUN_CELLS = """
import json, sys
import google.colab  # a Colab kernel imports it at start
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for source in json.load(open(sys.argv[1])):
    shell.run_cell(source).raise_error()
import minibert, minibert.assets as a
print(json.dumps([minibert.__file__, str(a.data_dir()), a.in_checkout()]))
"""


def test_notebook_00s_setup_cell_installs_minibert_the_colab_way(wheel, tmp_path):
    python = colab_python(tmp_path)
    cells = [c.source for c in nbformat.read(REPO / "notebooks" / "00_setup.ipynb", as_version=4).cells
             if c.cell_type == "code"][:3]  # the setup cell, the config cell, the data cell
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    (tmp_path / "run_cells.py").write_text(RUN_CELLS)
    with Mirror(source_data_dir(), course_hub(tmp_path)) as url:
        env = learner_env(tmp_path, PYTHONPATH=str(tmp_path / "fake"), MINIBERT_MODE="fast",
                          MINIBERT_INSTALL=f"minibert @ {wheel.as_uri()}", PIP_NO_INDEX="1",
                          PIP_DISABLE_PIP_VERSION_CHECK="1", **{assets.MIRROR_ENV: url})
        before = subprocess.run([str(python), "-c", "import minibert"], cwd=tmp_path, env=env, capture_output=True)
        assert before.returncode != 0, "minibert is importable before the setup cell: the test would prove nothing"
        run = subprocess.run([str(python), "run_cells.py", "cells.json"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
    assert run.returncode == 0, f"the setup cell failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    module, data, in_checkout = json.loads(run.stdout.splitlines()[-1])
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    assert Path(module).is_relative_to(site) and not in_checkout  # installed by the cell, not editable
    assert data == str(tmp_path / "cache" / "data")
    assert f"data in {tmp_path / 'cache' / 'data'}" in run.stdout
    for name in ("mrpc/train.tsv", "chnsenticorp/train.tsv", "vocab/bert-base-uncased-vocab.txt",
                 "lm_text/gutenberg_austen_chesterton_sentences.txt"):
        assert (tmp_path / "cache" / "data" / name).is_file(), name
    assert not (site / "data").exists()
