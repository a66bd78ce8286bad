"""One fine-tuning loop for every task notebook: the recipe of the BERT paper (Devlin et al. 2019, sec. 4 and
appendix A.3) and of the 2019 ``run_classifier.py``, with what a 2020s GPU adds.

What it does, in the order a step happens:
  batches   length-bucketed global batches (similar lengths together, so dynamic padding wastes little), the
            same batches whatever the number of processes or accumulation steps;
  forward   under autocast (bf16 where the GPU has it, fp16 + GradScaler otherwise, fp32 on the CPU);
  backward  each micro-batch's mean loss weighted by its share of the global batch, so accumulating 4 micro
            batches, or splitting the batch over 2 processes (DistributedDataParallel), gives the same update
            as one large batch;
  update    BertAdam with linear warmup over ``t_total`` = number of updates the data actually produces;
  evaluate  every epoch, with accuracy / F1 / MCC;
  save      model, optimizer, schedule step, scaler and RNG state, written to a temporary file and renamed, so
            an interrupted run keeps its last good checkpoint and a resumed run repeats the loss curve exactly.

The model can be any ``nn.Module`` called as ``model(input_ids=..., token_type_ids=..., attention_mask=...,
labels=...)`` that returns the loss when ``labels`` are given and the logits otherwise (a tuple whose first
element is the loss or an object with ``.loss`` / ``.logits``, as transformers returns, also works).
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from minibert.metrics import classification_metrics

logger = logging.getLogger(__name__)

__all__ = ["TrainingArguments", "TrainState", "TrainResult", "EvalResult", "encode_examples", "pad_collate",
           "length_bucketed_batches", "num_update_steps", "resolve_precision", "build_optimizer", "evaluate",
           "train", "save_checkpoint", "load_checkpoint", "LivePlot", "TrainingForm", "setup_distributed",
           "cleanup_distributed", "check_num_update_steps", "check_pad_collate"]

Feature = Dict[str, Any]  # {"input_ids": [...], "token_type_ids": [...], "label": int (optional)}
Callback = Callable[[str, "TrainState"], None]  # called as callback(event, state), event in step|evaluate|end

CHECKPOINT_NAME = "checkpoint.pt"


# ----------------------------------------------------------------------------------------------------------
# Data: features, dynamic padding, length buckets


def encode_examples(examples: Sequence[Any], tokenizer: Any, max_seq_length: int = 128,
                    num_labels: Optional[int] = None) -> List[Feature]:
    """Tokenize ``InputExample``s into unpadded features ``[CLS] a [SEP] (b [SEP])`` of at most ``max_seq_length``.

    Padding is left to :func:`pad_collate`, per batch. With ``num_labels`` every label must be an int in
    ``[0, num_labels)``; a mismatch names the example (its guid) so it can be found in the file.
    """
    if len(examples) == 0:
        raise ValueError("no examples to encode: the split is empty; check the file or the subset size")
    if num_labels is not None:
        from minibert.datasets import check_labels

        check_labels(list(examples), num_labels)  # names the file and line of a bad label
    features = []
    for ex in examples:
        enc = tokenizer.encode(ex.text_a, ex.text_b, max_length=max_seq_length)
        feat: Feature = {"input_ids": list(enc["input_ids"]),
                         "token_type_ids": list(enc.get("token_type_ids") or [0] * len(enc["input_ids"]))}
        if ex.label is not None:
            if not isinstance(ex.label, (int, np.integer)) or ex.label < 0:
                raise ValueError(f"example {ex.guid!r} has label {ex.label!r}; labels must be class indices "
                                 f"0, 1, ... (map label strings to indices when reading the file)")
            feat["label"] = int(ex.label)
        features.append(feat)
    return features


def pad_collate(features: Sequence[Feature], pad_token_id: int = 0,
                pad_to_multiple_of: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Pad a batch to its own longest sequence (not to max_seq_length): the "dynamic padding" that makes
    short-sentence tasks several times cheaper. Returns input_ids, token_type_ids, attention_mask, (labels)."""
    longest = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:  # tensor cores like multiples of 8
        longest = int(math.ceil(longest / pad_to_multiple_of) * pad_to_multiple_of)
    ids = torch.full((len(features), longest), pad_token_id, dtype=torch.long)
    types = torch.zeros((len(features), longest), dtype=torch.long)
    mask = torch.zeros((len(features), longest), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.as_tensor(f["input_ids"])
        types[i, :n] = torch.as_tensor(f.get("token_type_ids", [0] * n))
        mask[i, :n] = 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    if all("label" in f for f in features):
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
    return batch


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int = 0, epoch: int = 0,
                            shuffle: bool = True, bucket_batches: int = 50) -> List[List[int]]:
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


def num_update_steps(num_examples: int, train_batch_size: int, num_epochs: int,
                     max_steps: Optional[int] = None) -> int:
    """Optimizer updates a run makes: ``ceil(n / batch) * epochs`` (the last, partial batch is an update too;
    the 2019 script's ``int(n / batch) * epochs`` undercounts it), capped by ``max_steps``."""
    steps = math.ceil(num_examples / train_batch_size) * num_epochs
    return min(steps, max_steps) if max_steps else steps


# ----------------------------------------------------------------------------------------------------------
# Configuration and state


@dataclass
class TrainingArguments:
    """The knobs of a fine-tuning run. Defaults are the BERT paper's MRPC recipe (appendix A.3)."""

    learning_rate: float = 2e-5
    num_train_epochs: int = 3
    train_batch_size: int = 32  # examples per optimizer update, summed over accumulation steps and processes
    gradient_accumulation_steps: int = 1  # split each batch in this many sequential micro-batches (less memory)
    eval_batch_size: int = 64
    warmup_proportion: float = 0.1  # fraction of t_total spent warming the learning rate up from 0
    weight_decay: float = 0.01  # not applied to biases and LayerNorm, as in the paper's code
    max_grad_norm: float = 1.0
    schedule: str = "warmup_linear"
    precision: str = "auto"  # auto | fp32 | fp16 | bf16; auto = bf16 or fp16 on a GPU, fp32 on the CPU
    seed: int = 42
    max_steps: Optional[int] = None  # stop after this many updates (t_total is capped to it)
    bucket_batches: int = 50  # length-bucket size in batches; 0 = no bucketing (plain shuffle)
    logging_steps: int = 1  # record the loss every N updates
    evaluate_every_epoch: bool = True
    output_dir: Optional[str] = None  # where checkpoint.pt goes; None = no checkpoints
    save_steps: Optional[int] = None  # also save every N updates (always at the end of each epoch)
    device: Optional[str] = None  # None = the GPU if there is one
    progress: bool = True  # tqdm bars
    num_labels: Optional[int] = None  # checked against the data's labels; None = read model.num_labels

    def __post_init__(self) -> None:
        if self.train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError(f"train_batch_size ({self.train_batch_size}) and gradient_accumulation_steps "
                             f"({self.gradient_accumulation_steps}) must be >= 1")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', not {self.precision!r}")
        if not 0 <= self.warmup_proportion < 1:
            raise ValueError(f"warmup_proportion must be in [0, 1), got {self.warmup_proportion}")


@dataclass
class TrainState:
    """Where a run is; everything here goes into the checkpoint."""

    t_total: int
    global_step: int = 0
    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # updates already done in this epoch
    log_history: List[Dict[str, float]] = field(default_factory=list)  # {"step", "epoch", "loss", "lr"}
    eval_history: List[Dict[str, float]] = field(default_factory=list)  # {"step", "epoch", metric...}
    epoch_times: List[float] = field(default_factory=list)  # seconds of training per finished epoch


@dataclass
class EvalResult:
    metrics: Dict[str, float]
    logits: torch.Tensor  # (n, num_labels), float32, in the order of the features
    preds: np.ndarray
    labels: Optional[np.ndarray]


@dataclass
class TrainResult:
    state: TrainState
    eval: Optional[EvalResult]  # the last evaluation
    precision: str
    train_seconds: float

    @property
    def losses(self) -> List[float]:
        return [r["loss"] for r in self.state.log_history]


# ----------------------------------------------------------------------------------------------------------
# Precision, optimizer, distributed


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on a GPU that has it (Ampere+), fp16 on older GPUs (Colab's T4), fp32 on the CPU."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA GPU (fp16 training on the CPU is slow and unscaled); "
                         "use 'fp32' or 'bf16' on the CPU, or 'auto'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"this GPU ({torch.cuda.get_device_name(device)}) has no bf16; use 'fp16' or 'auto'")
    return precision


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def build_optimizer(model: nn.Module, args: TrainingArguments, t_total: int) -> torch.optim.Optimizer:
    """BertAdam with weight decay on weights only (no decay for bias and LayerNorm, as run_classifier.py)."""
    from minibert.optimization import BertAdam

    no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not any(nd in n for nd in no_decay)],
               "weight_decay": args.weight_decay},
              {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    return BertAdam(groups, lr=args.learning_rate, warmup=args.warmup_proportion, t_total=t_total,
                    schedule=args.schedule, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm)


def _update_lr(optimizer: torch.optim.Optimizer, step: int) -> float:
    """The learning rate the update number ``step`` (1-based) used: BertAdam keeps the base lr in the group and
    applies its schedule inside step(), at the count of updates made before."""
    group = optimizer.param_groups[0]
    schedule = group.get("schedule")
    if schedule is not None and hasattr(schedule, "get_lr"):
        return float(group["lr"] * schedule.get_lr(step - 1, nowarn=True))
    return float(group["lr"])


def setup_distributed(backend: Optional[str] = None) -> tuple[int, int]:
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
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any,
                    state: TrainState, args: TrainingArguments) -> Path:
    """Write everything a run needs to continue. Written to ``path.tmp`` and renamed over ``path`` (atomic on
    POSIX), so a crash during the write leaves the previous checkpoint as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": "minibert-train-1", "model": _unwrap(model).state_dict(),
               "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "state": asdict(state),
               "args": asdict(args), "rng": _rng_state()}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (a folder means its checkpoint.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; pass the output_dir of a run that saved one")
    payload = torch.load(path, map_location="cpu", weights_only=False)  # our own file: holds RNG tuples
    if not isinstance(payload, dict) or payload.get("format") != "minibert-train-1":
        raise ValueError(f"{path} is not a minibert training checkpoint (no 'format': 'minibert-train-1')")
    return payload


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) \
        else model


# ----------------------------------------------------------------------------------------------------------
# Model outputs


def _loss_of(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if getattr(output, "loss", None) is not None:
        return output.loss
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__} when given labels; expected the loss tensor")


def _logits_of(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if getattr(output, "logits", None) is not None:
        return output.logits
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__} without labels; expected the logits tensor")


def _to(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _model_num_labels(model: nn.Module) -> Optional[int]:
    m = _unwrap(model)
    n = getattr(m, "num_labels", None)
    if n is None and getattr(m, "config", None) is not None:
        n = getattr(m.config, "num_labels", None)
    return int(n) if isinstance(n, (int, np.integer)) else None


def _check_labels(features: Sequence[Feature], num_labels: Optional[int], what: str) -> None:
    if len(features) == 0:
        raise ValueError(f"the {what} split is empty (0 features); check the file and any subset size")
    labels = [f["label"] for f in features if "label" in f]
    if num_labels is None or not labels:
        return
    bad = [(i, y) for i, y in enumerate(labels) if not 0 <= y < num_labels]
    if bad:
        i, y = bad[0]
        raise ValueError(f"{what} feature {i} has label {y} but the model has num_labels={num_labels}; "
                         f"build the model with num_labels={max(labels) + 1} (the data's labels are "
                         f"{sorted(set(labels))})")


# ----------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(model: nn.Module, features: Sequence[Feature], batch_size: int = 64,
             device: Optional[torch.device | str] = None, precision: str = "fp32",
             metrics_fn: Callable[..., Dict[str, float]] = classification_metrics,
             progress: bool = False) -> EvalResult:
    """Logits, predictions and metrics (accuracy, F1, MCC and the mean loss) on ``features``, in their order.

    Batches are formed from length-sorted features so padding stays small; results are put back in order.
    """
    from tqdm.auto import tqdm

    if len(features) == 0:
        raise ValueError("cannot evaluate on 0 features: the evaluation split is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable")
    logits = [None] * len(features)
    loss_sum, n_loss = 0.0, 0
    for i in tqdm(range(0, len(order), batch_size), desc="eval", disable=not progress, leave=False):
        idx = order[i:i + batch_size]
        batch = _to(pad_collate([features[j] for j in idx]), device)
        labels = batch.pop("labels", None)
        with _autocast(device, precision):
            out = _logits_of(model(**batch)).float()
        if labels is not None and out.dim() == 2:
            loss_sum += nn.functional.cross_entropy(out, labels, reduction="sum").item()
            n_loss += len(idx)
        for j, row in zip(idx, out.cpu()):
            logits[j] = row
    model.train(was_training)
    logits_t = torch.stack(logits)
    preds = logits_t.argmax(-1).numpy()
    labels = np.array([f["label"] for f in features]) if all("label" in f for f in features) else None
    metrics: Dict[str, float] = {}
    if labels is not None:
        metrics = dict(metrics_fn(preds, labels, num_labels=logits_t.shape[-1]))
        metrics["loss"] = loss_sum / max(n_loss, 1)
    return EvalResult(metrics, logits_t, preds, labels)


# ----------------------------------------------------------------------------------------------------------
# Training


def _micro_batches(batch: List[int], parts: int) -> List[List[int]]:
    return [p.tolist() for p in np.array_split(np.asarray(batch, dtype=np.int64), parts)]


def train(model: nn.Module, train_features: Sequence[Feature], args: Optional[TrainingArguments] = None,
          eval_features: Optional[Sequence[Feature]] = None, callbacks: Iterable[Callback] = (),
          resume_from: Optional[str | Path] = None,
          metrics_fn: Callable[..., Dict[str, float]] = classification_metrics) -> TrainResult:
    """Fine-tune ``model`` on ``train_features`` (from :func:`encode_examples`), evaluating every epoch.

    Under ``torchrun`` call :func:`setup_distributed` first: the model is wrapped in DistributedDataParallel
    and each process trains on its share of every global batch. ``resume_from`` (a checkpoint file or an
    output_dir) continues a saved run exactly where it stopped.
    """
    from tqdm.auto import tqdm

    args = args or TrainingArguments()
    callbacks = list(callbacks)
    rank, world = _dist_info()
    device = torch.device(args.device) if args.device else (
        torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu"))
    precision = resolve_precision(args.precision, device)
    num_labels = args.num_labels if args.num_labels is not None else _model_num_labels(model)
    _check_labels(train_features, num_labels, "training")
    if eval_features is not None:
        _check_labels(eval_features, num_labels, "evaluation")

    model.to(device)
    model.train()
    lengths = [len(f["input_ids"]) for f in train_features]
    batches_per_epoch = math.ceil(len(train_features) / args.train_batch_size)
    t_total = num_update_steps(len(train_features), args.train_batch_size, args.num_train_epochs, args.max_steps)
    optimizer = build_optimizer(model, args, t_total)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    state = TrainState(t_total=t_total)

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
        from minibert.runtime import set_seed

        set_seed(args.seed)
        np.random.seed(args.seed)

    ddp = model
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                  else None)
    parts = world * args.gradient_accumulation_steps
    ckpt_path = Path(args.output_dir) / CHECKPOINT_NAME if args.output_dir else None
    last_eval: Optional[EvalResult] = None
    collate = lambda feats: pad_collate(feats, pad_to_multiple_of=8 if device.type == "cuda" else None)  # noqa

    def emit(event: str) -> None:
        for cb in callbacks:
            cb(event, state)

    start = time.perf_counter()
    while state.epoch < args.num_train_epochs and state.global_step < t_total:
        batches = length_bucketed_batches(lengths, args.train_batch_size, args.seed, state.epoch,
                                          bucket_batches=args.bucket_batches)
        epoch_start = time.perf_counter()
        bar = tqdm(total=batches_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}",
                   disable=not args.progress or rank != 0, leave=False)
        for batch in batches[state.step_in_epoch:]:
            micro = _micro_batches(batch, parts)
            batch_loss = torch.zeros((), device=device)
            for k in range(args.gradient_accumulation_steps):
                idx = micro[k * world + rank]
                # Weight = this micro-batch's share of the global batch; times `world` because DDP averages
                # gradients over processes. An empty share (tiny last batch) still runs, with weight 0.
                weight = len(idx) * world / len(batch)
                feats = [train_features[i] for i in (idx or batch[:1])]
                sync = k == args.gradient_accumulation_steps - 1
                with (ddp.no_sync() if world > 1 and not sync else nullcontext()):
                    with _autocast(device, precision):
                        loss = _loss_of(ddp(**_to(collate(feats), device)))
                    scaler.scale(loss.float() * weight).backward()
                batch_loss += loss.detach().float() * weight
            if world > 1:
                torch.distributed.all_reduce(batch_loss)
                batch_loss /= world
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            state.step_in_epoch += 1
            bar.update(1)
            if state.global_step % args.logging_steps == 0:
                loss_value = batch_loss.item()
                state.log_history.append({"step": state.global_step,
                                          "epoch": state.epoch + state.step_in_epoch / batches_per_epoch,
                                          "loss": loss_value, "lr": _update_lr(optimizer, state.global_step)})
                bar.set_postfix(loss=f"{loss_value:.4f}")
            emit("step")
            done = state.global_step >= t_total
            if ckpt_path and args.save_steps and state.global_step % args.save_steps == 0 and rank == 0 \
                    and state.step_in_epoch < batches_per_epoch and not done:
                save_checkpoint(ckpt_path, model, optimizer, scaler, state, args)
            if done:
                break
        bar.close()
        state.epoch_times.append(time.perf_counter() - epoch_start)
        if eval_features is not None and args.evaluate_every_epoch:
            last_eval = evaluate(model, eval_features, args.eval_batch_size, device, precision, metrics_fn)
            state.eval_history.append({"step": state.global_step, "epoch": state.epoch + 1, **last_eval.metrics})
            logger.info("epoch %d: %s", state.epoch + 1, last_eval.metrics)
            emit("evaluate")
        state.epoch += 1
        state.step_in_epoch = 0
        if ckpt_path and rank == 0:
            save_checkpoint(ckpt_path, model, optimizer, scaler, state, args)
    if eval_features is not None and last_eval is None:
        last_eval = evaluate(model, eval_features, args.eval_batch_size, device, precision, metrics_fn)
    emit("end")
    return TrainResult(state, last_eval, precision, time.perf_counter() - start)
