"""One training loop for every task: the recipe of the BERT paper (Devlin et al. 2019, sec. 4 and appendix A.3)
and of the 2019 ``run_classifier.py``, with what a 2020s GPU adds.

The loop is driven by the model's own loss (the pytorch-pretrained-bert 0.6.2 contract: a head called with its
labels returns the loss, without them its logits), so one loop serves every head::

    batch = collate_fn(features)        # dict of tensors, see minibert.data.collate
    loss = model(**batch)               # BertForSequenceClassification: labels
                                        # BertForPreTraining: masked_lm_labels + next_sentence_label
                                        # BertForTokenClassification: labels (batch, seq), -100 = ignore
                                        # BertForQuestionAnswering: start_positions + end_positions
                                        # BertForMultipleChoice: input_ids (batch, choices, seq), labels

What it does, in the order a step happens:
  batches   length-bucketed global batches (similar lengths together, so dynamic padding wastes little), the
            same batches whatever the number of processes or accumulation steps;
  forward   under autocast (bf16 where the GPU has it, fp16 + GradScaler otherwise, fp32 on the CPU); the
            model checks its inputs on the first batch only (the collate has checked every batch on the CPU);
  backward  each micro-batch's mean loss weighted by its share of the global batch, so accumulating 4 micro
            batches, or splitting the batch over 2 processes (DistributedDataParallel), gives the same update
            as one large batch;
  update    BertAdam with linear warmup over ``t_total`` = number of updates the data actually produces;
  log       loss and lr every ``logging_steps`` updates, into ``state.log_history``;
  evaluate  every epoch and/or every ``eval_steps`` updates, with the metrics function passed in (accuracy / F1 /
            MCC by default); the metrics go into the same ``log_history`` as ``eval_<name>``;
  save      model, optimizer, schedule step, scaler and RNG state, written to a temporary file and renamed, so
            an interrupted run keeps its last good checkpoint and a resumed run repeats the loss curve exactly.

``train`` reads as those parts: :func:`prepare_training` (everything before the first update), :func:`update_step`
(one optimizer update: the bare loop of notebook 09 plus the chores) and the epoch loop.

Any ``nn.Module`` that follows the contract works (a tuple whose first element is the loss, or an object with
``.loss`` / ``.logits`` as transformers returns, also does).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from minibert.checkpoints import torch_load
from minibert.data import LABEL_KEYS, Feature, collate, encode_examples, feature_length
from minibert.metrics import classification_metrics
from minibert.optimization import SCHEDULES, BertAdam, optimizer_grouped_parameters
from minibert.runtime import dry_run_cut, dry_run_updates, eval_mode, has_native_bf16, set_seed

logger = logging.getLogger(__name__)

__all__ = ["TrainingArguments", "TrainState", "TrainResult", "EvalResult", "StopTraining", "TrainingRun",
           "encode_examples", "length_bucketed_batches", "num_update_steps", "resolve_precision", "build_optimizer",
           "evaluate", "sequence_classification_metrics", "prepare_training", "update_step", "train",
           "save_checkpoint", "load_checkpoint", "setup_distributed", "cleanup_distributed"]

Callback = Callable[[str, "TrainState"], None]  # called as callback(event, state), event in step|evaluate|end
Collate = Callable[[list[Feature]], dict[str, torch.Tensor]]

CHECKPOINT_NAME = "checkpoint.pt"
# tensors and plain data only (loads with weights_only=True), checksummed; 3: one log_history (no eval_history)
CHECKPOINT_FORMAT = "minibert-train-3"


# ----------------------------------------------------------------------------------------------------------
# Batches


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int = 0, epoch: int = 0,
                            shuffle: bool = True, bucket_batches: int = 50) -> list[list[int]]:
    """Global batches of indices for one epoch: ``ceil(n / batch_size)`` of them, every one full but the last.

    Shuffle, cut into buckets of ``bucket_batches`` batches, sort each bucket by length, slice it into batches
    and shuffle the batch order: batches hold similar lengths (little padding) yet stay random. Depends only on
    (seed, epoch), so a resumed or distributed run sees the same batches.
    """
    n = len(lengths)
    if n == 0:
        raise ValueError("cannot make batches from 0 examples: the training split is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket_batches > 0:
        lens = np.asarray(lengths)
        size = batch_size * bucket_batches
        order = np.concatenate([b[np.argsort(-lens[b], kind="stable")] for b in np.split(order, range(size, n, size))])
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def num_update_steps(num_examples: int, train_batch_size: int, num_epochs: int, max_steps: int | None = None) -> int:
    """Optimizer updates a run makes: ``ceil(n / batch) * epochs`` (the last, partial batch is an update too;
    the 2019 script's ``int(n / batch) * epochs`` undercounts it), capped by ``max_steps``."""
    steps = math.ceil(num_examples / train_batch_size) * num_epochs
    return min(steps, max_steps) if max_steps else steps


# ----------------------------------------------------------------------------------------------------------
# Configuration and state


@dataclass
class TrainingArguments:
    """The knobs of a run. Defaults are the BERT paper's MRPC recipe (appendix A.3); checked when built."""

    learning_rate: float = 2e-5
    num_train_epochs: int = 3
    train_batch_size: int = 32  # examples per optimizer update, summed over accumulation steps and processes
    gradient_accumulation_steps: int = 1  # split each batch in this many sequential micro-batches (less memory)
    eval_batch_size: int = 64
    warmup_proportion: float = 0.1  # fraction of t_total spent warming the learning rate up from 0
    weight_decay: float = 0.01  # not applied to biases and LayerNorm, as in the paper's code
    max_grad_norm: float = 1.0  # per-tensor clipping inside BertAdam; <= 0 turns it off
    schedule: str = "warmup_linear"
    precision: str = "auto"  # auto | fp32 | fp16 | bf16; auto = bf16 or fp16 on a GPU, fp32 on the CPU
    seed: int = 42
    max_steps: int | None = None  # stop after this many updates (t_total is capped to it)
    bucket_batches: int = 50  # length-bucket size in batches; 0 = no bucketing (plain shuffle)
    logging_steps: int = 1  # record the loss and lr every N updates
    evaluate_every_epoch: bool = True
    eval_steps: int | None = None  # also evaluate every N updates (a dev curve within an epoch)
    output_dir: str | None = None  # where checkpoint.pt goes; None = no checkpoints
    save_steps: int | None = None  # also save every N updates (always at the end of each epoch)
    device: str | None = None  # None = the GPU if there is one
    progress: bool = True  # tqdm bars
    num_labels: int | None = None  # checked against the data's labels; None = read model.num_labels
    # [PAD]'s id in the BERT vocabularies; pass tokenizer.pad_token_id for another vocab (the model never sees it:
    # padded positions have attention_mask 0)
    pad_token_id: int = 0
    # an update whose loss or gradients are NaN/inf is skipped (counted, logged); this many in a row stop the run
    max_nonfinite_steps: int = 5

    def __post_init__(self) -> None:
        def whole(name: str, low: int, none_ok: bool = False) -> None:
            value = getattr(self, name)
            if value is None and none_ok:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"TrainingArguments.{name} must be an int >= {low}"
                                 f"{' or None' if none_ok else ''}, got {value!r}")

        whole("num_train_epochs", 1)
        whole("train_batch_size", 1)
        whole("gradient_accumulation_steps", 1)
        whole("eval_batch_size", 1)
        whole("logging_steps", 1)
        whole("bucket_batches", 0)
        whole("pad_token_id", 0)
        whole("max_steps", 1, none_ok=True)
        whole("eval_steps", 1, none_ok=True)
        whole("save_steps", 1, none_ok=True)
        whole("num_labels", 1, none_ok=True)
        whole("max_nonfinite_steps", 1)
        if self.gradient_accumulation_steps > self.train_batch_size:
            raise ValueError(f"gradient_accumulation_steps={self.gradient_accumulation_steps} splits a batch of "
                             f"train_batch_size={self.train_batch_size} into more micro-batches than it has "
                             "examples; use gradient_accumulation_steps <= train_batch_size")
        if not isinstance(self.learning_rate, (int, float)) or not (math.isfinite(self.learning_rate)
                                                                    and self.learning_rate >= 0):
            raise ValueError(f"learning_rate must be a finite number >= 0, got {self.learning_rate!r} "
                             "(BERT: 2e-5..5e-5)")
        if not 0 <= self.warmup_proportion < 1:
            raise ValueError(f"warmup_proportion must be in [0, 1), got {self.warmup_proportion}")
        if not isinstance(self.weight_decay, (int, float)) or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0 (BERT: 0.01), got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(k for k in SCHEDULES if k)}, not {self.schedule!r}")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', not {self.precision!r}")


@dataclass
class TrainState:
    """Where a run is; everything here goes into the checkpoint."""

    t_total: int
    global_step: int = 0
    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # updates already done in this epoch
    # every metric of the run, in order: {"step", "epoch", "loss", "lr"} every logging_steps updates and
    # {"step", "epoch", "eval_<metric>"...} at each evaluation (LivePlot draws it, pre-training adds its own)
    log_history: list[dict[str, float]] = field(default_factory=list)
    step_offset: int = 0  # updates logged before this run, in the log_history it continues (an earlier phase's)
    epoch_times: list[float] = field(default_factory=list)  # seconds of training per finished epoch
    nonfinite_steps: int = 0  # updates skipped because the loss or a gradient was NaN or inf


class StopTraining(Exception):
    """Raise it from a callback's "step" event to end the run after this update (evaluation and "end" still run)."""


@dataclass
class EvalResult:
    """What :func:`evaluate` saw, in the order of the features.

    ``logits``: (n, num_labels) for classification and multiple choice; for other heads one entry per feature
    (per-token outputs cut to the feature's length; a tuple for heads that return several, e.g. start and end
    logits). ``labels``: the features' ``label`` values (an array of ints, or one array per feature for
    per-token labels), None when unlabelled. ``preds``: argmax of the logits where that is the prediction.
    """

    metrics: dict[str, float]
    logits: torch.Tensor | list[Any]
    preds: np.ndarray | list[np.ndarray] | None
    labels: np.ndarray | list[np.ndarray] | None


@dataclass
class TrainResult:
    state: TrainState
    eval: EvalResult | None  # the last evaluation
    precision: str
    train_seconds: float

    @property
    def losses(self) -> list[float]:
        """The training loss of every logged update."""
        return [r["loss"] for r in self.state.log_history if "loss" in r]


# ----------------------------------------------------------------------------------------------------------
# Precision, optimizer, distributed


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on a GPU that computes it natively (compute capability 8.0+: A100, L4, H100), fp16 with a
    GradScaler on older GPUs (Colab's T4, a V100: they only emulate bf16, slower than fp16), fp32 on the CPU and MPS.
    An explicit 'bf16' on a GPU without native bf16 is refused for the same reason."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if has_native_bf16(device) else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA GPU (fp16 training on the CPU is slow and unscaled); "
                         "use 'fp32' or 'bf16' on the CPU, or 'auto'")
    if precision == "bf16" and device.type == "cuda" and not has_native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise ValueError(f"this GPU ({torch.cuda.get_device_name(device)}, compute capability {major}.{minor}) only "
                         "emulates bf16, slower than fp16 and than fp32; use 'fp16' or 'auto' (bf16 needs 8.0+)")
    return precision


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def build_optimizer(model: nn.Module, args: TrainingArguments, t_total: int) -> BertAdam:
    """BertAdam over :func:`~minibert.optimization.optimizer_grouped_parameters` (no decay for bias and
    LayerNorm, as run_classifier.py), warming up over ``warmup_proportion`` of ``t_total``."""
    return BertAdam(optimizer_grouped_parameters(model, args.weight_decay), lr=args.learning_rate,
                    warmup=args.warmup_proportion, t_total=t_total, schedule=args.schedule,
                    weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm)


def _update_lr(optimizer: torch.optim.Optimizer, step: int) -> float:
    """The learning rate the update number ``step`` (1-based) used: BertAdam keeps the base lr in the group and
    applies its schedule inside step(), at the count of updates made before. That count is the optimizer's own
    (it goes on across calls, e.g. pre-training phases sharing one BertAdam), read off its state."""
    group = optimizer.param_groups[0]
    schedule = group.get("schedule")
    if schedule is not None and hasattr(schedule, "get_lr"):
        made = next((optimizer.state[p]["step"] for p in group["params"] if "step" in optimizer.state[p]), step)
        return float(group["lr"] * schedule.get_lr(made - 1, nowarn=True))
    return float(group["lr"])


def setup_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK (a no-op without
    them). Returns (rank, world_size). On GPUs each process takes ``cuda:LOCAL_RANK``."""
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def cleanup_distributed() -> None:
    """Leave the process group in order: wait for every rank (e.g. rank 0 still saving) before destroying it,
    so no rank tears down a connection another one still uses."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # DistributedDataParallel's reducer holds the group and sits in reference cycles: free it now, or the
        # group's gloo threads outlive destroy_process_group and abort the interpreter's exit ("terminate called
        # without an active exception", 1 run in 20 under load)
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors, numbers and lists, so the checkpoint loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    numpy_state = [kind, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)]
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any,
                    state: TrainState, args: TrainingArguments) -> Path:
    """Write everything a run needs to continue. Written to ``path.tmp`` and renamed over ``path`` (atomic on
    POSIX), so a crash during the write leaves the previous checkpoint as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "model": _unwrap(model).state_dict(),
               "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "state": asdict(state),
               "args": asdict(args), "rng": _rng_state()}
    payload["checksum"] = _checksum(payload)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (a folder means its checkpoint.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; pass the output_dir of a run that saved one")
    payload = torch_load(path, expected="a training checkpoint written by minibert's save_checkpoint",
                         if_unsafe="minibert's checkpoints hold only tensors and plain data (before format "
                                   "minibert-train-2 they held NumPy arrays): start that run again",
                         if_corrupt="resume from an earlier copy, or start the run again")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a minibert training checkpoint of format {CHECKPOINT_FORMAT!r} (found "
                         f"{found!r}); resume from a checkpoint this version wrote, or start the run again")
    if payload.get("checksum") != _checksum(payload):
        raise ValueError(f"{path}: the checksum of its tensors does not match the one saved with them: the file "
                         "changed after it was written (a flipped bit, a bad copy, a failing disk), and resuming "
                         "would continue from damaged weights; resume from an earlier copy, or start the run again")
    return payload


def _checksum(payload: dict[str, Any]) -> str:
    """sha256 of every tensor and number of a checkpoint payload (but its own "checksum"), in a fixed order."""
    digest = hashlib.sha256()

    def walk(obj: Any, key: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}:".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                if key or k != "checksum":
                    walk(obj[k], f"{key}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj):
                walk(item, f"{key}/{i}")
        else:
            digest.update(f"{key}={obj!r};".encode())

    walk(payload, "")
    return digest.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (whose attributes and state_dict keys are the model's own)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------------------------------------
# Model outputs and the model's own input checks


def _all_finite(loss: torch.Tensor, model: nn.Module, check_grads: bool) -> bool:
    """True when the loss and (unless a GradScaler checks them itself) every gradient are finite: one NaN element
    would otherwise turn a whole parameter and its Adam moments into NaN for good."""
    values = [loss.detach().float().reshape(1)]
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None] if check_grads else []
    if grads:
        values.append(torch.stack([n.float() for n in torch._foreach_norm(grads)]))
    return bool(torch.isfinite(torch.cat(values)).all())


def _skip_nonfinite(state: TrainState, in_a_row: int, args: TrainingArguments, loss: float) -> int:
    """Count and log an update skipped for a NaN/inf loss or gradient; raise after too many in a row."""
    state.nonfinite_steps += 1
    in_a_row += 1
    logger.warning("update %d skipped: the loss (%s) or a gradient is not finite; the weights are left as they "
                   "were (%d skipped in this run)", state.global_step + 1, loss, state.nonfinite_steps)
    if in_a_row >= args.max_nonfinite_steps:
        raise FloatingPointError(
            f"{in_a_row} updates in a row (the last: update {state.global_step + 1}) had a loss or gradients that "
            f"are not finite (NaN or inf), so training stopped with the weights from before them. Lower "
            f"learning_rate (now {args.learning_rate:g}), check these batches' inputs and labels, or use "
            f"precision='fp32'; TrainingArguments.max_nonfinite_steps={args.max_nonfinite_steps} sets the limit")
    return in_a_row


def loss_of(output: Any) -> torch.Tensor:
    """The loss a model returns when given labels: the tensor itself, ``output.loss`` (transformers' outputs) or the
    first element of a tuple, so the loop trains minibert's models and transformers' alike."""
    if isinstance(output, torch.Tensor):
        return output
    if getattr(output, "loss", None) is not None:
        return output.loss
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__} when given labels; expected the loss tensor")


def _outputs_of(output: Any) -> tuple[torch.Tensor, ...]:
    """The logits a model returns without labels, as a tuple (one tensor for most heads, two for spans)."""
    if isinstance(output, torch.Tensor):
        return (output,)
    if getattr(output, "logits", None) is not None:
        return (output.logits,)
    if getattr(output, "start_logits", None) is not None:
        return (output.start_logits, output.end_logits)
    if isinstance(output, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in output):
        return tuple(output)
    raise TypeError(f"the model returned {type(output).__name__} without labels; expected the logits tensor(s)")


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _config_value(model: nn.Module, name: str) -> int | None:
    m = _unwrap(model)
    n = getattr(m, name, None)
    if n is None and getattr(m, "config", None) is not None:
        n = getattr(m.config, name, None)
    return int(n) if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else None


@contextmanager
def _model_checks(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Turn the model's per-forward input and label checks (host syncs) on or off for a while.

    The collate has already checked every batch on the CPU, so after the first batch the model need not check
    again. Models without the switch (``check_inputs`` on minibert models) are left as they are.
    """
    m = _unwrap(model)
    if not hasattr(m, "check_inputs"):
        yield
        return
    before = m.check_inputs
    m.check_inputs = enabled
    try:
        yield
    finally:
        m.check_inputs = before


# ----------------------------------------------------------------------------------------------------------
# Evaluation


def sequence_classification_metrics(result: EvalResult) -> dict[str, float]:
    """Accuracy, F1, MCC (:func:`~minibert.metrics.classification_metrics`) and the mean cross-entropy of
    (n, num_labels) logits against integer labels: the default ``metrics_fn`` of :func:`evaluate`."""
    if not isinstance(result.logits, torch.Tensor) or result.logits.dim() != 2 or result.labels is None \
            or not isinstance(result.labels, np.ndarray) or result.labels.ndim != 1:
        raise ValueError("sequence_classification_metrics needs (n, num_labels) logits and one integer label per "
                         "feature; for other heads pass metrics_fn (e.g. a SQuAD or NER metric from "
                         "minibert.metrics)")
    logits = result.logits
    metrics = dict(classification_metrics(result.preds, result.labels, num_labels=logits.shape[-1]))
    metrics["loss"] = nn.functional.cross_entropy(logits, torch.as_tensor(result.labels)).item()
    return metrics


def _feature_labels(features: Sequence[Feature]) -> np.ndarray | list[np.ndarray] | None:
    key = "label" if "label" in features[0] else "labels" if "labels" in features[0] else None
    if key is None or not all(key in f for f in features):
        return None
    values = [f[key] for f in features]
    if all(np.ndim(v) == 0 for v in values):
        return np.asarray([v.item() if isinstance(v, torch.Tensor) else v for v in values])
    return [np.asarray(v) for v in values]


@torch.no_grad()
def evaluate(model: nn.Module, features: Sequence[Feature], batch_size: int = 64,
             device: torch.device | str | None = None, precision: str = "fp32",
             metrics_fn: Callable[[EvalResult], dict[str, float]] | None = sequence_classification_metrics,
             progress: bool = False, collate_fn: Collate | None = None) -> EvalResult:
    """Run ``model`` without labels over ``features`` and score its logits with ``metrics_fn(result)``.

    Batches are formed from length-sorted features so padding stays small; the logits are put back in feature
    order (see :class:`EvalResult`). ``collate_fn`` defaults to :func:`minibert.data.collate` with pad id 0.
    ``metrics_fn=None`` skips scoring (e.g. SQuAD, whose answers need post-processing first). In a dry run
    (``MINIBERT_DRY_RUN=1``) only the first batches' worth of features is evaluated, and the result covers those.
    """
    from tqdm.auto import tqdm

    if len(features) == 0:
        raise ValueError("cannot evaluate on 0 features: the evaluation split is empty")
    features = dry_run_cut(features, batch_size, "evaluation")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    precision = resolve_precision(precision, device)
    collate_fn = collate_fn or functools.partial(collate, pad_token_id=TrainingArguments.pad_token_id)
    order = np.argsort([-feature_length(f) for f in features], kind="stable")
    rows: list[Any] = [None] * len(features)
    with eval_mode(model):
        for i in tqdm(range(0, len(order), batch_size), desc="eval", disable=not progress, leave=False):
            idx = order[i:i + batch_size]
            batch = collate_fn([features[j] for j in idx])
            for key in LABEL_KEYS:
                batch.pop(key, None)
            token_level = batch["input_ids"].dim() == 2  # not multiple choice: a dim of size seq is per token
            seq = batch["input_ids"].shape[-1]
            with _autocast(device, precision), _model_checks(model, i == 0):  # the collate checked every batch
                outputs = [t.float().cpu() for t in _outputs_of(model(**_to(batch, device)))]
            for r, j in enumerate(idx):
                n = feature_length(features[j])
                per = tuple(t[r, :n] if token_level and t.dim() >= 2 and t.shape[1] == seq else t[r] for t in outputs)
                rows[j] = per[0] if len(per) == 1 else per
    logits: torch.Tensor | list[Any] = rows
    preds = None
    if all(isinstance(r, torch.Tensor) for r in rows):
        if len({r.shape for r in rows}) == 1:
            logits = torch.stack(rows)
            preds = logits.argmax(-1).numpy()
        else:
            preds = [r.argmax(-1).numpy() for r in rows]
    result = EvalResult({}, logits, preds, _feature_labels(features))
    if metrics_fn is not None and result.labels is not None:
        result.metrics = dict(metrics_fn(result))
    return result


# ----------------------------------------------------------------------------------------------------------
# Training: prepare, update, loop


@dataclass
class TrainingRun:
    """Everything the updates of one run share, made by :func:`prepare_training`."""

    model: nn.Module  # the model being trained (its own attributes, state_dict, check switch)
    ddp: nn.Module  # what the forward pass calls: the model, or DistributedDataParallel around it
    args: TrainingArguments
    state: TrainState
    train_features: Sequence[Feature]
    eval_features: Sequence[Feature] | None
    collate_fn: Collate
    metrics_fn: Callable[[EvalResult], dict[str, float]] | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16 loss scaling; a no-op in other precisions
    device: torch.device
    precision: str  # fp32 | fp16 | bf16, resolved for the device
    callbacks: list[Callback]
    rank: int = 0  # this process, of `world` (DistributedDataParallel under torchrun)
    world: int = 1
    checked: bool = False  # the model has checked its inputs (on the first forward pass)
    nonfinite_in_a_row: int = 0  # updates skipped in a row for a NaN/inf loss or gradient
    last_eval: EvalResult | None = None
    evaluated_at: int | None = None  # the update whose model last_eval scored

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_features) / self.args.train_batch_size)


def prepare_training(model: nn.Module, train_features: Sequence[Feature], args: TrainingArguments | None = None,
                     eval_features: Sequence[Feature] | None = None, *, collate_fn: Collate | None = None,
                     metrics_fn: Callable[[EvalResult], dict[str, float]] | None = sequence_classification_metrics,
                     optimizer: torch.optim.Optimizer | None = None, callbacks: Iterable[Callback] = (),
                     resume_from: str | Path | None = None,
                     log_history: list[dict[str, float]] | None = None) -> TrainingRun:
    """Everything before the first update: check the data, pick the device and precision, count ``t_total``,
    build the optimizer (and the fp16 scaler), seed every RNG or restore a checkpoint, wrap the model for DDP."""
    args = args or TrainingArguments()
    rank, world = _dist_info()
    if len(train_features) == 0:
        raise ValueError("the training split is empty (0 features); check the file and any subset size")
    if eval_features is not None and len(eval_features) == 0:
        raise ValueError("the evaluation split is empty (0 features); check the file and any subset size")
    if eval_features is not None and metrics_fn is sequence_classification_metrics:
        label = eval_features[0].get("label", eval_features[0].get("labels"))
        if label is None or np.ndim(label) != 0:
            raise ValueError("the evaluation features have no class label per example, so the default metrics "
                             "(accuracy, F1, MCC) do not apply; pass metrics_fn=<your task's metric> (it gets the "
                             "EvalResult) or metrics_fn=None to keep only the logits")
    if resume_from is not None and log_history is not None:
        raise ValueError("resume_from restores the log_history saved in the checkpoint; pass one or the other")
    device = torch.device(args.device) if args.device else (
        torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu"))
    precision = resolve_precision(args.precision, device)
    if collate_fn is None:
        num_labels = args.num_labels if args.num_labels is not None else _config_value(model, "num_labels")
        collate_fn = functools.partial(collate, pad_token_id=args.pad_token_id, vocab_size=_config_value(
            model, "vocab_size"), num_labels=num_labels, pad_to_multiple_of=8 if device.type == "cuda" else None)

    model.to(device)
    model.train()
    t_total = num_update_steps(len(train_features), args.train_batch_size, args.num_train_epochs, args.max_steps)
    optimizer = optimizer if optimizer is not None else build_optimizer(model, args, t_total)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    state = TrainState(t_total=t_total)
    if log_history is not None:  # continue an earlier run's curves (e.g. pre-training phases)
        state.log_history, state.step_offset = log_history, (log_history[-1]["step"] if log_history else 0)

    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        if ckpt["state"]["t_total"] != t_total:
            raise ValueError(f"the checkpoint was made for t_total={ckpt['state']['t_total']} updates but this "
                             f"run plans {t_total}; resume with the same data, batch size, epochs and max_steps")
        _unwrap(model).load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        state = TrainState(**ckpt["state"])
        _set_rng_state(ckpt["rng"])
        logger.info("resumed from %s at update %d (epoch %d)", resume_from, state.global_step, state.epoch)
    else:
        set_seed(args.seed)

    ddp = model
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                  else None)
    return TrainingRun(model, ddp, args, state, train_features, eval_features, collate_fn, metrics_fn, optimizer,
                       scaler, device, precision, list(callbacks), rank, world)


def _micro_batches(batch: list[int], parts: int) -> list[list[int]]:
    return [p.tolist() for p in np.array_split(np.asarray(batch, dtype=np.int64), parts)]


def update_step(run: TrainingRun, batch: list[int]) -> torch.Tensor:
    """One optimizer update on one global batch (indices into the training features); returns its mean loss.

    The bare loop's forward, ``backward()``, ``optimizer.step()`` and ``zero_grad()``, plus the chores: the batch
    cut in micro-batches (gradient accumulation, and each process's share under DDP), mixed precision, and an
    update skipped when the loss or a gradient is NaN or inf.

    Each micro-batch's mean loss is weighted by its share of the batch's examples: the same update as one large
    batch for per-example losses (classification, spans, choices); for per-token losses (masked LM, tagging) a
    micro-batch's token mean gets its example share, as in the 2019 scripts.
    """
    args, world = run.args, run.world
    batch_loss = torch.zeros((), device=run.device)
    micro = _micro_batches(batch, world * args.gradient_accumulation_steps)
    for k in range(args.gradient_accumulation_steps):
        idx = micro[k * world + run.rank]
        # Weight = this micro-batch's share of the global batch; times `world` because DDP averages
        # gradients over processes. An empty share (tiny last batch) still runs, with weight 0.
        weight = len(idx) * world / len(batch)
        inputs = _to(run.collate_fn([run.train_features[i] for i in (idx or batch[:1])]), run.device)
        accumulating = world > 1 and k < args.gradient_accumulation_steps - 1  # DDP syncs after the last one
        with run.ddp.no_sync() if accumulating else nullcontext(), _model_checks(run.model, not run.checked):
            with _autocast(run.device, run.precision):
                loss = loss_of(run.ddp(**inputs))  # forward: the model computes its own loss
            run.scaler.scale(loss.float() * weight).backward()  # backward (fp16: on the scaled loss)
        run.checked = True
        batch_loss += loss.detach().float() * weight
    if world > 1:
        torch.distributed.all_reduce(batch_loss)
        batch_loss /= world
    if _all_finite(batch_loss, run.model, check_grads=not run.scaler.is_enabled()):
        run.nonfinite_in_a_row = 0
        run.scaler.step(run.optimizer)  # optimizer.step(): BertAdam clips each gradient, follows its schedule
        run.scaler.update()
    else:
        run.nonfinite_in_a_row = _skip_nonfinite(run.state, run.nonfinite_in_a_row, args, batch_loss.item())
    run.optimizer.zero_grad(set_to_none=True)
    return batch_loss


def _emit(run: TrainingRun, event: str) -> bool:
    """Call every callback with (event, state); True when a "step" callback raised StopTraining."""
    try:
        for cb in run.callbacks:
            cb(event, run.state)
    except StopTraining as reason:
        if event != "step":
            raise
        logger.info("stopped at update %d of %d: %s", run.state.global_step, run.state.t_total, reason)
        return True
    return False


def _epoch_now(run: TrainingRun) -> float:
    return run.state.epoch + run.state.step_in_epoch / run.batches_per_epoch


def _log(run: TrainingRun, loss: torch.Tensor) -> float:
    state, value = run.state, loss.item()
    state.log_history.append({"step": state.step_offset + state.global_step, "epoch": _epoch_now(run),
                              "loss": value, "lr": _update_lr(run.optimizer, state.global_step)})
    return value


def _evaluate(run: TrainingRun) -> None:
    """Evaluate the model as it is now (once per update), log its metrics as ``eval_<name>``, emit "evaluate"."""
    state = run.state
    if run.eval_features is None or run.evaluated_at == state.global_step:
        return
    run.last_eval = evaluate(run.model, run.eval_features, run.args.eval_batch_size, run.device, run.precision,
                             run.metrics_fn, collate_fn=run.collate_fn)
    run.evaluated_at = state.global_step
    if run.last_eval.metrics:
        state.log_history.append({"step": state.step_offset + state.global_step, "epoch": _epoch_now(run),
                                  **{f"eval_{k}": v for k, v in run.last_eval.metrics.items()}})
    logger.info("update %d (epoch %.2f): %s", state.global_step, _epoch_now(run), run.last_eval.metrics)
    _emit(run, "evaluate")


def _save(run: TrainingRun) -> None:
    if run.args.output_dir and run.rank == 0:
        save_checkpoint(Path(run.args.output_dir) / CHECKPOINT_NAME, run.model, run.optimizer, run.scaler,
                        run.state, run.args)


def train(model: nn.Module, train_features: Sequence[Feature], args: TrainingArguments | None = None,
          eval_features: Sequence[Feature] | None = None, *, collate_fn: Collate | None = None,
          metrics_fn: Callable[[EvalResult], dict[str, float]] | None = sequence_classification_metrics,
          optimizer: torch.optim.Optimizer | None = None, callbacks: Iterable[Callback] = (),
          resume_from: str | Path | None = None, log_history: list[dict[str, float]] | None = None) -> TrainResult:
    """Train ``model`` on ``train_features`` by its own loss, evaluating on ``eval_features`` every epoch (and
    every ``args.eval_steps`` updates); every metric goes into ``state.log_history``.

    - ``collate_fn(features) -> batch``: the batch dict given to ``model(**batch)``. Default:
      :func:`minibert.data.collate` with ``args.pad_token_id``, checking ids against the model's vocab_size and
      labels against its num_labels. Pre-training passes a ``PretrainingCollator`` (collate + masking).
    - ``metrics_fn(EvalResult) -> dict``: scores the evaluation (default: accuracy, F1, MCC, loss).
    - ``optimizer``: default BertAdam from ``args`` (:func:`build_optimizer`); pass one to use your own.
    - ``callbacks``: ``callback(event, state)`` after every update ("step"; raise :class:`StopTraining` to end
      early), evaluation ("evaluate") and at the end ("end").
    - ``resume_from`` (a checkpoint file or an output_dir) continues a saved run exactly where it stopped;
      ``log_history`` (an earlier run's) continues its curves, steps counting on.

    Under ``torchrun`` call :func:`setup_distributed` first: each process trains on its share of every global
    batch. In a dry run (``MINIBERT_DRY_RUN=1``) the run stops after a few updates.
    """
    from tqdm.auto import tqdm

    run = prepare_training(model, train_features, args, eval_features, collate_fn=collate_fn, metrics_fn=metrics_fn,
                           optimizer=optimizer, callbacks=callbacks, resume_from=resume_from, log_history=log_history)
    args, state = run.args, run.state
    lengths = [feature_length(f) for f in train_features]
    dry_updates = dry_run_updates("training")
    stop_at = state.global_step + dry_updates if dry_updates else None
    start, stop = time.perf_counter(), False
    while state.epoch < args.num_train_epochs and state.global_step < state.t_total and not stop:
        batches = length_bucketed_batches(lengths, args.train_batch_size, args.seed, state.epoch,
                                          bucket_batches=args.bucket_batches)
        epoch_start = time.perf_counter()
        bar = tqdm(total=run.batches_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}",
                   disable=not args.progress or run.rank != 0, leave=False)
        for batch in batches[state.step_in_epoch:]:
            loss = update_step(run, batch)
            state.global_step += 1
            state.step_in_epoch += 1
            bar.update(1)
            if state.global_step % args.logging_steps == 0:
                bar.set_postfix(loss=f"{_log(run, loss):.4f}")
            if args.eval_steps and state.global_step % args.eval_steps == 0:
                _evaluate(run)
            stop = _emit(run, "step") or state.global_step == stop_at
            done = stop or state.global_step >= state.t_total
            if args.save_steps and state.global_step % args.save_steps == 0 and not done \
                    and state.step_in_epoch < run.batches_per_epoch:
                _save(run)
            if done:
                break
        bar.close()
        state.epoch_times.append(time.perf_counter() - epoch_start)
        if args.evaluate_every_epoch:
            _evaluate(run)
        if not stop:
            state.epoch += 1
            state.step_in_epoch = 0
        _save(run)
    _evaluate(run)  # the final model, unless it was just evaluated
    _emit(run, "end")
    return TrainResult(state, run.last_eval, run.precision, time.perf_counter() - start)
