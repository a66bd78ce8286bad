"""Fine-tuning throughput and model FLOPs utilization: minibert vs transformers, same config, same run.

    python benchmarks/bench_training_speed.py                # bert-base on a GPU; small configs on a CPU
    python benchmarks/bench_training_speed.py --compile      # add torch.compile rows (default on a GPU)
    python benchmarks/bench_training_speed.py --steps 20 --seq 128 512

One row per (sequence length, precision, attention path, torch.compile): sequences/s of a full training step
(forward with labels, backward, BertAdam update) of BertForSequenceClassification, for minibert and for
transformers' BertForSequenceClassification built from the same config (random weights: speed does not depend
on them), with the same optimizer, batches and autocast. Contenders alternate inside every round so a slow
spell on a shared machine hits both; the median round is reported. "ratio" is minibert / transformers
(>= 1.0 means minibert is at least as fast).

MFU = model FLOPs per second / the card's dense peak for that precision (``minibert.cost.GPUS``; fp32 rows run
TF32 tensor cores, which this script turns on). Model FLOPs of a step are ``minibert.cost.training_flops``, the
formula the notebooks and the full-mode planner use: 3x the forward (forward + backward's two matmuls per forward
matmul), 2 * tokens * (weights in matmuls) plus the attention scores and context, 4 * batch * seq^2 * hidden per
layer. Steps are timed with ``minibert.cost.Timer`` (it synchronizes the GPU). On a CPU there is no published peak,
so MFU is left out. The last lines project the time of a 3-epoch MRPC run at seq 128 (3668 pairs) from the
measured throughput; bench_finetune_mrpc.py measures a real one.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
from typing import Any, Callable

import torch

from minibert import BertConfig, BertForSequenceClassification, cost
from minibert.optimization import BertAdam

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MRPC_TRAIN_PAIRS = 3668


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The card's dense peak for ``precision`` (fp32 rows: TF32, which main() turns on), None if unknown."""
    gpu = cost.detect_gpu(device) if device.type == "cuda" else None
    if gpu is None:
        return None
    return gpu.peak_flops.get("tf32" if precision == "fp32" and torch.backends.cuda.matmul.allow_tf32 else precision)


def build_pair(config: BertConfig, attention: str, device: torch.device):
    """minibert and transformers sequence classifiers with the same config and weights."""
    import transformers

    torch.manual_seed(0)
    ours = BertForSequenceClassification(config).to(device).train()
    ours.set_attn_implementation(attention)
    hf_config = transformers.BertConfig(**config.to_dict(), num_labels=2,
                                        attn_implementation="sdpa" if attention == "sdpa" else "eager")
    theirs = transformers.BertForSequenceClassification(hf_config).to(device).train()
    missing = theirs.load_state_dict(ours.state_dict(), strict=False)  # same names: same weights
    assert not missing.unexpected_keys, missing.unexpected_keys
    return ours, theirs


def make_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], precision: str, device: torch.device,
              compiled: bool) -> Callable[[], None]:
    optimizer = BertAdam(model.parameters(), lr=1e-5, warmup=0.1, t_total=10_000)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    forward = torch.compile(model) if compiled else model
    dtype = PRECISIONS[precision]

    def step() -> None:
        amp = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with amp:
            out = forward(**batch)
        loss = out if isinstance(out, torch.Tensor) else out.loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    with cost.Timer(device) as timer:
        for _ in range(steps):
            step()
    return timer.seconds


def bench_row(config: BertConfig, batch_size: int, seq: int, precision: str, attention: str, compiled: bool,
              device: torch.device, steps: int, rounds: int) -> dict[str, Any]:
    ours, theirs = build_pair(config, attention, device)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, config.vocab_size, (batch_size, seq), generator=g)
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids),
             "labels": torch.randint(0, 2, (batch_size,), generator=g)}
    batch = {k: v.to(device) for k, v in batch.items()}
    contenders = {"minibert": make_step(ours, batch, precision, device, compiled),
                  "transformers": make_step(theirs, batch, precision, device, compiled)}
    for step in contenders.values():  # warm up: allocator, cuDNN/cuBLAS heuristics, compilation
        time_steps(step, 3 if compiled else 2, device)
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, step in contenders.items():
            seconds[name].append(time_steps(step, steps, device))
    row: dict[str, Any] = {}
    flops = cost.training_flops(config, batch_size, seq)
    peak = peak_flops(device, precision)
    for name, times in seconds.items():
        per_step = statistics.median(times) / steps
        row[f"{name} seq/s"] = batch_size / per_step
        row[f"{name} MFU"] = flops / per_step / peak if peak else None
    row["ratio"] = row["minibert seq/s"] / row["transformers seq/s"]
    del ours, theirs, contenders
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seq", type=int, nargs="+", default=None, help="sequence lengths (GPU: 128 512)")
    parser.add_argument("--precision", nargs="+", default=None, choices=list(PRECISIONS))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: on for a GPU, off on a CPU, where compiling "
                             "takes minutes)")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 rows use TF32 tensor cores, as the peak assumes
        torch.backends.cudnn.allow_tf32 = True
        config = BertConfig()  # bert-base
        seqs = args.seq or [128, 512]
        batches = {s: 32 if s <= 128 else 8 for s in seqs}
        bf16 = cost.detect_gpu(device).native_bf16  # emulated bf16 (a T4's) is not worth a row
        precisions = args.precision or (["fp32", "fp16"] + (["bf16"] if bf16 else []))
        steps = args.steps or 10
    else:
        # A small BERT (4 layers, hidden 256, the BERT-Mini/Small family) so the CPU table takes minutes.
        config = dataclasses.replace(BertConfig(), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=1024)
        seqs = args.seq or [128]
        batches = {s: 16 for s in seqs}
        precisions = args.precision or ["fp32", "bf16"]  # fp16 autocast is GPU only (minibert's training too)
        steps = args.steps or 3
    compile_options = [False, True] if (args.compile if args.compile is not None else gpu) else [False]
    import transformers

    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"L={config.num_hidden_layers} H={config.hidden_size}; {steps} steps x {args.rounds} rounds, median")
    if not gpu:
        print("CPU: small config; 'sdpa' rows run torch's SDPA with its attention dropout (on a CPU that is "
              "its math fallback, not a fused kernel); no MFU (no published peak)")
    header = (f"{'seq':>4} {'batch':>5} {'prec':>5} {'attention':>9} {'compile':>7} | {'minibert seq/s':>14} "
              f"{'transformers seq/s':>18} {'ratio':>6} | {'MFU ours':>8} {'MFU theirs':>10}")
    print(header)
    print("-" * len(header))
    best_128 = None
    for seq in seqs:
        for precision in precisions:
            for attention in ("sdpa", "explicit"):
                for compiled in compile_options:
                    try:
                        row = bench_row(config, batches[seq], seq, precision, attention, compiled, device, steps,
                                        args.rounds)
                    except Exception as err:  # e.g. torch.compile without a compiler, or out of memory
                        print(f"{seq:>4} {batches[seq]:>5} {precision:>5} {attention:>9} {str(compiled):>7} | "
                              f"skipped: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
                        continue
                    mfu = lambda v: f"{v:8.1%}" if v is not None else f"{'n/a':>8}"  # noqa: E731
                    print(f"{seq:>4} {batches[seq]:>5} {precision:>5} {attention:>9} {str(compiled):>7} | "
                          f"{row['minibert seq/s']:14.1f} {row['transformers seq/s']:18.1f} {row['ratio']:5.2f}x | "
                          f"{mfu(row['minibert MFU'])} {mfu(row['transformers MFU']):>10}")
                    if seq == 128 and (best_128 is None or row["minibert seq/s"] > best_128[0]):
                        best_128 = (row["minibert seq/s"], precision, attention, compiled)
    if best_128:
        rate, precision, attention, compiled = best_128
        print(f"MRPC, 3 epochs at seq 128 (padded, an upper bound; dynamic padding is faster): "
              f"{3 * MRPC_TRAIN_PAIRS / rate / 60:.1f} min at minibert's best row ({precision}, {attention}, "
              f"compile={compiled}) on this config")


if __name__ == "__main__":
    main()
