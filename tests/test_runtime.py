"""The machine a learner has: precision by GPU generation (capability mocked), MPS on an Apple laptop (availability
mocked: CI cannot run MPS), and the record of a run's figures that benchmarks/run_full.py collects."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from minibert import runtime
from minibert.training import resolve_precision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import run_full  # noqa: E402  (benchmarks/ is not a package)

CUDA = torch.device("cuda")


def pretend_gpu(monkeypatch, name: str, capability: tuple[int, int]) -> None:
    """A CUDA GPU of this name and compute capability, as far as the calls minibert makes can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(name=name, total_memory=15_843_721_216))
    # what torch says by default on a T4 too: its default counts emulation
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


# --- precision ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, capability, expected", [
    ("Tesla T4", (7, 5), "fp16"), ("Tesla V100-SXM2-16GB", (7, 0), "fp16"), ("NVIDIA A100-SXM4-40GB", (8, 0), "bf16"),
    ("NVIDIA L4", (8, 9), "bf16"), ("NVIDIA H100 80GB HBM3", (9, 0), "bf16")])
def test_auto_precision_is_bf16_only_where_the_gpu_computes_it(name, capability, expected, monkeypatch):
    pretend_gpu(monkeypatch, name, capability)
    assert runtime.has_native_bf16(CUDA) is (expected == "bf16")
    assert resolve_precision("auto", CUDA) == expected


def test_explicit_bf16_on_a_t4_is_refused_with_the_reason(monkeypatch):
    pretend_gpu(monkeypatch, "Tesla T4", (7, 5))
    with pytest.raises(ValueError, match=r"Tesla T4, compute capability 7\.5\) only emulates bf16.*'fp16' or 'auto'"):
        resolve_precision("bf16", CUDA)
    assert resolve_precision("fp16", CUDA) == "fp16"


def test_auto_precision_off_the_gpu_is_fp32():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert not runtime.has_native_bf16("cpu")


@pytest.mark.parametrize("name, capability, line", [
    ("Tesla T4", (7, 5), "emulated only (compute capability 7.5 < 8.0): precision='auto' trains in fp16"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "native (compute capability 8.0): precision='auto' trains in bf16")])
def test_environment_report_says_whether_bf16_is_native(name, capability, line, monkeypatch):
    pretend_gpu(monkeypatch, name, capability)
    monkeypatch.delenv(runtime.MODE_ENV, raising=False)
    report = runtime.environment_report()
    assert report["bf16"].startswith(line)
    assert report["gpu"] == f"{name}, 14.8 GiB" and report["device"] == "cuda" and report["mode"] == "full"


# --- the device -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_default_device_prefers_cuda_then_mps_then_the_cpu(cuda, mps, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert runtime.default_device() == torch.device(expected)


def test_mps_machines_get_the_cpu_fallback_for_missing_operations(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # what importing minibert first sets
    assert runtime.environment_report()["mps fallback"].startswith("on")
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK")
    assert "set PYTORCH_ENABLE_MPS_FALLBACK=1 before torch is imported" in runtime.environment_report()["mps fallback"]


def test_importing_minibert_before_torch_turns_the_mps_fallback_on():
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    script = "import minibert, os; print(os.environ['PYTORCH_ENABLE_MPS_FALLBACK'])"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


# --- results for run_full.py ----------------------------------------------------------------------------------

def test_record_result_writes_what_run_full_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path))
    monkeypatch.setenv(runtime.MODE_ENV, "full")
    monkeypatch.setenv(runtime.DRY_RUN_ENV, "1")
    path = runtime.record_result("squad_v1.1", {"exact_match": np.float32(0.81), "f1": 0.885}, checkpoint="x")
    assert path == tmp_path / "runs" / "squad_v1.1" / "result.json"
    record = json.loads(path.read_text())
    assert record["metrics"] == {"exact_match": pytest.approx(0.81), "f1": 0.885}
    assert (record["mode"], record["dry_run"], record["checkpoint"], record["split"]) == ("full", True, "x", "dev")
    assert runtime.read_result("squad_v1.1") == record and runtime.read_result("mrpc") is None
    runs = [{"notebook": "13_squad", "wall_seconds": 600.0, "error": None},
            {"notebook": "09_mrpc", "wall_seconds": 60.0, "error": "ValueError: boom"}]
    text = run_full.table(runs, run_full.collect(record["written"] - 1))
    assert "| squad_v1.1 | dev | exact_match | 81.0 (dry run: meaningless) | 81.2 |" in text
    assert "| squad_v1.1 | dev | f1 | 88.5 (dry run: meaningless) | 88.5 |" in text
    assert "| mrpc | dev | - | failed: ValueError: boom |" in text
    assert run_full.collect(record["written"] + 1) == {}  # a result older than the run is not this run's


@pytest.mark.parametrize("metrics, error", [({"f1": 88.5}, "must be a fraction"), ({"f1": float("nan")}, "finite"),
                                            ({"accuracy": "0.8"}, "must be a finite number")])
def test_record_result_refuses_figures_it_cannot_table(metrics, error, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path))
    with pytest.raises((ValueError, TypeError), match=error):
        runtime.record_result("mrpc", metrics)
    assert not (tmp_path / "runs" / "mrpc" / "result.json").exists()


def test_every_published_figure_names_a_notebook_that_exists():
    stems = {p.stem[:2] for p in run_full.NOTEBOOKS}
    for name, spec in run_full.PUBLISHED.items():
        assert spec["notebook"] in stems, name
        assert spec["source"], name
