"""The course package's other pieces: ``course.start()`` (the call after every setup cell), the run form of the
training notebooks (a table of runs kept across presses, headless runs), 16's memory knobs (update on release,
bounded by the device) and its GPU measurement that frees the model when it fails."""
from __future__ import annotations

import pytest
import torch

from minibert import BertConfig, course, memory, runtime
from minibert.course import demos, session, widgets


# ----------------------------------------------------------------------------------------------------------
# start()
# ----------------------------------------------------------------------------------------------------------

@pytest.fixture
def environment(monkeypatch):
    for name in (runtime.MODE_ENV, runtime.DRY_RUN_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "default_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    return monkeypatch


def test_start_prints_mode_device_threads_and_returns_the_mode(environment, capsys):
    environment.setenv(runtime.MODE_ENV, "fast")
    assert course.start() == "fast"
    assert capsys.readouterr().out == "fast mode on cpu, 2 CPU threads\n"


def test_start_follows_course_mode_when_unset(environment, capsys):
    environment.setattr(torch.cuda, "is_available", lambda: False)
    assert course.start() == "fast"  # no GPU: fast
    environment.setattr(torch.cuda, "is_available", lambda: True)
    environment.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA T4")
    environment.setattr(runtime, "default_device", lambda: torch.device("cuda"))
    assert course.start() == "full"
    assert capsys.readouterr().out.splitlines()[-1] == "full mode on cuda (NVIDIA T4), 2 CPU threads"


def test_start_says_a_dry_run_means_nothing(environment, capsys):
    environment.setenv(runtime.MODE_ENV, "full")
    environment.setenv(runtime.DRY_RUN_ENV, "1")
    assert course.start() == "full"
    assert capsys.readouterr().out.splitlines() == [
        "full mode on cpu, 2 CPU threads",
        "DRY RUN: full mode's config, 2 updates per training loop, 2 batches per evaluation - its figures mean "
        "nothing"]


def test_start_refuses_what_it_cannot_honour(environment):
    environment.setenv(runtime.MODE_ENV, "fast")
    environment.setenv(runtime.DRY_RUN_ENV, "1")
    with pytest.raises(ValueError, match="MINIBERT_DRY_RUN=1 runs full mode's config .* set MINIBERT_MODE=full"):
        course.start()
    environment.setenv(runtime.MODE_ENV, "quick")
    environment.delenv(runtime.DRY_RUN_ENV)
    with pytest.raises(ValueError, match="MINIBERT_MODE='quick' is not a mode"):
        course.start()


def test_one_thread_is_singular():
    assert session.describe("fast", torch.device("cpu"), 1, False) == "fast mode on cpu, 1 CPU thread"

# ----------------------------------------------------------------------------------------------------------
# RunForm
# ----------------------------------------------------------------------------------------------------------

def _form(calls):
    def run(learning_rate, train_subset, seed, fp16):
        calls.append(dict(learning_rate=learning_rate, train_subset=train_subset, seed=seed, fp16=fp16))
        return {"accuracy": 0.5 + seed / 100, "model": object(), "note": "ok"}
    return widgets.RunForm(run, {"learning_rate": (5e-5, [1e-5, 5e-5, 1e-4]), "train_subset": 256, "seed": 0,
                                 "fp16": False})


def test_run_once_records_every_run_in_the_table():
    calls = []
    form = _form(calls)
    assert list(form.table().columns) == ["learning_rate", "train_subset", "seed", "fp16", "seconds"]
    first = form.run_once()
    form.run_once(seed=1, learning_rate=1e-4)
    assert calls == [dict(learning_rate=5e-5, train_subset=256, seed=0, fp16=False),
                     dict(learning_rate=1e-4, train_subset=256, seed=1, fp16=False)]
    table = form.table()
    assert list(table.index) == [1, 2]
    assert list(table.columns) == ["learning_rate", "train_subset", "seed", "fp16", "accuracy", "note", "seconds"]
    assert table["accuracy"].tolist() == [0.5, 0.51] and table["seed"].tolist() == [0, 1]
    assert (table["seconds"] >= 0).all()
    assert "model" in first and form.last["accuracy"] == 0.51  # the whole dict of the latest run, model included


def test_run_form_errors_name_the_fix():
    form = _form([])
    with pytest.raises(ValueError, match=r"unknown knob\(s\) \['lr'\]; this form's knobs are \['learning_rate'"):
        form.run_once(lr=1e-4)
    with pytest.raises(TypeError, match="must return a dict of metrics"):
        widgets.RunForm(lambda seed: 0.5, {"seed": 0}).run_once()
    with pytest.raises(ValueError, match=r"run returned \['seed'\], which are knob or column names"):
        widgets.RunForm(lambda seed: {"seed": seed}, {"seed": 0}).run_once()
    with pytest.raises(ValueError, match=r"knob 'lr': default 3e-05 is not one of its options \[1e-05, 5e-05\]"):
        widgets.RunForm(lambda lr: {}, {"lr": (3e-5, [1e-5, 5e-5])})
    with pytest.raises(ValueError, match="knob 'books': give a default"):
        widgets.RunForm(lambda books: {}, {"books": ["a", "b"]})
    with pytest.raises(TypeError, match="run must be the notebook's function"):
        widgets.RunForm({"accuracy": 1.0}, {"seed": 0})


def test_the_button_runs_with_the_widgets_values_and_keeps_the_table():
    calls = []
    form = _form(calls)
    box = form.widget
    kinds = {name: type(w).__name__ for name, w in form._widgets.items()}
    assert kinds == {"learning_rate": "Dropdown", "train_subset": "IntText", "seed": "IntText", "fp16": "Checkbox"}
    assert box.children[-3] is form._button
    form._widgets["seed"].value = 3
    form._widgets["learning_rate"].value = 1e-5
    form._button.click()
    form._button.click()
    assert calls == [dict(learning_rate=1e-5, train_subset=256, seed=3, fp16=False)] * 2
    assert len(form.runs) == 2 and form.values()["seed"] == 3
    assert not form._button.disabled and form._button.description == "Run"


def test_a_failed_run_leaves_the_button_usable():
    def run(seed):
        raise RuntimeError("out of memory")

    form = widgets.RunForm(run, {"seed": 0})
    form.widget
    form._button.click()  # ipywidgets reports the callback's error (in a kernel, the output widget shows it)
    assert not form._button.disabled and form._button.description == "Run" and form.runs == []

# ----------------------------------------------------------------------------------------------------------
# 16: the memory knobs and the measurement
# ----------------------------------------------------------------------------------------------------------

def test_memory_sliders_update_on_release_and_stop_where_the_card_is_full():
    base = BertConfig()
    knobs = widgets.memory_sliders(base, memory_bytes=16 * memory.GB)
    sliders = [w for w in knobs.values() if type(w).__name__ == "IntSlider"]
    assert len(sliders) == 3 and all(w.continuous_update is False for w in sliders)
    assert knobs["seq_len"].max == 512
    fits = memory.max_batch_size(base, 128, 16 * memory.GB, **memory.PYTORCH_ALLOCATOR)
    assert 1 < fits < 512 and knobs["batch_size"].max == fits and knobs["batch_size"].value == 32
    assert memory.fits(base, fits, 128, 16 * memory.GB, **memory.PYTORCH_ALLOCATOR)
    knobs["seq_len"].value = 512  # longer sequences: the batch's bound drops, and the value with it
    at_512 = memory.max_batch_size(base, 512, 16 * memory.GB, **memory.PYTORCH_ALLOCATOR)
    assert knobs["batch_size"].max == at_512 < fits and knobs["batch_size"].value == min(32, at_512)
    knobs["precision"].value = "bf16"
    assert knobs["batch_size"].max > at_512
    short = BertConfig(max_position_embeddings=128)
    assert widgets.memory_sliders(short, memory_bytes=80 * memory.GB)["seq_len"].max == 128
    with pytest.raises(ValueError, match="not even one sequence of 16 tokens fits 0.5 GB"):
        widgets.memory_sliders(base, memory_bytes=0.5 * memory.GB)


def test_memory_explorer_redraws_with_the_knobs():
    calls = []

    def show(seq_len, batch_size, grad_accumulation, precision, optimizer, attention, gradient_checkpointing):
        calls.append((seq_len, batch_size, precision))

    explorer = widgets.memory_explorer(show, BertConfig(), memory_bytes=80 * memory.GB)
    assert calls == [(128, 32, "fp32")]
    explorer.children[1].value = 64  # the batch slider
    assert calls[-1] == (128, 64, "fp32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU answer")
def test_measured_peak_needs_a_gpu():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU; on a CPU, memory.count_saved_bytes"):
        demos.measured_peak(BertConfig(), 2, 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measured_peak_frees_the_gpu_when_the_step_does_not_fit():
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    small = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=256)
    peak = demos.measured_peak(small, 8, 64)
    assert peak is not None and 0.5 < peak / memory.estimate(small, 8, 64).peak < 2.0
    total = torch.cuda.get_device_properties(0).total_memory
    huge = next(b for b in (2 ** k for k in range(6, 20)) if memory.estimate(BertConfig(), b, 512).peak > 2 * total)
    assert demos.measured_peak(BertConfig(), huge, 512, attention="explicit") is None
    assert torch.cuda.memory_allocated() == before  # the model, optimizer and batch are gone
    assert demos.measured_peak(small, 8, 64) is not None  # and the GPU works after the failure
