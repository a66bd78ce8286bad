"""BertAdam and its learning-rate schedules, with the exact semantics of pytorch-pretrained-bert 0.6.2 (2019).

BERT (Devlin et al. 2019, appendix A.2) was trained with "Adam with L2 weight decay 0.01, learning rate warmup
over the first 10,000 steps and linear decay". The original TensorFlow `AdamWeightDecayOptimizer`, ported as
`BertAdam`, differs from `torch.optim.AdamW` in three ways that this module keeps on purpose:

1. no bias correction of the moments (AdamW divides m and v by 1 - beta^t). With b1=0.9, b2=0.999 the update
   is (1 - b1^t) / sqrt(1 - b2^t) times AdamW's: 3.2x at the first step, 6.5x at step 10, 3.2x at step 100,
   1.3x at step 1000 -- early steps are *larger*, one more reason BERT needs warmup;
2. weight decay is *added to the update* (`update += weight_decay * p`), then scaled by the scheduled lr
   (decoupled from the gradient, as in Loshchilov & Hutter's AdamW, but multiplied by the lr schedule);
3. gradients are clipped to `max_grad_norm` **per parameter tensor**, not by the global norm of all gradients.

The schedule multiplier is evaluated at the step count *before* the update, so the first warmup step has
multiplier 0 and does not move the weights (only the moments).
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer

logger = logging.getLogger(__name__)

__all__ = [
    "WarmupCosineWithWarmupRestartsSchedule", "_LRSchedule",
    "LRSchedule", "ConstantLR", "WarmupConstantSchedule", "WarmupLinearSchedule", "WarmupCosineSchedule",
    "WarmupCosineWithHardRestartsSchedule", "SCHEDULES", "BertAdam", "NO_DECAY", "optimizer_grouped_parameters",
    "warmup_linear_v040",
]


# ---------------------------------------------------------------------------------------------------------------
# Schedules: multiplier of the base lr as a function of progress = step / t_total.
# ---------------------------------------------------------------------------------------------------------------
class LRSchedule:
    """Base class (the original's `_LRSchedule`): `get_lr(step)` -> multiplier, `__call__(progress)` -> multiplier.

    `t_total < 0` means "no schedule": the multiplier is 1 at every step. `warmup` is a *fraction* of t_total.
    """

    name = "base"
    warn_t_total = False  # schedules that decay to 0 at t_total warn when training goes past it

    def __init__(self, warmup: float = 0.002, t_total: float = -1, **kw: Any) -> None:
        _check_number("t_total", t_total)
        _check_number("warmup", warmup)
        if t_total == 0:
            raise ValueError("t_total=0: the schedule is a function of step / t_total; pass the number of updates "
                             "the run makes (e.g. training.num_update_steps(...)), or t_total=-1 for a constant "
                             "learning rate")
        if t_total < 0 and type(self) is not ConstantLR:  # no point warning when no schedule was asked for
            logger.warning("t_total value of %s results in schedule not being applied", t_total)
        if not (0.0 <= warmup < 1.0 or warmup == -1):
            raise ValueError(f"warmup={warmup} must be a fraction of t_total in [0, 1) (or -1 for none); "
                             f"for 1000 warmup steps out of 10000 pass warmup=0.1")
        self.warmup = float(max(warmup, 0.0))
        self.t_total = float(t_total)
        self.warned_for_t_total_at_progress = -1.0

    def get_lr(self, step: int, nowarn: bool = False) -> float:
        """Multiplier at optimizer step `step` (0-based, the count of updates done before this one)."""
        if self.t_total < 0:
            return 1.0
        progress = float(step) / self.t_total
        ret = self(progress)
        # 0.6.2 warned at every step past t_total (hundreds of lines); once per schedule, i.e. per optimizer
        if not nowarn and self.warn_t_total and progress > 1.0 and self.warned_for_t_total_at_progress < 0:
            logger.warning("Training beyond specified 't_total'. Learning rate multiplier set to %s. "
                           "Please set 't_total' of %s correctly.", ret, type(self).__name__)
            self.warned_for_t_total_at_progress = progress
        return ret

    def __call__(self, progress: float) -> float:
        return self.get_lr_(progress)

    def get_lr_(self, progress: float) -> float:
        raise NotImplementedError

    def _warm(self, progress: float) -> float:
        return progress / self.warmup

    def to_dict(self) -> dict:
        """Plain-data form used in `BertAdam.state_dict()` (loadable with `torch.load(weights_only=True)`)."""
        d = {"name": self.name, "warmup": self.warmup, "t_total": self.t_total,
             "warned_for_t_total_at_progress": self.warned_for_t_total_at_progress}
        if hasattr(self, "cycles"):
            d["cycles"] = self.cycles
        return d

    @staticmethod
    def from_dict(d: dict) -> "LRSchedule":
        if d.get("name") not in SCHEDULES:
            raise ValueError(f"unknown schedule {d.get('name')!r} in the optimizer state; known schedules: "
                             f"{sorted(k for k in SCHEDULES if k)}. Was the state saved by another library or "
                             "version? Build BertAdam with the schedule you want and do not load this state")
        cls = SCHEDULES[d["name"]]
        sched = cls.__new__(cls)  # skip __init__: no "not applied" warning again on load
        sched.warmup, sched.t_total = float(d["warmup"]), float(d["t_total"])
        sched.warned_for_t_total_at_progress = float(d.get("warned_for_t_total_at_progress", -1.0))
        if "cycles" in d:
            sched.cycles = d["cycles"]
        return sched

    def __repr__(self) -> str:
        return f"{type(self).__name__}(warmup={self.warmup}, t_total={self.t_total:g})"


_LRSchedule = LRSchedule  # pytorch-pretrained-bert 0.6.2's name of the base class


def _check_number(name: str, value: Any) -> None:
    """TypeError for a value that is not a real number (e.g. a string from a command line), ValueError for NaN
    or infinity: either would otherwise fail at the first step, or silently turn the weights into NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = f"; pass {name}=float({value!r})" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){hint}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} is not finite; pass a finite number")


class ConstantLR(LRSchedule):
    """Multiplier 1 everywhere (schedule='none' or None)."""

    name = "none"

    def get_lr_(self, progress: float) -> float:
        return 1.0


class WarmupConstantSchedule(LRSchedule):
    """Linear warmup from 0 to 1 over `warmup` of t_total, then 1."""

    name = "warmup_constant"

    def get_lr_(self, progress: float) -> float:
        if progress < self.warmup:
            return self._warm(progress)
        return 1.0


class WarmupLinearSchedule(LRSchedule):
    """BERT's schedule: linear warmup to 1, then linear decay to 0 at t_total, and 0 after (never negative)."""

    name = "warmup_linear"
    warn_t_total = True

    def get_lr_(self, progress: float) -> float:
        if progress < self.warmup:
            return self._warm(progress)
        return max((progress - 1.0) / (self.warmup - 1.0), 0.0)


class WarmupCosineSchedule(LRSchedule):
    """Linear warmup, then cosine decay over `cycles` periods (0.5 = half a cosine, 1 -> 0 at t_total)."""

    name = "warmup_cosine"
    warn_t_total = True

    def __init__(self, warmup: float = 0.002, t_total: float = -1, cycles: float = 0.5, **kw: Any) -> None:
        super().__init__(warmup=warmup, t_total=t_total, **kw)
        self.cycles = cycles

    def get_lr_(self, progress: float) -> float:
        if progress < self.warmup:
            return self._warm(progress)
        progress = (progress - self.warmup) / (1 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * self.cycles * 2 * progress))


class WarmupCosineWithHardRestartsSchedule(WarmupCosineSchedule):
    """Linear warmup, then `cycles` cosine decays from 1 to 0, each restarting at 1 (SGDR, Loshchilov & Hutter)."""

    name = "warmup_cosine_with_hard_restarts"

    def __init__(self, warmup: float = 0.002, t_total: float = -1, cycles: float = 1.0, **kw: Any) -> None:
        super().__init__(warmup=warmup, t_total=t_total, cycles=cycles, **kw)
        if cycles < 1.0:
            raise ValueError(f"cycles={cycles} must be >= 1 for hard restarts")

    def get_lr_(self, progress: float) -> float:
        if progress < self.warmup:
            return self._warm(progress)
        progress = (progress - self.warmup) / (1 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * ((self.cycles * progress) % 1)))


class WarmupCosineWithWarmupRestartsSchedule(WarmupCosineWithHardRestartsSchedule):
    """`cycles` cosine decays from 1 to 0, each after its own linear warmup (0.6.2): `warmup` is a fraction of
    t_total, so each cycle warms up for `warmup * cycles` of its length."""

    name = "warmup_cosine_warmup_restarts"

    def __init__(self, warmup: float = 0.002, t_total: float = -1, cycles: float = 1.0, **kw: Any) -> None:
        if warmup * cycles >= 1.0:
            raise ValueError(f"warmup * cycles = {warmup * cycles:g} must be < 1: each of the {cycles:g} cycles "
                             f"warms up for warmup={warmup:g} of t_total; lower warmup or cycles")
        super().__init__(warmup=warmup * cycles if warmup >= 0 else warmup, t_total=t_total, cycles=cycles, **kw)

    def get_lr_(self, progress: float) -> float:
        progress = progress * self.cycles % 1.0
        if progress < self.warmup:
            return self._warm(progress)
        progress = (progress - self.warmup) / (1 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES: dict[Any, type[LRSchedule]] = {
    None: ConstantLR,
    "none": ConstantLR,
    "warmup_constant": WarmupConstantSchedule,
    "warmup_linear": WarmupLinearSchedule,
    "warmup_cosine": WarmupCosineSchedule,
    "warmup_cosine_with_hard_restarts": WarmupCosineWithHardRestartsSchedule,
    "warmup_cosine_warmup_restarts": WarmupCosineWithWarmupRestartsSchedule,
}


def warmup_linear_v040(x: float, warmup: float = 0.002) -> float:
    """`warmup_linear` of pytorch-pretrained-bert 0.4.0 to 0.6.1 (only 0.6.2 clamps at 0): `1 - x` after warmup,
    which goes *negative* past t_total (the lr flips sign and the optimizer climbs the loss). Kept only to
    demonstrate the t_total pitfall."""
    if x < warmup:
        return x / warmup
    return 1.0 - x


# ---------------------------------------------------------------------------------------------------------------
# Parameter groups
# ---------------------------------------------------------------------------------------------------------------
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")  # parameter names weight decay skips, as in 2019


def optimizer_grouped_parameters(model: torch.nn.Module, weight_decay: float = 0.01) -> list[dict]:
    """The two parameter groups of the 2019 scripts' ``optimizer_grouped_parameters``: every trainable weight
    with ``weight_decay``, biases and LayerNorm parameters (names containing one of NO_DECAY) with none.
    Pass the result to BertAdam (or any torch optimizer); an empty group is left out."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


# ---------------------------------------------------------------------------------------------------------------
# BertAdam
# ---------------------------------------------------------------------------------------------------------------
class _DeviceFlags:
    """One step's skipped-update flags, copied to the host without waiting: ``ready()`` says when they are there."""

    def __init__(self, flags: torch.Tensor, names: list[tuple[int, int, tuple[int, ...]]]) -> None:
        self.names = names
        self.event = None
        if flags.device.type == "cuda":
            self.host = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
            self.host.copy_(flags, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = flags.cpu()  # on a CPU this costs nothing (and other devices are read at once)

    def ready(self) -> bool:
        return self.event is None or self.event.query()


class BertAdam(Optimizer):
    """Adam without bias correction, with decoupled weight decay and per-tensor clipping (BERT's optimizer).

    Args: lr (required); warmup: fraction of t_total (-1: none); t_total: total number of optimizer steps
    (-1: constant lr); schedule: a name in SCHEDULES or an LRSchedule object; b1, b2 (or betas=(b1, b2));
    e: epsilon added to sqrt(v); weight_decay: added to the update as weight_decay * p (put biases and
    LayerNorm weights in a group with weight_decay=0.0); max_grad_norm: clip each parameter's gradient to this
    L2 norm on its own (-1 or 0: no clipping).
    """

    def __init__(self, params: Iterable, lr: float, warmup: float = -1, t_total: int = -1,
                 schedule: str | LRSchedule | None = "warmup_linear", b1: float = 0.9, b2: float = 0.999,
                 e: float = 1e-6, weight_decay: float = 0.01, max_grad_norm: float = 1.0,
                 betas: tuple[float, float] | None = None, **kwargs: Any) -> None:
        if betas is not None:
            b1, b2 = betas
        for name, value in (("lr", lr), ("b1", b1), ("b2", b2), ("e", e), ("weight_decay", weight_decay),
                            ("max_grad_norm", max_grad_norm)):
            _check_number(name, value)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr} - should be >= 0.0")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay={weight_decay} must be >= 0 (BERT uses 0.01; 0 turns it off): a "
                             "negative decay pushes the weights away from zero")
        if not isinstance(schedule, LRSchedule) and schedule not in SCHEDULES:
            raise ValueError(f"Invalid schedule parameter: {schedule!r}; expected one of "
                             f"{sorted(k for k in SCHEDULES if k)} or an LRSchedule object")
        if not 0.0 <= b1 < 1.0:
            raise ValueError(f"Invalid b1 parameter: {b1} - should be in [0.0, 1.0[")
        if not 0.0 <= b2 < 1.0:
            raise ValueError(f"Invalid b2 parameter: {b2} - should be in [0.0, 1.0[")
        if not e >= 0.0:
            raise ValueError(f"Invalid epsilon value: {e} - should be >= 0.0")
        if not isinstance(schedule, LRSchedule):
            schedule = SCHEDULES[schedule](warmup=warmup, t_total=t_total)
        elif warmup != -1 or t_total != -1:
            logger.warning("warmup and t_total on the optimizer are ineffective when an LRSchedule object is "
                           "provided as schedule; set them on the schedule object instead.")
        defaults = dict(lr=lr, schedule=schedule, b1=b1, b2=b2, e=e, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)
        self._pending_skips: list[_DeviceFlags] = []  # which tensors' updates were skipped, on their way to the host
        self._warned_skip = False
        self._betas_cache: dict[tuple, torch.Tensor] = {}

    def __setstate__(self, state: dict) -> None:  # unpickled or deep-copied: nothing pending
        super().__setstate__(state)
        self._pending_skips, self._warned_skip, self._betas_cache = [], False, {}

    def add_param_group(self, param_group: dict) -> None:
        """Add a group, checking the values it sets itself (e.g. ``weight_decay`` of the no-decay group) as the
        constructor checks its defaults: a typo such as ``"weight_decay": "0.01"`` or a negative ``lr`` in one
        group would otherwise fail at the first step or quietly train that group wrongly."""
        where = f"param group {len(self.param_groups)}"
        for name in ("lr", "b1", "b2", "e", "weight_decay", "max_grad_norm"):
            if name in param_group:
                _check_number(f"{where}: {name}", param_group[name])
        bounds = {"lr": (0.0, math.inf), "weight_decay": (0.0, math.inf), "e": (0.0, math.inf),
                  "b1": (0.0, 1.0), "b2": (0.0, 1.0)}
        for name, (low, high) in bounds.items():
            if name in param_group and not low <= param_group[name] < high:
                raise ValueError(f"{where}: {name}={param_group[name]} must be in [{low:g}, {high:g})")
        if "schedule" in param_group and not isinstance(param_group["schedule"], LRSchedule):
            raise ValueError(f"{where}: schedule must be an LRSchedule object, got {param_group['schedule']!r}")
        super().add_param_group(param_group)

    def get_lr(self) -> list[float]:
        """Current scheduled lr of every parameter that has taken a step (as the original)."""
        lrs = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    return [0.0]
                lrs.append(group["lr"] * group["schedule"].get_lr(state["step"], nowarn=True))
        return lrs

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._report_skipped()
        finites, names = [], []
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("BertAdam does not support sparse gradients; use SparseAdam instead")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["next_m"] = torch.zeros_like(p)  # exp_avg, m
                    state["next_v"] = torch.zeros_like(p)  # exp_avg_sq, v
                next_m, next_v = state["next_m"], state["next_v"]
                # A NaN or Inf in the gradient would make the weights and both moments NaN for good. The update of
                # such a tensor is skipped, decided on the device (as GradScaler's fused optimizers do), so that no
                # step waits for a GPU: with `finite` False the gradient is zeroed (in place, as the clipping is),
                # the moments decay by 1 (keep their values) and the step size is 0. The step count still advances, as
                # the schedule does.
                b1, b2 = group["b1"], group["b2"]
                if group["max_grad_norm"] > 0:
                    # per tensor, as the original: each parameter's gradient is clipped on its own
                    norm = torch.nn.utils.clip_grad_norm_(p, group["max_grad_norm"])
                    finite = torch.isfinite(norm)  # 0-d bool on p's device: the norm is NaN or Inf with the gradient
                else:
                    finite = torch.isfinite(grad).all()
                grad.masked_fill_(~finite, 0.0)
                decay_m, decay_v = torch.where(finite, self._betas(p, b1, b2), 1.0)
                next_m.mul_(decay_m).add_(grad, alpha=1 - b1)
                next_v.mul_(decay_v).addcmul_(grad, grad, value=1 - b2)
                update = next_m / next_v.sqrt().add_(group["e"])  # no bias correction
                if group["weight_decay"] > 0.0:
                    update.add_(p, alpha=group["weight_decay"])  # decoupled weight decay: += weight_decay * p
                lr_scheduled = group["lr"] * group["schedule"].get_lr(state["step"])  # step count BEFORE update
                p.addcmul_(update, torch.where(finite, p.new_full((), -lr_scheduled), 0.0))  # p -= lr * update, or not
                state["step"] += 1
                finites.append(finite)
                names.append((g, i, tuple(p.shape)))
        if finites and not self._warned_skip:
            self._pending_skips.append(_DeviceFlags(~torch.stack(finites), names))
            self._report_skipped()
        return loss

    def _betas(self, p: torch.Tensor, b1: float, b2: float) -> torch.Tensor:
        """(b1, b2) as a tensor of p's dtype on p's device, made once (filled there: nothing is copied from the
        host, and the values are exactly those the python floats give p's dtype)."""
        key = (p.device, p.dtype, b1, b2)
        if key not in self._betas_cache:
            self._betas_cache[key] = torch.stack([p.new_full((), b1), p.new_full((), b2)])
        return self._betas_cache[key]

    def _report_skipped(self) -> None:
        """Warn once per optimizer that an update was skipped, from the flags of the steps whose flags have
        reached the host (at once on a CPU; on a GPU a later step finds the copy done: nothing waits)."""
        while self._pending_skips and not self._warned_skip and self._pending_skips[0].ready():
            flags = self._pending_skips.pop(0)
            if flags.host.any():
                g, i, shape = flags.names[int(flags.host.nonzero()[0, 0])]
                first = f"param group {g}, tensor {i} (shape {shape})"
                logger.warning("BertAdam: the gradient of %s holds NaN or Inf, so that tensor's update was skipped "
                               "(its weights and moments are unchanged; %d tensor(s) in that step). Said once per "
                               "optimizer: look for a loss that overflowed (fp16 without a GradScaler) or a learning "
                               "rate that is too high", first, int(flags.host.sum()))
                self._warned_skip = True
        if self._warned_skip:
            self._pending_skips.clear()

    def state_dict(self) -> dict:
        """Like Optimizer.state_dict, with each schedule stored as plain data (see LRSchedule.to_dict)."""
        sd = super().state_dict()
        for g in sd["param_groups"]:
            if isinstance(g.get("schedule"), LRSchedule):
                g["schedule"] = g["schedule"].to_dict()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        groups = []
        for g in state_dict["param_groups"]:
            g = dict(g)
            if isinstance(g.get("schedule"), dict):
                g["schedule"] = LRSchedule.from_dict(g["schedule"])
            groups.append(g)
        state_dict["param_groups"] = groups
        super().load_state_dict(state_dict)
