"""How much memory fine-tuning BERT needs, predicted from the config, and counted exactly on a real step.

Google's README answers "out of memory" in prose (shorter sequences, smaller batches, a smaller model, Adam's
extra memory). This module turns it into arithmetic a learner can check. One training step holds:

  parameters        the weights (fp32; under fp16/bf16 autocast they are the fp32 master weights)
  gradients         one fp32 gradient per weight
  optimizer_state   BertAdam / AdamW: two fp32 moments per weight (m and v); SGD: none
  activations       every tensor autograd saves for backward that is not a parameter: per layer the input of
                    each linear, q/k/v, the attention probabilities (explicit path only; SDPA keeps a
                    logsumexp per query instead), dropout masks, LayerNorm inputs and statistics, the GELU input,
                    and the weight copies a matmul saves (the stacked QKV weight; under autocast the fp16/bf16
                    copy of every linear weight)
  peak              the largest sum of the above alive at one time, plus the transient buffers of the backward
                    pass or the optimizer step

The activation terms mirror what PyTorch really saves for ``BertForSequenceClassification`` (one tensor each,
read off ``torch.autograd.graph.saved_tensors_hooks``); :func:`count_saved_bytes` counts them on a real step so
tests can hold :func:`estimate` to within 10%. With gradient checkpointing only each layer's input is kept and
one layer is recomputed (its activations alive again) while its backward runs.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, fields
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .modeling import BertConfig, BertEncoder, BertLayer

PRECISIONS = ("fp32", "fp16", "bf16")
OPTIMIZERS = ("bertadam", "adamw", "sgd")
ATTENTIONS = ("sdpa", "explicit")
DEVICES = ("cuda", "cpu")

GB = 10 ** 9  # GPU makers' gigabyte ("a 16 GB T4")
GiB = 2 ** 30  # what torch.cuda.memory_allocated / nvidia-smi count in

_OPTIMIZER_MOMENTS = {"bertadam": 2, "adamw": 2, "sgd": 0}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step, by part. ``peak`` is what the GPU must hold at the worst moment."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    workspace: int  # transient buffers at the peak: backward's largest gradients or the optimizer's temporaries
    peak: int

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def gib(self) -> dict[str, float]:
        """The parts in GiB (2**30 bytes), rounded for display."""
        return {name: round(value / GiB, 3) for name, value in self.as_dict().items()}


# ----------------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------------

def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {choices}")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def _check_args(config: BertConfig, batch_size: int, seq_len: int, precision: str, optimizer: str,
                grad_accumulation: int, attention: str, device: str, num_labels: int) -> None:
    if not isinstance(config, BertConfig):
        raise TypeError(f"config must be a minibert BertConfig, got {type(config).__name__}; "
                        "e.g. BertConfig() for BERT-Base or model.config")
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("seq_len", seq_len)
    _check_positive_int("grad_accumulation", grad_accumulation)
    _check_positive_int("num_labels", num_labels)
    if seq_len > config.max_position_embeddings:
        raise ValueError(f"seq_len={seq_len} exceeds max_position_embeddings={config.max_position_embeddings}; "
                         f"BERT cannot read longer sequences, use seq_len<={config.max_position_embeddings}")
    if grad_accumulation > batch_size:
        raise ValueError(f"grad_accumulation={grad_accumulation} splits batch_size={batch_size} into micro-batches "
                         "of less than one example; use grad_accumulation <= batch_size")
    _check_choice("precision", precision, PRECISIONS)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("attention", attention, ATTENTIONS)
    _check_choice("device", device, DEVICES)


# ----------------------------------------------------------------------------------------------------------
# Parameters, gradients, optimizer state: exact
# ----------------------------------------------------------------------------------------------------------

def parameter_count(config: BertConfig, num_labels: int | None = 2, add_pooling_layer: bool = True) -> int:
    """Weights of ``BertModel`` (with the pooler unless ``add_pooling_layer=False``), plus a classifier of
    ``num_labels`` outputs on top (``BertForSequenceClassification``; None = the bare encoder).

    BERT-Base: (V + P + T)H + 2H embeddings, L (4H^2 + 2HI + 9H + I) layers, H^2 + H pooler = 109,482,240."""
    H, I = config.hidden_size, config.intermediate_size
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * H + 2 * H
    layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H  # q,k,v,out; LN; FFN in, out; LN
    total = embeddings + config.num_hidden_layers * layer
    if add_pooling_layer:
        total += H * H + H
    if num_labels is not None:
        total += H * num_labels + num_labels
    return total


def _linear_weight_count(config: BertConfig, num_labels: int) -> int:
    """Weights autocast casts to fp16/bf16 once per step: every linear layer's matrix (not biases, embeddings,
    LayerNorm). The stacked QKV weight is cast per call, so it is counted with the layer, not here."""
    H, I = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (H * H + 2 * H * I) + H * H + H * num_labels


# ----------------------------------------------------------------------------------------------------------
# Activations: the tensors autograd saves, one term each
# ----------------------------------------------------------------------------------------------------------

def _layer_terms(config: BertConfig, B: int, S: int, precision: str, attention: str, device: str,
                 masked: bool) -> dict[str, int]:
    """Bytes one ``BertLayer`` saves for backward in train mode, by part (see the module docstring)."""
    H, I, A = config.hidden_size, config.intermediate_size, config.num_attention_heads
    mixed = precision != "fp32"
    act = 2 if mixed else 4  # matmul inputs and outputs
    p_hidden, p_attn = config.hidden_dropout_prob, config.attention_probs_dropout_prob

    def dropout_mask(n: int, dtype_bytes: int, p: float) -> int:
        # CUDA keeps a bool mask; the CPU keeps the scaled float noise it multiplied by, in the input's dtype.
        return 0 if p == 0 else n * (1 if device == "cuda" else dtype_bytes)

    bsh, bsi, bas2 = B * S * H, B * S * I, B * A * S * S
    t: dict[str, int] = {}
    t["linear inputs"] = 3 * bsh * act + bsi * act  # QKV input, attention-output input, FFN in, FFN out (GELU out)
    t["GELU input"] = bsi * act
    t["weight copies"] = 3 * H * H * act  # torch.cat of the q, k, v weights, saved by the one QKV matmul
    t["LayerNorm inputs and statistics"] = 2 * (bsh * 4 + 2 * B * S * 4)  # in fp32 even under autocast
    t["dropout masks"] = 2 * dropout_mask(bsh, act, p_hidden)
    if attention in ("explicit", "sdpa_math"):
        # "sdpa_math": SDPA on a CPU with dropout falls back to PyTorch's math kernel, which saves what the
        # explicit path saves but computes in fp32 even under autocast (fp32 copies of q, k, v and probabilities).
        attn_act = 4 if attention == "sdpa_math" else act
        # q and k^T are copied into (batch*heads) matrices for the scores matmul, v for the context matmul;
        # softmax keeps its output (fp32: autocast runs softmax in fp32); dropout keeps its mask; the context
        # matmul keeps the dropped probabilities (a half copy under autocast, the same tensor when p=0 in fp32).
        t["q, k, v"] = 3 * bsh * attn_act
        t["attention probabilities"] = bas2 * 4 + (bas2 * attn_act if (p_attn > 0 or mixed) else 0)
        t["dropout masks"] += dropout_mask(bas2, 4, p_attn)
    else:
        # SDPA keeps q, k, v, its output (which the next linear reads: counted there), a logsumexp per query and
        # the additive padding mask.
        t["q, k, v"] = 3 * bsh * act  # views of the one (batch, seq, 3H) QKV output: one storage
        # logsumexp; the padding mask (one tensor shared by the layers in fp32, a cast copy per layer under autocast)
        t["attention probabilities"] = B * A * S * 4 + (B * S * act if masked and mixed else 0)
    return t


def _outside_terms(config: BertConfig, B: int, S: int, precision: str, attention: str, device: str,
                   num_labels: int, masked: bool) -> dict[str, int]:
    """Bytes saved outside the layers: embedding lookups and their LayerNorm, pooler, classifier, loss."""
    H = config.hidden_size
    mixed = precision != "fp32"
    act = 2 if mixed else 4
    p = config.hidden_dropout_prob

    def dropout_mask(n: int, dtype_bytes: int) -> int:
        return 0 if p == 0 else n * (1 if device == "cuda" else dtype_bytes)

    t = {
        "token ids": (2 * B * S + S) * 8,  # input_ids, token_type_ids, positions (int64) for the lookups' backward
        "LayerNorm inputs and statistics": B * S * H * 4 + 2 * B * S * 4,
        "dropout masks": dropout_mask(B * S * H, 4) + dropout_mask(B * H, act),
        # The pooler reads [CLS] as a view of the last layer's output, which keeps the whole (batch, seq, hidden)
        # tensor alive in fp32; autocast's cast copies only the (batch, hidden) [CLS] rows.
        "linear inputs": (B * H * 2 if mixed else B * S * H * 4) + 2 * B * H * act,  # pooler, tanh out, classifier
        "loss": B * num_labels * 4 + B * 8 + 4,  # log-softmax output, targets, total weight
    }
    if mixed:
        t["weight copies"] = _linear_weight_count(config, num_labels) * 2
    if attention == "sdpa" and masked and not mixed:
        t["attention probabilities"] = B * S * 4  # the (batch, 1, 1, seq) additive mask SDPA keeps
    return t


def _effective_attention(config: BertConfig, attention: str, device: str) -> str:
    """The kernel that really runs: PyTorch's fused CPU attention has no dropout, so in training with attention
    dropout on a CPU, SDPA runs its math fallback (the explicit formula, computed in fp32)."""
    if device == "cpu" and attention == "sdpa" and config.attention_probs_dropout_prob > 0:
        return "sdpa_math"
    return attention


def activation_breakdown(config: BertConfig, batch_size: int, seq_len: int, precision: str = "fp32",
                         gradient_checkpointing: bool = False, attention: str = "sdpa", device: str = "cuda",
                         num_labels: int = 2, masked: bool = True) -> dict[str, int]:
    """Bytes saved for backward by one forward of ``BertForSequenceClassification`` on (batch_size, seq_len),
    by part, summed over the layers. ``masked``: the batch has padding (so SDPA gets a mask).

    With ``gradient_checkpointing`` the layers keep only their input (fp32, one (batch, seq, hidden) tensor
    each) and one layer's parts come back while it is recomputed in the backward pass."""
    _check_args(config, batch_size, seq_len, precision, "sgd", 1, attention, device, num_labels)
    attention = _effective_attention(config, attention, device)
    B, S, L, H = batch_size, seq_len, config.num_hidden_layers, config.hidden_size
    layer = _layer_terms(config, B, S, precision, attention, device, masked)
    outside = _outside_terms(config, B, S, precision, attention, device, num_labels, masked)
    parts: dict[str, int] = {}
    for name, value in outside.items():
        parts[name] = parts.get(name, 0) + value
    if gradient_checkpointing:
        if precision == "fp32":  # the recomputed layer's QKV input IS the kept layer input: count it once
            layer = {**layer, "linear inputs": layer["linear inputs"] - B * S * H * 4}
        parts["checkpointed layer inputs"] = L * B * S * H * 4
        for name, value in layer.items():
            parts[name] = parts.get(name, 0) + value
        if precision != "fp32":  # autocast's weight copies of the checkpointed layers are dropped after forward
            parts["weight copies"] -= (L - 1) * (H * H + 2 * H * config.intermediate_size) * 2
    else:
        for name, value in layer.items():
            parts[name] = parts.get(name, 0) + L * value
    return parts


# ----------------------------------------------------------------------------------------------------------
# The estimate
# ----------------------------------------------------------------------------------------------------------

def estimate(config: BertConfig, batch_size: int, seq_len: int, precision: str = "fp32",
             optimizer: str = "bertadam", grad_accumulation: int = 1, gradient_checkpointing: bool = False,
             attention: str = "sdpa", device: str = "cuda", num_labels: int = 2) -> MemoryEstimate:
    """Predict the memory of one fine-tuning step of ``BertForSequenceClassification``.

    ``batch_size`` is the examples per optimizer update; ``grad_accumulation`` splits it into that many
    micro-batches (activations shrink, the gradients stay alive across them). ``precision`` "fp16"/"bf16" means
    autocast over fp32 weights, as ``training.train`` runs it. ``device`` "cpu" counts dropout masks as the CPU
    keeps them (float noise instead of bool); on a CPU with attention dropout SDPA computes attention
    with PyTorch's math fallback (the fused CPU kernel has no dropout), and the estimate counts that.
    """
    _check_args(config, batch_size, seq_len, precision, optimizer, grad_accumulation, attention, device, num_labels)
    if not isinstance(gradient_checkpointing, bool):
        raise ValueError(f"gradient_checkpointing must be True or False, got {gradient_checkpointing!r}")
    n = parameter_count(config, num_labels)
    parameters = 4 * n
    gradients = 4 * n
    optimizer_state = 4 * n * _OPTIMIZER_MOMENTS[optimizer]
    micro = math.ceil(batch_size / grad_accumulation)
    activations = sum(activation_breakdown(config, micro, seq_len, precision, gradient_checkpointing, attention,
                                           device, num_labels).values())
    # Backward's transient: the gradients of the two largest tensors of the layer being differentiated
    # (the FFN's (batch, seq, 4H) pair, or the (batch, heads, seq, seq) scores and probabilities).
    act = 2 if precision != "fp32" else 4
    A, S, I = config.num_attention_heads, seq_len, config.intermediate_size
    explicit = _effective_attention(config, attention, device) != "sdpa"
    backward_ws = 2 * micro * S * max(I * act, (A * S * 4 if explicit else 0))
    # The optimizer's temporaries: BertAdam's sqrt(v) + eps and update for the largest weight (word embeddings).
    largest = max(config.vocab_size, config.intermediate_size) * config.hidden_size
    step_ws = 2 * largest * 4 if _OPTIMIZER_MOMENTS[optimizer] else 0
    # Gradients are set to None after each update, so during the first micro-batch's backward they are being
    # created while activations are freed: the peak is the larger of the two moments. When accumulating, the
    # gradients of earlier micro-batches are alive during every later backward.
    during_backward = activations + backward_ws + (gradients if grad_accumulation > 1 else 0)
    during_step = gradients + step_ws
    peak = parameters + optimizer_state + max(during_backward, during_step)
    workspace = backward_ws if during_backward >= during_step else step_ws
    return MemoryEstimate(parameters, gradients, optimizer_state, activations, workspace, peak)


def fits(config: BertConfig, batch_size: int, seq_len: int, memory_bytes: float, reserved_bytes: float = 0,
         fragmentation: float = 1.0, **kwargs: Any) -> bool:
    """Whether a step fits: ``peak * fragmentation + reserved_bytes <= memory_bytes``.

    ``reserved_bytes`` is what the framework takes before the model (CUDA context, cuBLAS/cuDNN workspaces);
    ``fragmentation`` the allocator's slack over the bytes in live tensors."""
    peak = estimate(config, batch_size, seq_len, **kwargs).peak
    return peak * fragmentation + reserved_bytes <= memory_bytes


def max_batch_size(config: BertConfig, seq_len: int, memory_bytes: float, reserved_bytes: float = 0,
                   fragmentation: float = 1.0, limit: int = 1 << 16, **kwargs: Any) -> int:
    """The largest batch that :func:`fits` in ``memory_bytes`` (0 if not even one example does).

    ``kwargs`` go to :func:`estimate` (precision, optimizer, gradient_checkpointing, attention, ...); with
    ``grad_accumulation`` the batch is the examples per update."""
    if memory_bytes <= 0:
        raise ValueError(f"memory_bytes must be > 0, got {memory_bytes!r}; e.g. 12 * memory.GB")
    if fragmentation < 1:
        raise ValueError(f"fragmentation is a factor >= 1 on the live bytes, got {fragmentation!r}")
    accumulation = kwargs.get("grad_accumulation", 1)

    def ok(b: int) -> bool:
        return fits(config, b, seq_len, memory_bytes, reserved_bytes, fragmentation, **kwargs)

    lo = accumulation  # the smallest batch the accumulation allows
    if not ok(lo):
        return 0
    hi = lo
    while hi < limit and ok(hi * 2):
        hi *= 2
    if hi >= limit:
        return limit
    top = hi * 2  # ok(hi) and not ok(top): bisect
    while top - hi > 1:
        mid = (hi + top) // 2
        hi, top = (mid, top) if ok(mid) else (hi, mid)
    return hi


# ----------------------------------------------------------------------------------------------------------
# Counting what a real step saves
# ----------------------------------------------------------------------------------------------------------

def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


@contextlib.contextmanager
def _record_saved(into: dict[int, int], exclude: set[int]) -> Iterator[None]:
    """Record the storage (pointer -> bytes) of every tensor autograd saves in this block, except ``exclude``."""
    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr, nbytes = _storage_key(t)
        if ptr not in exclude and nbytes:
            into[ptr] = max(nbytes, into.get(ptr, 0))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def count_saved_bytes(model: nn.Module, batch: Mapping[str, torch.Tensor],
                      autocast_dtype: torch.dtype | None = None, backward: bool = True) -> int:
    """Bytes autograd keeps for backward in one training step of ``model(**batch)`` (a loss), counted exactly:
    every tensor ``saved_tensors_hooks`` sees, once per storage, parameters left out.

    With gradient checkpointing on (``BertEncoder.gradient_checkpointing``), autograd saves nothing inside a
    checkpointed layer; the checkpoint keeps each layer's input instead, and while one layer's backward runs its
    recomputed activations are alive again. Both are counted: the inputs the layers were called with, and what
    one layer saves when it is run again on its input. ``backward`` runs the backward pass after counting, so
    the step is complete."""
    params = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    checkpointing = model.training and any(getattr(m, "gradient_checkpointing", False)
                                           for m in model.modules() if isinstance(m, BertEncoder))
    layers = [m for m in model.modules() if isinstance(m, BertLayer)]
    calls: list[tuple[tuple, dict]] = []
    recording = [True]

    def remember(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if recording[0]:
            calls.append((args, kwargs))

    handles = [layer.register_forward_pre_hook(remember, with_kwargs=True) for layer in layers] \
        if checkpointing else []
    device_type = next(model.parameters()).device.type
    amp = torch.autocast(device_type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    saved: dict[int, int] = {}
    try:
        with _record_saved(saved, params), amp:
            loss = model(**batch)
        recording[0] = False
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("model(**batch) must return the scalar loss: put 'labels' in the batch")
        if checkpointing and calls:
            for args, _ in calls:  # the layer inputs the checkpoints hold
                for a in args:
                    if isinstance(a, torch.Tensor) and a.is_floating_point():
                        ptr, nbytes = _storage_key(a)
                        if ptr not in params:
                            saved[ptr] = nbytes
            args, kwargs = calls[-1]
            x = args[0].detach().requires_grad_()  # same storage as the kept input: counted once
            again: dict[int, int] = {}
            with _record_saved(again, params), amp:
                out = layers[-1](x, *args[1:], **kwargs)
            saved.update(again)
            del out
        total = sum(saved.values())
        if backward:
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    return total


# ----------------------------------------------------------------------------------------------------------
# Max-batch tables: Google's 12 GB table, and the same question for today's cards
# ----------------------------------------------------------------------------------------------------------

# google-research/bert README, "Out-of-memory issues": BERT-Base, max batch on a 12 GB Titan X, TF 1.11, fp32,
# Adam, by max_seq_length. The batches were found by trial and are round: 6 at 512 holds fewer tokens than
# 12 at 384 (a cost per token that grows with length explains part of it; minibert's model predicts that 7 x 512
# still costs less than 12 x 384), so read them as "this fit".
GOOGLE_12GB_BERT_BASE = {64: 64, 128: 32, 256: 16, 320: 14, 384: 12, 512: 6}
TITAN_X_BYTES = 12 * GiB  # 12288 MiB

# What the tables assume beyond the bytes in live tensors. PyTorch: the CUDA context and cuBLAS workspace take
# about 0.5 GiB before the model, and the caching allocator holds ~10% more than the live tensors (rounding to
# blocks, fragmentation). TF 1.11 (Google's table): one factor of 2.25 on the whole peak, fitted to the BERT-Base
# rows only (LayerNorm and GELU as chains of small ops, each keeping its input, float dropout masks, the BFC
# allocator's bins), with the same 0.5 GiB reserved. A curve fit, and a poor one beyond Base: it leaves no room
# for BERT-Large's 5.4 GB of static bytes (batch 0 at every length, where Google ran 12/6/2/1/0/0). Notebook 16
# fits the static bytes and the activations separately, to both of Google's tables.
PYTORCH_ALLOCATOR = {"reserved_bytes": GiB // 2, "fragmentation": 1.10}
TF2018_ALLOCATOR = {"reserved_bytes": GiB // 2, "fragmentation": 2.25}

# Memory of the cards in the tables, as torch.cuda.get_device_properties(0).total_memory reports it.
CARDS = {"12 GB Titan X": TITAN_X_BYTES, "16 GB T4": 15_843_721_216, "40 GB A100": 42_505_273_344,
         "80 GB A100/H100": 85_174_583_296}


def max_batch_table(config: BertConfig, seq_lens: Any, memory_bytes: float, reserved_bytes: float = 0,
                    fragmentation: float = 1.0, **kwargs: Any) -> dict[int, int]:
    """{seq_len: largest batch} for one card and one set of :func:`estimate` options."""
    return {s: max_batch_size(config, s, memory_bytes, reserved_bytes, fragmentation, **kwargs) for s in seq_lens}
