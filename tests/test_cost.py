"""minibert.cost: the one FLOP formula, the one timer, and the plan every full-mode notebook prints before it trains,
checked against the notebooks' own full-mode sizes on a T4 (16 GB, fp16) and an A100 (40 GB, bf16)."""
import math
import sys
import time
from pathlib import Path

import pytest
import torch

from minibert import BertConfig, BertForSequenceClassification, cost, memory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import run_full  # noqa: E402  (benchmarks/ is not a package)

BASE = BertConfig()  # BERT-Base uncased: L=12, H=768, A=12, I=3072, V=30522


# --- FLOPs ----------------------------------------------------------------------------------------------------

def test_forward_flops_of_bert_base_by_hand():
    # per layer and token: 2 (4 H^2 + 2 H I) = 2 (4 * 589,824 + 2 * 2,359,296) = 14,155,776; attention 4 S H per token
    B, S = 2, 128
    layer = B * S * 14_155_776 + 4 * B * S * S * 768
    expected = 12 * layer + 2 * B * 768 * 768 + 2 * B * 768 * 2  # pooler, classifier of 2 labels
    assert cost.forward_flops(BASE, B, S) == expected
    assert cost.forward_flops(BASE, B, S, num_labels=None, pooler=False) == 12 * layer
    assert cost.forward_flops(BASE, B, S, masked_tokens=10) - cost.forward_flops(BASE, B, S) == \
        2 * 10 * (768 * 768 + 768 * 30522)
    assert cost.training_flops(BASE, B, S) == 3 * expected
    assert cost.training_flops(BASE, B, S, gradient_checkpointing=True) == 4 * expected


def test_forward_flops_count_every_matmul_of_a_real_forward():
    """torch's FLOP counter, run on a real BertForSequenceClassification, counts the same matmuls."""
    from torch.utils.flop_counter import FlopCounterMode

    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128)
    model = BertForSequenceClassification(config, num_labels=3).eval()
    model.set_attn_implementation("explicit")  # plain matmuls, which the counter sees one by one
    ids = torch.randint(5, 100, (3, 16))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(ids)
    assert counter.get_total_flops() == cost.forward_flops(config, 3, 16, num_labels=3)


# --- the timer ------------------------------------------------------------------------------------------------

def test_timer_measures_wall_and_cpu_seconds():
    with cost.Timer() as wall:
        time.sleep(0.05)
    assert 0.05 <= wall.seconds < 1.0
    with cost.Timer(cpu_time=True) as cpu:
        time.sleep(0.05)  # sleeping uses no CPU
    assert cpu.seconds < 0.04


def test_time_call_warms_up_then_times_each_repeat():
    calls = []
    seconds = cost.time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(seconds) == 3 and all(s >= 0 for s in seconds)
    with pytest.raises(ValueError, match="repeats >= 1"):
        cost.time_call(lambda: None, repeats=0)


# --- the plan -------------------------------------------------------------------------------------------------

def test_plan_time_is_flops_at_the_stated_utilisation():
    plan = cost.plan_training(BASE, 32, 128, "fp16", "T4", examples=3668, epochs=3, task="MRPC")
    assert plan.steps == math.ceil(3668 / 32) * 3 == 345
    assert plan.step_flops == cost.training_flops(BASE, 32, 128)
    assert plan.seconds_per_step == pytest.approx(plan.step_flops / (65e12 * cost.UTILISATION))
    assert plan.total_seconds == pytest.approx(345 * plan.seconds_per_step)
    assert plan.message.startswith("MRPC: 32 x 128 tokens, fp16 in one step: peak ")
    assert "345 updates at 30% of its 65 TFLOP/s" in plan.message


def test_plan_precision_auto_follows_the_card():
    assert cost.plan_training(BASE, 8, 128, gpu="T4").precision == "fp16"  # a T4 only emulates bf16
    assert cost.plan_training(BASE, 8, 128, gpu="A100-40GB").precision == "bf16"
    with pytest.raises(ValueError, match="T4 has no bf16 in hardware"):
        cost.plan_training(BASE, 8, 128, "bf16", "T4")


def test_plan_memory_is_the_estimate_plus_pytorchs_overhead():
    plan = cost.plan_training(BASE, 32, 384, "fp16", "T4")
    estimate = memory.estimate(BASE, 32, 384, precision="fp16")
    assert plan.peak_bytes == int(estimate.peak * 1.10 + memory.GiB // 2)


def test_a_step_that_does_not_fit_is_split_into_the_fewest_micro_batches_that_do():
    """The effective batch is kept (a divisor of it per micro-batch); the largest micro-batch that fits is chosen."""
    one_step = cost.plan_training(BASE, 32, 384, "fp16", "T4").peak_bytes
    card = cost.Gpu("a card just too small", one_step - 1, {"fp16": 65e12}, native_bf16=False)
    plan = cost.plan_training(BASE, 32, 384, "fp16", card, task="SQuAD")
    assert plan.fits and plan.batch_size == 32 and plan.grad_accumulation == 2 and plan.micro_batch == 16
    assert plan.peak_bytes <= card.memory_bytes and not plan.gradient_checkpointing
    assert "as 2 micro-batches of 16 (gradient accumulation keeps the batch of 32" in plan.message
    large = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    t4 = cost.plan_training(large, 32, 384, "fp16", "T4")  # BERT-Large's SQuAD recipe on a 16 GB T4
    assert (t4.grad_accumulation, t4.micro_batch) == (2, 16) and t4.fits
    assert cost.plan_training(large, 32, 384, "fp16", cost.Gpu("80 GB", 80 * memory.GB, {}, False)).peak_bytes > \
        t4.memory_bytes  # in one step it would not fit


def test_a_step_that_never_fits_says_so():
    card = cost.Gpu("a 2 GB card", 2 * memory.GB, {"fp16": 1e12}, native_bf16=False)
    plan = cost.plan_training(BASE, 32, 384, "fp16", card)
    assert not plan.fits and "does not fit even one example per micro-batch" in plan.message


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown GPU 'T5'"):
        cost.plan_training(BASE, 32, 128, gpu="T5")
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, got 0"):
        cost.plan_training(BASE, 0, 128, gpu="T4")
    with pytest.raises(ValueError, match="utilisation"):
        cost.plan_training(BASE, 32, 128, gpu="T4", utilisation=30)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU here: pass gpu="):
            cost.plan_training(BASE, 32, 128)


# --- the notebooks' full-mode sizes on a T4 and an A100 ---------------------------------------------------------

EXPECTED_RECIPES = {  # notebook task: (checkpoint the config cell names, batch, seq)
    "MRPC": ("bert-base-uncased", 32, 128), "ChnSentiCorp": ("bert-base-chinese", 32, 256),
    "SQuAD v1.1": ("bert-base-uncased", 12, 384), "SWAG": ("bert-base-uncased", 16, 80),
    "CoNLL-2003": ("bert-base-cased", 32, 128), "Resume NER": ("bert-base-chinese", 32, 128),
    "MRPC (17)": ("bert-base-uncased", 32, 128),
}


@pytest.mark.parametrize("recipe", [r for r in run_full.RECIPES if r.task in EXPECTED_RECIPES],
                         ids=lambda r: r.task)
def test_the_recipes_are_the_notebooks_full_mode_config(recipe):
    cfg = run_full.notebook_config(run_full.REPO / "notebooks" / f"{recipe.notebook}.ipynb")
    assert (recipe.checkpoint(cfg), recipe.batch(cfg), recipe.seq(cfg)) == EXPECTED_RECIPES[recipe.task]


@pytest.mark.parametrize("gpu, precision", [("T4", "fp16"), ("A100-40GB", "bf16")])
def test_every_full_mode_run_fits_its_card_in_one_step(gpu, precision):
    """With SDPA and half-precision activations, every configured run fits a 16 GB T4 without accumulation, each
    in under half of it; the largest, ChnSentiCorp at 256 x 32, about a third (SQuAD at ppb's 384 x 12 less; at
    384 x 32 it would need about half, and two thirds in fp32)."""
    plans = {r.task: run_full.plan(r, gpu) for r in run_full.RECIPES}
    for task, plan in plans.items():
        assert plan.precision == precision, task
        assert plan.fits and plan.grad_accumulation == 1 and not plan.gradient_checkpointing, plan.message
        assert plan.peak_bytes < 0.5 * cost.GPUS["T4"].memory_bytes, plan.message
    assert max(plans.values(), key=lambda p: p.peak_bytes) is plans["ChnSentiCorp"]
    assert 3 * memory.GB < plans["SQuAD v1.1"].peak_bytes < plans["ChnSentiCorp"].peak_bytes < 7 * memory.GB
    squad_32 = cost.plan_training(BASE, 32, 384, "fp16" if gpu == "T4" else "bf16", gpu)
    assert 5 * memory.GB < squad_32.peak_bytes < 8 * memory.GB
    fp32 = cost.plan_training(BASE, 32, 384, "fp32", "T4")
    assert 0.6 < fp32.peak_bytes / fp32.memory_bytes < 0.75


def test_squad_at_batch_12_as_pytorch_pretrained_bert_ran_it():
    """ppb's run_squad recipe (batch 12, 2 epochs): same FLOPs per example, 2.7x the updates of batch 32."""
    t4 = cost.plan_training(BASE, 12, 384, "fp16", "T4", examples=87_599, epochs=2)
    a100 = cost.plan_training(BASE, 12, 384, "bf16", "A100-40GB", examples=87_599, epochs=2)
    assert t4.fits and a100.fits and t4.grad_accumulation == a100.grad_accumulation == 1
    assert t4.steps == a100.steps == 2 * math.ceil(87_599 / 12)
    assert t4.total_seconds / a100.total_seconds == pytest.approx(312 / 65)  # the peaks' ratio
    # 3 x 70.67 GFLOP per window of 384 tokens, 14,600 x 12 windows, at 30% of 65 TFLOP/s: about 32 minutes
    assert t4.total_seconds == pytest.approx(14_600 * 12 * 3 * 70.667e9 / (0.3 * 65e12), rel=1e-4)
