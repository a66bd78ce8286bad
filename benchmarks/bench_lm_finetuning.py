"""A candidate recipe for notebook 08's fast mode (the notebook does not run it yet: too slow for its 5 minutes):
how much of LM fine-tuning's gain is the domain's?

    MINIBERT_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_lm_finetuning.py --seed 0 [--json]

The recipe: the packaged all-MiniLM-L6-v2 gets new MLM and NSP heads, and the whole model is
first trained on general prose (Austen and Chesterton, heads at a high lr, encoder at a fine-tuning one) until it
is a real masked LM; that is "before". It then continues pre-training on *Hamlet* (1623 spelling); that is
"after". Held-out MLM perplexity on Hamlet and on the general prose, before and after, beside the unigram model
of each corpus' own training text (the baseline a real masked LM must beat): the drop on Hamlet against the
change on general prose separates the domain gain from a general one. Budgets are counted in steps; the figures
depend on the seed and the thread count only. Times are CPU seconds of this process (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from minibert import BertAdam, BertForPreTraining
from minibert import pretraining as P
from minibert.assets import data_path
from minibert.runtime import set_seed
from minibert.tokenization import BertTokenizer


def parameter_groups(model: torch.nn.Module, lr_heads: float, lr_encoder: float) -> list[dict]:
    """BertAdam groups: the heads (cls.*) at one lr, the encoder (bert.*) at another; no weight decay on
    biases and LayerNorm (as optimizer_grouped_parameters)."""
    groups = []
    for prefix, lr in (("cls.", lr_heads), ("bert.", lr_encoder)):
        named = [(n, p) for n, p in model.named_parameters() if n.startswith(prefix) and p.requires_grad]
        for decay, keep in ((0.01, False), (0.0, True)):
            params = [p for n, p in named if ("bias" in n or "LayerNorm" in n) == keep]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": decay})
    return groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the figures depend on it)")
    ap.add_argument("--general-steps", type=int, default=300, help="heads + encoder on general prose ('before')")
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--encoder-lr", type=float, default=1e-4)
    ap.add_argument("--book-steps", type=int, default=150, help="continued pre-training on the book ('after')")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--book", default="shakespeare-hamlet.txt")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu0 = time.process_time()
    max_seq_length, batch_size, n_eval = 64, 16, 96  # the notebook's fast mode

    set_seed(args.seed)
    tok = BertTokenizer.from_pretrained(None)
    book = P.load_pretraining_data(P.read_book_documents(data_path("gutenberg", args.book)), tok, max_seq_length,
                                   seed=args.seed)
    prose = P.load_pretraining_data(data_path("lm_text", "gutenberg_austen_chesterton_sentences.txt"), tok,
                                    max_seq_length, seed=args.seed)
    model = BertForPreTraining.from_pretrained(None)
    collate = P.PretrainingCollator(tok, max_predictions_per_seq=round(0.15 * max_seq_length) + 1, seed=args.seed)
    held = {name: P.fixed_batches(P.PretrainingDataset(d.held_out.instances[:n_eval], tok), collate, 32)
            for name, d in (("book", book), ("prose", prose))}
    unigram = {name: P.unigram_baseline(d.train, held[name]) for name, d in (("book", book), ("prose", prose))}
    measure = lambda: {name: P.evaluate_pretraining(model, b) for name, b in held.items()}  # noqa: E731
    rows = {"random heads": measure()}

    opt = BertAdam(parameter_groups(model, args.head_lr, args.encoder_lr), lr=args.head_lr, warmup=0.1,
                   t_total=args.general_steps)
    P.pretrain(model, prose.train, collate, opt, args.general_steps, batch_size, seed=args.seed)
    rows["before"] = measure()
    opt = BertAdam(parameter_groups(model, args.lr, args.lr), lr=args.lr, warmup=0.1, t_total=args.book_steps)
    P.pretrain(model, book.train, collate, opt, args.book_steps, batch_size, seed=args.seed)
    rows["after"] = measure()
    cpu = time.process_time() - cpu0

    print(f"all-MiniLM-L6-v2 + new heads: {args.general_steps} steps on general prose (heads lr {args.head_lr}, "
          f"encoder lr {args.encoder_lr}), then {args.book_steps} on {args.book} (lr {args.lr}); seed {args.seed}, "
          f"{args.threads} thread(s), {cpu:.0f} s CPU")
    print(f"{'held-out MLM perplexity':<28}{args.book:>26}{'general prose':>16}")
    print(f"{'unigram (own training text)':<28}{unigram['book']['perplexity']:>26,.0f}"
          f"{unigram['prose']['perplexity']:>16,.0f}")
    for name, r in rows.items():
        print(f"{name:<28}{r['book']['perplexity']:>26,.0f}{r['prose']['perplexity']:>16,.0f}")
    before, after = rows["before"], rows["after"]
    print(f"after / before: {args.book} x{after['book']['perplexity'] / before['book']['perplexity']:.2f}, "
          f"general prose x{after['prose']['perplexity'] / before['prose']['perplexity']:.2f}")
    if args.json:
        ppl = lambda r: {"perplexity": r["book"]["perplexity"], "mlm_accuracy": r["book"]["mlm_accuracy"],  # noqa: E731
                         "prose_perplexity": r["prose"]["perplexity"]}
        print(json.dumps({"task": "lm_finetuning", "seed": args.seed, "threads": args.threads, "book": args.book,
                          "ours": ppl(after),
                          "baselines": {"before": ppl(before), "random_heads": ppl(rows["random heads"]),
                                        "unigram": {"perplexity": unigram["book"]["perplexity"],
                                                    "prose_perplexity": unigram["prose"]["perplexity"]}}}))


if __name__ == "__main__":
    main()
