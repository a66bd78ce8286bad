"""BertAdam and the schedules against the 2019 formulas computed by hand, AdamW, and a save/resume round trip."""
import io
import logging
import math

import pytest
import torch

from minibert.optimization import (
    BertAdam, ConstantLR, WarmupConstantSchedule, WarmupCosineSchedule, WarmupCosineWithHardRestartsSchedule,
    WarmupLinearSchedule, optimizer_grouped_parameters, warmup_linear_v040,
)
from minibert.course.checks import bertadam_reference_update, check_bertadam_step
from minibert.course.demos import global_vs_per_tensor_clipping


def _param(values):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_three_steps_match_the_formulas_by_hand():
    # p = [1, -2]; warmup 20% of t_total=10; weight decay 0.01; clip each tensor to norm 1
    p = _param([1.0, -2.0])
    opt = BertAdam([p], lr=0.1, warmup=0.2, t_total=10, b1=0.9, b2=0.999, e=1e-6, weight_decay=0.01)
    grads = [[3.0, 4.0], [0.1, -0.2], [0.5, 0.5]]
    multipliers = [0.0, 0.5, 1.0]  # progress 0, 0.1, 0.2 with warmup 0.2: 0/0.2, 0.1/0.2, then (0.2-1)/(0.2-1)
    m, v, w = [0.0, 0.0], [0.0, 0.0], [1.0, -2.0]
    for i, (g, mult) in enumerate(zip(grads, multipliers)):
        norm = math.hypot(*g)
        if norm > 1.0:
            g = [x * 1.0 / (norm + 1e-6) for x in g]
        m = [0.9 * mi + 0.1 * gi for mi, gi in zip(m, g)]
        v = [0.999 * vi + 0.001 * gi * gi for vi, gi in zip(v, g)]
        upd = [mi / (math.sqrt(vi) + 1e-6) + 0.01 * wi for mi, vi, wi in zip(m, v, w)]
        w = [wi - 0.1 * mult * ui for wi, ui in zip(w, upd)]
        p.grad = torch.tensor(grads[i], dtype=torch.float64)
        opt.step()
        st = opt.state[p]
        # float64 tensors vs the formula in Python floats: the same operations, rounding only
        assert st["next_m"].tolist() == pytest.approx(m, rel=1e-12)
        assert st["next_v"].tolist() == pytest.approx(v, rel=1e-12)
        assert p.detach().tolist() == pytest.approx(w, rel=1e-12, abs=1e-15)
    assert opt.state[p]["step"] == 3


def test_first_warmup_step_has_multiplier_zero():
    p = _param([0.5, 0.25])
    opt = BertAdam([p], lr=1.0, warmup=0.1, t_total=100)
    p.grad = torch.tensor([0.6, -0.6], dtype=torch.float64)  # norm 0.85: not clipped
    opt.step()
    assert p.detach().tolist() == [0.5, 0.25]  # multiplier 0 at step 0: weights do not move...
    assert opt.state[p]["next_m"].tolist() == pytest.approx([0.06, -0.06], rel=1e-12)  # ...but the moments do
    p.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt.step()
    assert p.detach()[0].item() < 0.5


def test_clipping_is_per_tensor_not_global():
    big, small = _param([6.0, 8.0]), _param([0.03, 0.04])
    opt = BertAdam([big, small], lr=0.0, schedule="none", weight_decay=0.0, max_grad_norm=1.0)
    big.grad, small.grad = torch.tensor([6.0, 8.0], dtype=torch.float64), torch.tensor([0.03, 0.04],
                                                                                       dtype=torch.float64)
    opt.step()
    # each tensor on its own: big is scaled to norm ~1, small (norm 0.05) is untouched
    # clip_grad_norm_ divides by norm + 1e-6: 1e-6 / 10 relative off the exact 0.6, 0.8
    assert opt.state[big]["next_m"].tolist() == pytest.approx([0.1 * 0.6, 0.1 * 0.8], rel=1e-5)
    assert opt.state[small]["next_m"].tolist() == pytest.approx([0.003, 0.004], rel=1e-12)
    per, glob = global_vs_per_tensor_clipping([torch.tensor([6.0, 8.0]), torch.tensor([0.03, 0.04])])
    # untouched by per-tensor clipping: float32 storage of 0.03 (rel 1e-6)
    assert per[1].tolist() == pytest.approx([0.03, 0.04])
    assert glob[1].tolist() == pytest.approx([0.03 / 10.00025, 0.04 / 10.00025], rel=1e-4)  # global shrinks it


def test_no_bias_correction_unlike_adamw():
    torch.manual_seed(0)
    g = torch.randn(5, dtype=torch.float64)
    a, b = _param([0.0] * 5), _param([0.0] * 5)
    bert = BertAdam([a], lr=1e-3, schedule=None, e=0.0, weight_decay=0.0, max_grad_norm=-1)
    adamw = torch.optim.AdamW([b], lr=1e-3, eps=0.0, weight_decay=0.0)
    # first step: AdamW moves every weight by lr * sign(g); BertAdam by lr * (1-b1)/sqrt(1-b2) * sign(g) = 3.16 lr
    a.grad, b.grad = g.clone(), g.clone()
    bert.step()
    adamw.step()
    ratio = (a.detach() / b.detach())
    # float64 with e=0: the ratio is exact up to rounding
    assert torch.allclose(ratio, torch.full_like(ratio, 0.1 / math.sqrt(0.001)), rtol=1e-12)
    # every step t: BertAdam's update times sqrt(1-b2^t)/(1-b1^t) is AdamW's update (same m, v)
    for t in range(2, 8):
        gt = torch.randn(5, dtype=torch.float64)
        a0, b0 = a.detach().clone(), b.detach().clone()
        a.grad, b.grad = gt.clone(), gt.clone()
        bert.step()
        adamw.step()
        corr = math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        # float64, the same m and v: differences from the order of operations only
        assert torch.allclose((a.detach() - a0) * corr, b.detach() - b0, rtol=1e-9, atol=0)
        assert not torch.allclose(a.detach() - a0, b.detach() - b0, rtol=1e-2)


def test_schedules_by_hand():
    lin = WarmupLinearSchedule(warmup=0.1, t_total=100)
    # schedules are float64 formulas: approx (rel 1e-6) absorbs rounding only
    assert [lin.get_lr(s) for s in (0, 5, 10, 55, 100)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    assert [lin(x) for x in (0.05, 0.325)] == pytest.approx([0.5, 0.75])
    const = WarmupConstantSchedule(warmup=0.2, t_total=10)
    assert [const.get_lr(s) for s in (1, 2, 9, 30)] == pytest.approx([0.5, 1.0, 1.0, 1.0])
    cos = WarmupCosineSchedule(warmup=0.0, t_total=100)
    assert [cos.get_lr(s) for s in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0])
    hard = WarmupCosineWithHardRestartsSchedule(warmup=0.0, t_total=100, cycles=2)
    assert [hard.get_lr(s) for s in (0, 25, 49, 50, 75)] == pytest.approx(
        [1.0, 0.5, 0.5 * (1 + math.cos(math.pi * 0.98)), 1.0, 0.5])
    assert ConstantLR(t_total=10).get_lr(1000) == 1.0
    assert WarmupLinearSchedule(warmup=0.1, t_total=-1).get_lr(12345) == 1.0  # t_total=-1: constant


def test_past_t_total_warns_and_stays_non_negative(caplog):
    lin = WarmupLinearSchedule(warmup=0.1, t_total=10)
    with caplog.at_level(logging.WARNING, logger="minibert.optimization"):
        values = [lin.get_lr(s) for s in range(10, 30)]
    assert min(values) == 0.0
    assert "Training beyond specified 't_total'" in caplog.text
    assert caplog.text.count("Training beyond") == 1  # once per schedule, not once per step as in 0.6.2
    assert warmup_linear_v040(1.5) == pytest.approx(-0.5)  # the 0.4.0 formula went negative


def test_training_past_t_total_warns_once_per_optimizer(caplog):
    model = torch.nn.Sequential()
    model.add_module("dense", torch.nn.Linear(3, 3))
    model.add_module("LayerNorm", torch.nn.LayerNorm(3))  # BERT's (TensorFlow) name, which NO_DECAY matches
    groups = optimizer_grouped_parameters(model, weight_decay=0.01)
    assert [len(g["params"]) for g in groups] == [1, 3]  # dense.weight | dense.bias, LayerNorm.weight and .bias
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    opt = BertAdam(groups, lr=0.1, warmup=0.1, t_total=3)
    with caplog.at_level(logging.WARNING, logger="minibert.optimization"):
        for _ in range(12):
            model(torch.ones(2, 3)).sum().backward()
            opt.step()
            opt.zero_grad()
    assert caplog.text.count("Training beyond specified 't_total'") == 1


def test_lr_multiplier_in_the_optimizer_is_clamped_past_t_total():
    p = _param([1.0])
    opt = BertAdam([p], lr=0.1, warmup=0.0, t_total=2, weight_decay=0.0)
    for _ in range(2):
        p.grad = torch.tensor([1.0], dtype=torch.float64)
        opt.step()
    before = p.detach().clone()
    for _ in range(3):
        p.grad = torch.tensor([1.0], dtype=torch.float64)
        opt.step()
    assert torch.equal(p.detach(), before)  # lr 0 past t_total: no move, and never backwards


def test_betas_alias_and_errors():
    p = _param([1.0])
    opt = BertAdam([p], lr=1e-3, betas=(0.8, 0.95))
    assert (opt.param_groups[0]["b1"], opt.param_groups[0]["b2"]) == (0.8, 0.95)
    with pytest.raises(ValueError, match="Invalid schedule parameter: 'linear'"):
        BertAdam([p], lr=1e-3, schedule="linear")
    with pytest.raises(ValueError, match=r"warmup=10 must be a fraction of t_total"):
        BertAdam([p], lr=1e-3, warmup=10, t_total=100)
    with pytest.raises(ValueError, match="Invalid b2"):
        BertAdam([p], lr=1e-3, b2=1.0)


def _train(model, opt, xs, ys):
    for x, y in zip(xs, ys):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def test_state_dict_round_trip_resumes_the_same_trajectory():
    torch.manual_seed(0)
    xs, ys = torch.randn(10, 8, 3), torch.randn(10, 8, 1)
    model = torch.nn.Linear(3, 1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = BertAdam(model.parameters(), lr=0.05, warmup=0.2, t_total=10)
    _train(model, opt, xs, ys)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    model2 = torch.nn.Linear(3, 1)
    model2.load_state_dict(start)
    opt2 = BertAdam(model2.parameters(), lr=0.05, warmup=0.2, t_total=10)
    _train(model2, opt2, xs[:4], ys[:4])
    buf = io.BytesIO()
    torch.save({"model": model2.state_dict(), "opt": opt2.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # plain data only: the schedule is stored as a dict
    model3 = torch.nn.Linear(3, 1)
    model3.load_state_dict(saved["model"])
    opt3 = BertAdam(model3.parameters(), lr=0.05, warmup=0.2, t_total=10)
    opt3.load_state_dict(saved["opt"])
    assert isinstance(opt3.param_groups[0]["schedule"], WarmupLinearSchedule)
    _train(model3, opt3, xs[4:], ys[4:])
    for k in straight:
        assert torch.equal(model3.state_dict()[k], straight[k]), k


def test_check_bertadam_step_names_the_mistake():
    check_bertadam_step(bertadam_reference_update)  # ours passes

    def adamw_like(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm):
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        return p - lr * (m / (1 - b1)) / ((v / (1 - b2)).sqrt() + e), m, v

    with pytest.raises(AssertionError, match="no bias correction"):
        check_bertadam_step(adamw_like)

    def no_clip(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm):
        return bertadam_reference_update(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm=-1)

    with pytest.raises(AssertionError, match="per-tensor gradient clipping"):
        check_bertadam_step(no_clip)


def test_values_set_per_param_group_are_checked_and_name_the_group():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    with pytest.raises(TypeError, match=r"param group 1: weight_decay must be a number, got '0\.0'"):
        BertAdam([{"params": [a]}, {"params": [b], "weight_decay": "0.0"}], lr=0.1)
    with pytest.raises(ValueError, match=r"param group 0: lr=-0\.1 must be in \[0, inf\)"):
        BertAdam([{"params": [a], "lr": -0.1}], lr=0.1)
    with pytest.raises(ValueError, match=r"param group 1: b2=1\.0 must be in \[0, 1\)"):
        BertAdam([{"params": [a]}, {"params": [b], "b2": 1.0}], lr=0.1)
    with pytest.raises(ValueError, match="param group 0: weight_decay=nan is not finite"):
        BertAdam([{"params": [a], "weight_decay": float("nan")}], lr=0.1)
    # a valid override is kept, and the other group gets the default
    opt = BertAdam([{"params": [a], "weight_decay": 0.0}, {"params": [b]}], lr=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.01]


@pytest.mark.parametrize("max_grad_norm", [1.0, -1])  # the check reads the clipping norm, or the gradient
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_gradient_skips_that_tensors_update_and_warns_once(poison, max_grad_norm, caplog):
    """A bare loop (as notebook 09 writes one) has no step-skipping of its own: one NaN must not ruin the run."""
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2, 2))
    opt = BertAdam([a, b], lr=0.1, warmup=-1, t_total=-1, schedule=None, weight_decay=0.01,
                   max_grad_norm=max_grad_norm)
    a.grad, b.grad = torch.ones(3), torch.ones(2, 2)
    opt.step()  # a normal step first, so that the moments are not zero
    before = {"a": a.detach().clone(), "b": b.detach().clone(), "m": opt.state[a]["next_m"].clone(),
              "v": opt.state[a]["next_v"].clone()}
    with caplog.at_level(logging.WARNING, logger="minibert.optimization"):
        for _ in range(3):
            a.grad, b.grad = torch.tensor([1.0, poison, 1.0]), torch.ones(2, 2)
            opt.step()
    assert torch.equal(a, before["a"]) and torch.equal(opt.state[a]["next_m"], before["m"]) \
        and torch.equal(opt.state[a]["next_v"], before["v"])  # skipped: unchanged, and finite
    assert not torch.equal(b, before["b"])  # the other tensor of the same step was updated
    assert caplog.text.count("holds NaN or Inf") == 1  # once per optimizer, not once per step
    assert "param group 0, tensor 0 (shape (3,))" in caplog.text
    a.grad = torch.ones(3)
    opt.step()  # and training goes on
    assert torch.isfinite(a).all() and not torch.equal(a, before["a"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: on a CPU reading a flag costs nothing")
def test_skipping_a_non_finite_update_never_waits_for_the_gpu(caplog):
    a = torch.nn.Parameter(torch.ones(1000, device="cuda"))
    opt = BertAdam([a], lr=0.1, warmup=-1, t_total=-1, schedule=None)
    a.grad = torch.ones(1000, device="cuda")
    opt.step()  # the first step allocates the moments
    a.grad[3] = float("nan")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside step raises
    try:
        with caplog.at_level(logging.WARNING, logger="minibert.optimization"):
            opt.step()
            torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize()
            a.grad = torch.ones(1000, device="cuda")
            torch.cuda.set_sync_debug_mode("error")
            opt.step()  # finds the earlier step's flags on the host: warns, still without waiting
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(a).all() and caplog.text.count("holds NaN or Inf") == 1
