"""Speed of minibert's BertModel vs transformers.BertModel, same weights, same batch, same run.

    python benchmarks/bench_model.py [--batch 32] [--seq 128] [--rounds 3] [--threads N] [--cpu-time]

On a machine shared with other jobs, wall time is noise: use ``--threads 1 --cpu-time`` (CPU seconds of one
thread do not count the time other programs hold the core).

The packaged all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads) is the model, so it runs offline on a CPU in
a few minutes. Measurements alternate ours / reference inside every round (the machine may be shared, so a
slow spell hits every contender), and the table reports the median round. GFLOP/s counts the matmuls of the
encoder and pooler (``minibert.cost.forward_flops``, the one formula the notebooks and benchmarks use; train: 3x);
the "plain matmul" row times those same matmul shapes alone with torch.matmul in this run: the ceiling the model
could reach. Times come from ``minibert.cost.Timer``.
"""
from __future__ import annotations

import argparse
import math
import statistics

import torch

from minibert.assets import checkpoint_path
from minibert.cost import Timer, forward_flops
from minibert.modeling import BertModel


def encoder_matmul_shapes(cfg, batch: int, seq: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(A shape, B shape) of every matmul in one forward pass of the encoder."""
    n, h, i, heads = batch * seq, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    d = h // heads
    per_layer = [((n, h), (h, h))] * 4 + [((n, h), (h, i)), ((n, i), (i, h))]  # q, k, v, out; ffn in, out
    per_layer += [((batch, heads, seq, d), (batch, heads, d, seq)), ((batch, heads, seq, seq), (batch, heads, seq, d))]
    return per_layer * cfg.num_hidden_layers + [((batch, h), (h, h))]  # + pooler


def timed(fn, cpu_time: bool) -> float:
    with Timer(cpu_time=cpu_time) as timer:
        fn()
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time CPU seconds of this process instead of wall seconds: with --threads 1 this is "
                             "robust to other programs sharing the CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    torch.manual_seed(0)
    folder = str(checkpoint_path())
    ours = {"minibert sdpa": BertModel.from_pretrained(folder),
            "minibert explicit": BertModel.from_pretrained(folder).set_attn_implementation("explicit")}
    theirs = {f"transformers {impl}": transformers.BertModel.from_pretrained(folder, attn_implementation=impl)
              for impl in ("eager", "sdpa")}
    cfg = ours["minibert sdpa"].config
    ids = torch.randint(1000, cfg.vocab_size, (args.batch, args.seq))
    types = torch.zeros_like(ids)
    types[:, args.seq // 2:] = 1
    lengths = torch.randint(args.seq // 2, args.seq + 1, (args.batch,))
    lengths[0] = args.seq
    mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()  # a padded batch, as in fine-tuning

    def forward(name, model):
        if name.startswith("minibert"):
            return model(ids, types, mask, output_all_encoded_layers=False)[0]
        return model(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state

    def infer(name, model):
        model.eval()
        with torch.inference_mode():
            forward(name, model)

    def train_step(name, model):
        model.train()
        out = forward(name, model)
        loss = out.float().pow(2).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    shapes = encoder_matmul_shapes(cfg, args.batch, args.seq)
    mats = [(torch.randn(a), torch.randn(b)) for a, b in shapes]

    def plain_matmul():
        for a, b in mats:
            torch.matmul(a, b)

    models = {**ours, **theirs}
    times: dict[tuple[str, str], list[float]] = {}
    for name, model in models.items():  # warm up every path once
        infer(name, model)
        train_step(name, model)
    plain_matmul()
    order = list(models)
    for r in range(args.rounds):
        times.setdefault(("matmul", "plain"), []).append(timed(plain_matmul, args.cpu_time))
        for name in (order if r % 2 == 0 else order[::-1]):  # alternate the order too
            times.setdefault(("forward", name), []).append(timed(lambda: infer(name, models[name]), args.cpu_time))
        for name in (order if r % 2 == 0 else order[::-1]):
            times.setdefault(("train", name), []).append(timed(lambda: train_step(name, models[name]), args.cpu_time))

    tokens = args.batch * args.seq
    fwd_flops = forward_flops(cfg, args.batch, args.seq, num_labels=None)  # the encoder and the pooler
    assert sum(2 * math.prod(a) * b[-1] for a, b in shapes) == fwd_flops, "the plain matmuls must be the model's"
    best_ref = {k: min(statistics.median(times[(k, n)]) for n in theirs) for k in ("forward", "train")}
    best_ref_name = {k: min(theirs, key=lambda n: statistics.median(times[(k, n)])) for k in ("forward", "train")}
    plain = statistics.median(times[("matmul", "plain")])
    print(f"BertModel all-MiniLM-L6-v2 (L={cfg.num_hidden_layers}, H={cfg.hidden_size}, A={cfg.num_attention_heads})"
          f", batch {args.batch} x seq {args.seq} (padded, {int(mask.sum())} real tokens), CPU float32, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"median of {args.rounds} interleaved rounds, {'CPU' if args.cpu_time else 'wall'} time")
    print(f"{'mode':<8} {'implementation':<22} {'ms/batch':>9} {'tokens/s':>10} {'GFLOP/s':>8} "
          f"{'vs best transformers':>21}")
    for mode, mult in (("forward", 1.0), ("train", 3.0)):  # backward costs about twice the forward
        for name in order:
            t = statistics.median(times[(mode, name)])
            print(f"{mode:<8} {name:<22} {t * 1e3:>9.1f} {tokens / t:>10.0f} {mult * fwd_flops / t / 1e9:>8.1f} "
                  f"{best_ref[mode] / t:>20.2f}x")
    print(f"{'matmul':<8} {'plain (same shapes)':<22} {plain * 1e3:>9.1f} {tokens / plain:>10.0f} "
          f"{fwd_flops / plain / 1e9:>8.1f}")
    print(f"best transformers: forward = {best_ref_name['forward']}, train = {best_ref_name['train']}; "
          f"minibert sdpa forward reaches {plain / statistics.median(times[('forward', 'minibert sdpa')]):.0%} "
          "of the plain-matmul rate")


if __name__ == "__main__":
    main()
