"""Tokenizer speed: minibert vs the pure-Python reference and the Rust `transformers.BertTokenizer`.

Work measured: text -> WordPiece ids (no [CLS]/[SEP]) for every MRPC sentence (train, dev and test, both sides
of each pair), uncased vocab. minibert "cold" is a fresh tokenizer (its word cache starts empty); "warm" is a
second pass over the same text. Best of --repeat runs. Also checks that the outputs are identical.

    MINIBERT_DATA=../shared/data python benchmarks/bench_tokenizer.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

from minibert.assets import vocab_path
from minibert.datasets import read_mrpc
from minibert.tokenization import BertTokenizer


def mrpc_sentences() -> list[str]:
    return [s for split in ("train", "dev", "test") for ex in read_mrpc(split) for s in (ex.text_a, ex.text_b)]


def best_time(make, run, texts, repeat):
    """Best wall time of `run(make(), texts)` over `repeat` runs (a fresh object each run), and its output."""
    best, out = float("inf"), None
    for _ in range(repeat):
        obj = make()
        start = time.perf_counter()
        out = run(obj, texts)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    texts = mrpc_sentences()
    vocab = str(vocab_path("bert-base-uncased"))

    def ours(tok, xs):
        return [tok.convert_tokens_to_ids(tok.tokenize(x)) for x in xs]

    def ours_warm(tok, xs):
        ours(tok, xs)  # fill the cache, untimed below
        start = time.perf_counter()
        out = ours(tok, xs)
        ours_warm.elapsed = time.perf_counter() - start
        return out

    rows = []
    t, ids_ours = best_time(lambda: BertTokenizer(vocab), ours, texts, args.repeat)
    rows.append(("minibert BertTokenizer (cold cache)", t))
    warm = []
    for _ in range(args.repeat):
        ours_warm(BertTokenizer(vocab), texts)
        warm.append(ours_warm.elapsed)
    rows.append(("minibert BertTokenizer (warm cache)", min(warm)))

    notes = []
    try:
        import transformers
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    except ImportError:
        notes.append("transformers not installed: no reference rows")
    else:
        def legacy_run(tok, xs):
            return [tok.convert_tokens_to_ids(tok.tokenize(x)) for x in xs]

        t, ids_legacy = best_time(lambda: BertTokenizerLegacy(vocab), legacy_run, texts, args.repeat)
        rows.append(("reference BertTokenizerLegacy (pure Python)", t))
        same = sum(a == b for a, b in zip(ids_ours, ids_legacy))
        notes.append(f"minibert == pure-Python reference on {same}/{len(texts)} sentences (ids)")

        def rust_each(tok, xs):
            return [tok(x, add_special_tokens=False)["input_ids"] for x in xs]

        def rust_batch(tok, xs):
            return tok(xs, add_special_tokens=False)["input_ids"]

        rust = lambda: transformers.BertTokenizer(vocab=vocab, do_lower_case=True)  # noqa: E731
        t, ids_rust = best_time(rust, rust_each, texts, args.repeat)
        rows.append(("transformers.BertTokenizer (Rust), one call per sentence", t))
        t, _ = best_time(rust, rust_batch, texts, args.repeat)
        rows.append(("transformers.BertTokenizer (Rust), one batch call", t))
        same = sum(a == b for a, b in zip(ids_ours, ids_rust))
        notes.append(f"minibert == Rust tokenizer on {same}/{len(texts)} sentences (ids)")

    n_tokens = sum(map(len, ids_ours))
    times = dict(rows)
    legacy_t = times.get("reference BertTokenizerLegacy (pure Python)")
    rust_t = times.get("transformers.BertTokenizer (Rust), one call per sentence")
    print(f"{len(texts)} MRPC sentences, {n_tokens} WordPiece tokens, uncased vocab, best of {args.repeat}")
    head = f"{'tokenizer':<58} {'seconds':>8} {'sent/s':>9} {'tokens/s':>10} {'x legacy':>9} {'x rust/sent':>11}"
    print(head)
    print("-" * len(head))
    for name, t in rows:
        vs_legacy = f"{legacy_t / t:.2f}" if legacy_t else "-"
        vs_rust = f"{rust_t / t:.2f}" if rust_t else "-"
        print(f"{name:<58} {t:>8.3f} {len(texts) / t:>9.0f} {n_tokens / t:>10.0f} {vs_legacy:>9} {vs_rust:>11}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
