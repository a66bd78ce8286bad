"""Fine-tune the packaged all-MiniLM-L6-v2 on MRPC with minibert and with transformers, same recipe, same run.

Both sides get the same token ids, the same length-bucketed batches in the same order, the same classifier
initialisation, the same seeds, learning rate, warmup, linear decay, weight decay 0.01 and clipping at 1.0.
minibert uses its training loop with BertAdam; transformers uses its BertForSequenceClassification with
torch.optim.AdamW and transformers.get_linear_schedule_with_warmup (the Hugging Face recipe). The optimizers
differ on purpose (BertAdam: no bias correction, per-tensor clipping), which is why scores can differ a little.

    python benchmarks/bench_finetune_mrpc.py                      # full MRPC, 3 epochs, seq 128 (slow on CPU)
    python benchmarks/bench_finetune_mrpc.py --epochs 1 --max-seq-length 64 --train-limit 800
"""
from __future__ import annotations

import argparse
import math
import time

import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5, help="5e-5 suits the small MiniLM; the paper's bert-base 2e-5")
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--train-limit", type=int, default=None, help="use the first N training pairs")
    p.add_argument("--dev-limit", type=int, default=None, help="use the first N dev pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--only", choices=["minibert", "transformers"], default=None)
    p.add_argument("--transformers-optimizer", choices=["adamw", "bertadam"], default="adamw",
                   help="bertadam: give transformers minibert's BertAdam too, so only the implementations differ")
    return p.parse_args()


def run_minibert(args, folder, train_f, dev_f, pad_token_id: int):
    from minibert import BertForSequenceClassification
    from minibert.training import TrainingArguments, train

    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    init = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    targs = TrainingArguments(learning_rate=args.lr, num_train_epochs=args.epochs, train_batch_size=args.batch_size,
                              warmup_proportion=args.warmup, seed=args.seed, device="cpu", precision="fp32",
                              pad_token_id=pad_token_id)
    start = time.perf_counter()
    res = train(model, train_f, targs, eval_features=dev_f)
    return res.eval.metrics, time.perf_counter() - start, res.state.epoch_times, init


def run_transformers(args, folder, train_f, dev_f, classifier_init, pad_token_id: int):
    import transformers
    from minibert.runtime import set_seed
    from minibert.data import collate
    from minibert.optimization import optimizer_grouped_parameters
    from minibert.training import loss_of, evaluate, length_bucketed_batches, num_update_steps

    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()
    model = transformers.BertForSequenceClassification.from_pretrained(str(folder), num_labels=2)
    model.classifier.load_state_dict(classifier_init)  # the same starting head as minibert's
    groups = optimizer_grouped_parameters(model, weight_decay=0.01)  # the same groups as minibert's loop
    t_total = num_update_steps(len(train_f), args.batch_size, args.epochs)
    if args.transformers_optimizer == "bertadam":  # schedule and per-tensor clipping live inside BertAdam
        from minibert.optimization import BertAdam
        optimizer = BertAdam(groups, lr=args.lr, warmup=args.warmup, t_total=t_total, max_grad_norm=1.0)
        scheduler = None
    else:
        optimizer = torch.optim.AdamW(groups, lr=args.lr, eps=1e-6)
        scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(args.warmup * t_total), t_total)
    lengths = [len(f["input_ids"]) for f in train_f]
    set_seed(args.seed)
    start, epoch_times = time.perf_counter(), []
    model.train()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for batch in length_bucketed_batches(lengths, args.batch_size, args.seed, epoch):
            loss = loss_of(model(**collate([train_f[i] for i in batch], pad_token_id=pad_token_id)))
            loss.backward()
            if scheduler is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        epoch_times.append(time.perf_counter() - t0)
        metrics = evaluate(model, dev_f, 64, "cpu",
                           collate_fn=lambda f: collate(f, pad_token_id=pad_token_id)).metrics
    return metrics, time.perf_counter() - start, epoch_times


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from minibert import BertTokenizer
    from minibert.assets import checkpoint_path
    from minibert.datasets import read_mrpc
    from minibert.data import encode_examples

    folder = checkpoint_path(None)
    tok = BertTokenizer.from_pretrained(folder)
    train_ex, dev_ex = read_mrpc("train")[:args.train_limit], read_mrpc("dev")[:args.dev_limit]
    train_f = encode_examples(train_ex, tok, args.max_seq_length, num_labels=2)
    dev_f = encode_examples(dev_ex, tok, args.max_seq_length, num_labels=2)
    updates = math.ceil(len(train_f) / args.batch_size) * args.epochs
    print(f"MRPC: {len(train_f)} train / {len(dev_f)} dev pairs; {args.epochs} epochs, batch {args.batch_size}, "
          f"seq {args.max_seq_length}, lr {args.lr}, warmup {args.warmup} -> {updates} updates; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32")

    rows = {}
    ours = run_minibert(args, folder, train_f, dev_f, tok.pad_token_id)
    rows["minibert (BertAdam)"] = ours[:3]
    if args.only != "minibert":
        name = "transformers (BertAdam)" if args.transformers_optimizer == "bertadam" else "transformers (AdamW)"
        rows[name] = run_transformers(args, folder, train_f, dev_f, ours[3], tok.pad_token_id)
    print(f"\n{'':24s} {'dev acc':>8s} {'dev F1':>8s} {'train s':>9s} {'s/epoch':>9s}")
    for name, (m, secs, epochs) in rows.items():
        print(f"{name:24s} {m['accuracy']:8.4f} {m['f1']:8.4f} {secs:9.1f} {secs / len(epochs):9.1f}")
    if len(rows) == 2:
        (mo, so, _), (mt, st, _) = rows.values()
        print(f"{'minibert - transformers':24s} {100 * (mo['accuracy'] - mt['accuracy']):+7.2f}p "
              f"{100 * (mo['f1'] - mt['f1']):+7.2f}p  time ratio minibert/transformers {so / st:.2f}x")


if __name__ == "__main__":
    main()
