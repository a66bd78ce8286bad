"""What a training run costs, said before it runs: FLOPs, time on a GPU, memory, and a plan that fits the card.

One FLOP formula and one timer, used by ``benchmarks/`` and by the notebooks (16, 17), and a planner that every
full-mode notebook calls before it trains::

    plan = plan_training(model.config, batch_size=32, seq_len=384, examples=88_641, epochs=3, task="SQuAD v1.1")
    print(plan.message)   # peak memory, time at a stated utilisation, micro-batches if the batch does not fit
    args = TrainingArguments(train_batch_size=plan.batch_size, gradient_accumulation_steps=plan.grad_accumulation)

FLOPs count the matmuls, 2 per multiply-add (Kaplan et al. 2020, section 2.1): per layer and token 2 (4H^2 + 2HI)
for Q, K, V, the attention output and the feed-forward pair, plus 4 S H for the attention scores and the
context; the pooler and a classifier once per sequence. The embedding lookups, LayerNorm, softmax, GELU and
dropout are not matmuls: a few per cent of the time on a GPU. Training counts 3x the forward (the backward pass
does two matmuls for each one of the forward: the input's gradient and the weight's).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from minibert import memory
from minibert.config import BertConfig

# The share of the card's dense peak that BERT fine-tuning is assumed to reach (model FLOPs utilization, MFU). An
# assumption, not a measurement: `python benchmarks/bench_training_speed.py` measures it on a GPU. Batches padded
# to their longest member are shorter than max_seq_length, so a plan at the full length overstates the time.
UTILISATION = 0.3


@dataclass(frozen=True)
class Gpu:
    """A card: its memory as ``torch.cuda.get_device_properties(0).total_memory`` reports it, and its dense peak
    FLOP/s by precision (vendor data sheets, without sparsity). "fp32" is plain fp32 (PyTorch's default for
    matmuls), "tf32" what fp32 matmuls reach with ``torch.backends.cuda.matmul.allow_tf32 = True``; a precision
    the card lacks in hardware (bf16 on a T4) is absent."""

    name: str
    memory_bytes: int
    peak_flops: Mapping[str, float]
    native_bf16: bool

    def peak(self, precision: str) -> float:
        if precision not in self.peak_flops:
            raise ValueError(f"the {self.name} has no {precision} in hardware; use one of {sorted(self.peak_flops)}")
        return self.peak_flops[precision]


_AMPERE = {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}
_HOPPER = {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12}  # SXM
GPUS: dict[str, Gpu] = {
    "T4": Gpu("T4", memory.CARDS["16 GB T4"], {"fp32": 8.1e12, "fp16": 65e12}, native_bf16=False),
    "V100": Gpu("V100", 16 * memory.GB, {"fp32": 15.7e12, "fp16": 125e12}, native_bf16=False),
    "L4": Gpu("L4", 24 * memory.GB, {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "fp16": 121e12},
              native_bf16=True),
    "A100-40GB": Gpu("A100 40 GB", memory.CARDS["40 GB A100"], _AMPERE, native_bf16=True),
    "A100-80GB": Gpu("A100 80 GB", memory.CARDS["80 GB A100/H100"], _AMPERE, native_bf16=True),
    "H100": Gpu("H100", memory.CARDS["80 GB A100/H100"], _HOPPER, native_bf16=True),
    "H200": Gpu("H200", 141 * memory.GB, _HOPPER, native_bf16=True),
}


def detect_gpu(device: torch.device | str | None = None) -> Gpu | None:
    """The :data:`GPUS` entry of this machine's CUDA card (its real memory), or None without a GPU. A card the
    table does not know keeps its memory and gets no peak (plans then say nothing about time)."""
    if not torch.cuda.is_available():
        return None
    device = torch.device(device or "cuda")
    name = torch.cuda.get_device_name(device)
    total = torch.cuda.get_device_properties(device).total_memory
    for key in ("H200", "H100", "A100", "L4", "T4", "V100"):
        if key in name:
            known = GPUS["A100-40GB" if key == "A100" else key]
            return Gpu(name, total, known.peak_flops, known.native_bf16)
    major, _ = torch.cuda.get_device_capability(device)
    return Gpu(name, total, {}, native_bf16=major >= 8)


# ----------------------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------------------

def forward_flops(config: BertConfig, batch_size: int, seq_len: int, num_labels: int | None = 2,
                  pooler: bool = True, masked_tokens: int = 0) -> float:
    """Matmul FLOPs of one forward pass over (batch_size, seq_len) tokens: the encoder; the pooler when
    ``pooler``; a classifier of ``num_labels`` per sequence (None: none); and, with ``masked_tokens``, the MLM
    head's transform and vocabulary projection at that many positions."""
    H, I, L, V = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    tokens = batch_size * seq_len
    encoder = L * (2 * tokens * (4 * H * H + 2 * H * I) + 4 * batch_size * seq_len * seq_len * H)
    head = (2 * batch_size * H * H if pooler else 0) + (2 * batch_size * H * num_labels if num_labels else 0)
    mlm = 2 * masked_tokens * (H * H + H * V)
    return float(encoder + head + mlm)


def training_flops(config: BertConfig, batch_size: int, seq_len: int, gradient_checkpointing: bool = False,
                   **kwargs: Any) -> float:
    """FLOPs of one training step: 3x :func:`forward_flops` (4x with gradient checkpointing, which runs each
    layer's forward again during the backward pass)."""
    return (4.0 if gradient_checkpointing else 3.0) * forward_flops(config, batch_size, seq_len, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# The timer
# ----------------------------------------------------------------------------------------------------------

class Timer:
    """Seconds spent in a block, GPU work included: ``with Timer(device) as t: ...`` then ``t.seconds``.

    CUDA runs kernels asynchronously, so the clock alone would measure their launch: the timer synchronizes the
    device before it starts and before it stops. ``cpu_time=True`` counts this process's CPU seconds instead of
    wall seconds (``time.process_time``): with one thread, time other programs hold the core does not count."""

    def __init__(self, device: torch.device | str | None = None, cpu_time: bool = False) -> None:
        self.device = torch.device(device) if device is not None else None
        self.clock = time.process_time if cpu_time else time.perf_counter
        self.seconds = float("nan")

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device is not None and self.device.type == "mps":
            torch.mps.synchronize()

    def __enter__(self) -> "Timer":
        self._sync()
        self._start = self.clock()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sync()
        self.seconds = self.clock() - self._start


def time_call(fn: Callable[[], Any], repeats: int = 1, warmup: int = 1, device: torch.device | str | None = None,
              cpu_time: bool = False) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` calls that are not timed (the first call
    allocates, picks kernels, compiles). Report the median or the best, never the first."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_call needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        with Timer(device, cpu_time) as timer:
            fn()
        seconds.append(timer.seconds)
    return seconds


# ----------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingPlan:
    """How a run will go on one card: the batch kept, split into micro-batches if it must be, its peak memory and
    its time. ``message`` says it in one line."""

    task: str
    gpu: str
    precision: str
    batch_size: int  # examples per optimizer update, as configured
    seq_len: int
    sequences_per_example: int
    grad_accumulation: int  # micro-batches per update (TrainingArguments.gradient_accumulation_steps)
    micro_batch: int  # examples per forward/backward pass
    gradient_checkpointing: bool
    peak_bytes: int  # predicted bytes the card must hold: memory.estimate's peak, allocator overhead included
    memory_bytes: int
    fits: bool
    steps: int | None  # optimizer updates of the whole run (None: neither steps nor examples given)
    step_flops: float
    seconds_per_step: float | None  # None: no peak known for this card and precision
    utilisation: float
    message: str

    @property
    def total_seconds(self) -> float | None:
        return None if self.seconds_per_step is None or self.steps is None else self.seconds_per_step * self.steps


def _peak_with_overhead(estimate: memory.MemoryEstimate, extra_bytes: int = 0) -> int:
    """The estimate's peak (plus ``extra_bytes`` of activations it does not count) as the card sees it: PyTorch's
    CUDA context and workspaces, and the caching allocator's slack (:data:`memory.PYTORCH_ALLOCATOR`)."""
    overhead = memory.PYTORCH_ALLOCATOR
    return int((estimate.peak + extra_bytes) * overhead["fragmentation"] + overhead["reserved_bytes"])


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_training(config: BertConfig, batch_size: int, seq_len: int, precision: str = "auto",
                  gpu: Gpu | str | None = None, *, steps: int | None = None, examples: int | None = None,
                  epochs: int = 1, sequences_per_example: int = 1, num_labels: int = 2, mlm_fraction: float = 0.0,
                  optimizer: str = "bertadam", attention: str = "sdpa", utilisation: float = UTILISATION,
                  task: str = "training") -> TrainingPlan:
    """Plan a fine-tuning run of ``batch_size`` examples per update at ``seq_len`` tokens on ``gpu`` (a
    :class:`Gpu`, a key of :data:`GPUS`, or None: this machine's card).

    Memory is :func:`memory.estimate` of BertForSequenceClassification (the other heads differ from it by less
    than a per cent), plus PyTorch's overhead. When the step does not fit, the batch is split into the fewest
    micro-batches that fit (a divisor of ``batch_size``, so the update still sums the same examples: gradient
    accumulation); when not even one example fits, gradient checkpointing is tried too. Time is the step's
    :func:`training_flops` at ``utilisation`` of the card's dense peak, times the run's updates (``steps``, or
    ``examples`` / ``batch_size`` per epoch times ``epochs``); evaluation is not counted.
    ``sequences_per_example``: 4 for SWAG's four choices. ``mlm_fraction``: pre-training's share of masked tokens
    (0.15), whose vocabulary scores add FLOPs and memory. ``precision``: "auto" is bf16 where the card has it in
    hardware, else fp16 (what ``training.train`` chooses)."""
    if isinstance(gpu, str):
        if gpu not in GPUS:
            raise ValueError(f"unknown GPU {gpu!r}; use one of {sorted(GPUS)} or a Gpu(...)")
        gpu = GPUS[gpu]
    elif gpu is None:
        gpu = detect_gpu()
        if gpu is None:
            raise ValueError("no CUDA GPU here: pass gpu= (e.g. 'T4' or 'A100-40GB') to plan for one")
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("epochs", epochs),
                        ("sequences_per_example", sequences_per_example)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"plan_training: {name} must be a whole number >= 1, got {value!r}")
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation is a share of the peak in (0, 1], got {utilisation!r}")
    if precision == "auto":
        precision = "bf16" if gpu.native_bf16 else "fp16"
    if precision == "bf16" and not gpu.native_bf16:
        raise ValueError(f"the {gpu.name} has no bf16 in hardware (emulated bf16 is slower than fp16); use 'fp16'")
    if steps is None and examples is not None:
        steps = math.ceil(examples / batch_size) * epochs

    sequences = batch_size * sequences_per_example
    masked = round(sequences * seq_len * mlm_fraction)  # MLM positions per update

    def peak(accumulation: int, checkpointing: bool) -> int:
        estimate = memory.estimate(config, sequences, seq_len, precision=precision, optimizer=optimizer,
                                   grad_accumulation=accumulation, gradient_checkpointing=checkpointing,
                                   attention=attention, num_labels=num_labels)
        # the MLM scores of one micro-batch: autocast's half copy and cross-entropy's fp32 log-softmax
        mlm_scores = math.ceil(masked / accumulation) * config.vocab_size * ((2 if precision != "fp32" else 4) + 4)
        return _peak_with_overhead(estimate, mlm_scores)

    divisors = [d for d in range(1, batch_size + 1) if batch_size % d == 0]
    choice = next(((d, False) for d in divisors if peak(d, False) <= gpu.memory_bytes), None)
    if choice is None:
        choice = next(((d, True) for d in divisors if peak(d, True) <= gpu.memory_bytes), None)
    fits = choice is not None
    accumulation, checkpointing = choice if fits else (batch_size, True)
    peak_bytes = peak(accumulation, checkpointing)
    micro = batch_size // accumulation
    flops = training_flops(config, sequences, seq_len, checkpointing, num_labels=num_labels, masked_tokens=masked)
    top = gpu.peak_flops.get(precision)
    seconds = flops / (top * utilisation) if top else None

    what = f"{task}: {batch_size} x {seq_len} tokens" + (
        f" ({sequences_per_example} sequences each)" if sequences_per_example > 1 else "") + f", {precision}"
    memory_text = f"peak {peak_bytes / memory.GB:.1f} GB of the {gpu.name}'s {gpu.memory_bytes / memory.GB:.1f} GB"
    if not fits:
        message = (f"{what}: does not fit even one example per micro-batch with gradient checkpointing "
                   f"({memory_text}); use a shorter max_seq_length or a card with more memory")
    else:
        how = ("in one step" if accumulation == 1 else
               f"as {accumulation} micro-batches of {micro} (gradient accumulation keeps the batch of {batch_size};"
               f" one step would need {peak(1, False) / memory.GB:.1f} GB)")
        if checkpointing:
            how += " with gradient checkpointing"
        message = f"{what} {how}: {memory_text}"
    if seconds is not None and steps is not None:
        message += (f"; about {_duration(seconds * steps)} for {steps:,} updates at {utilisation:.0%} of its "
                    f"{top / 1e12:.0f} TFLOP/s")
    elif seconds is None:
        message += f"; no {precision} peak known for the {gpu.name}, so no time"
    return TrainingPlan(task, gpu.name, precision, batch_size, seq_len, sequences_per_example, accumulation, micro,
                        checkpointing, peak_bytes, gpu.memory_bytes, fits, steps, flops, seconds, utilisation, message)
