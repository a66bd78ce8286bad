"""Run every notebook in full mode on a GPU and write the table of ours against the published figures.

    python benchmarks/run_full.py                       # every notebook, MINIBERT_MODE=full (what `make full` runs)
    python benchmarks/run_full.py --notebooks 09 13     # some of them
    python benchmarks/run_full.py --dry-run             # MINIBERT_DRY_RUN=1: the same path, 2 updates per loop
    python benchmarks/run_full.py --plan T4 A100-40GB   # nothing runs: each training run's predicted memory and time

Each notebook runs top to bottom in its own kernel (nbclient, as tests/test_notebooks.py runs them); its executed
copy goes to ``--out`` (default ``<MINIBERT_CACHE>/runs/full_mode``). A notebook reports its final figures with

    from minibert.runtime import record_result
    record_result("squad_v1.1", {"exact_match": em / 100, "f1": f1 / 100}, split="dev", checkpoint=CHECKPOINT)

which writes ``runs_dir("squad_v1.1")/result.json`` (with the device and the peak GPU memory the notebook's process
allocated so far); the names are those of :data:`PUBLISHED`. The table (``full_mode.md`` and ``full_mode.json`` in
``--out``, and printed) has one row per metric: ours, the published figure with its source, the notebook's wall
time and that peak memory. A notebook that fails is reported with its cell and error, and the others still run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from minibert import BertConfig, assets, cost, memory, runtime

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# The published figure each result stands beside (percent), where it comes from, and the notebook that makes it.
PUBLISHED: dict[str, dict[str, Any]] = {
    "mrpc": {"notebook": "09", "split": "dev", "metrics": {"accuracy": (84.0, 88.0)},
             "source": "pytorch-pretrained-bert 0.6.2 README: dev accuracy 'between 84% and 88%', bert-base-uncased"},
    "chnsenticorp": {"notebook": "10", "split": "test", "metrics": {"accuracy": 94.3},
                     "source": "ERNIE paper (Sun et al. 2019), table 2: BERT-Base Chinese, test"},
    "squad_v1.1": {"notebook": "13", "split": "dev", "metrics": {"exact_match": 81.2, "f1": 88.5},
                   "source": "pytorch-pretrained-bert 0.6.2 README: bert-base-uncased, run_squad.py"},
    "squad_v2.0": {"notebook": "13", "split": "dev", "metrics": {},
                   "source": "none for BERT-Base (the paper reports SQuAD 2.0 for BERT-Large only)"},
    "swag": {"notebook": "14", "split": "val", "metrics": {"accuracy": 80.62},
             "source": "pytorch-pretrained-bert 0.6.2 README: bert-base-uncased, run_swag.py"},
    "conll2003": {"notebook": "15", "split": "dev", "metrics": {"f1": 96.4},
                  "source": "BERT paper, table 7 (section 5.3): BERT-Base fine-tuned, dev F1"},
    "resume_ner": {"notebook": "15", "split": "dev", "metrics": {"f1": 96.15},
                   "source": "lonePatient/BERT-NER-Pytorch README: BERT+Softmax on Resume (cner), dev F1"},
}


# ----------------------------------------------------------------------------------------------------------
# The notebooks' own full-mode sizes, for --plan and tests/test_cost.py
# ----------------------------------------------------------------------------------------------------------

def notebook_config(path: Path, mode: str = "full") -> dict[str, Any]:
    """The variables of a notebook's config cell (the code cell opened by ``# Config``, after the Colab setup) as
    ``MINIBERT_MODE=mode`` sets them; what course.start() prints is dropped."""
    cells = [c for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code" and c.source.startswith("# Config")]
    if not cells:
        raise ValueError(f"{path.name}: no code cell starts with '# Config'")
    saved = os.environ.get(runtime.MODE_ENV)
    os.environ[runtime.MODE_ENV] = mode
    try:
        namespace: dict[str, Any] = {}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cells[0].source, f"{path.name} config cell", "exec"), namespace)  # noqa: S102 (our file)
    finally:
        if saved is None:
            os.environ.pop(runtime.MODE_ENV, None)
        else:
            os.environ[runtime.MODE_ENV] = saved
    return namespace


HUB_VOCAB_SIZES = {"bert-base-uncased": 30522, "bert-base-cased": 28996, "bert-base-chinese": 21128}


def bert_base(name: str) -> BertConfig:
    """BERT-Base's config with the vocabulary of the hub checkpoint ``name`` (the three the course loads)."""
    return BertConfig(vocab_size=HUB_VOCAB_SIZES[name])


@dataclass(frozen=True)
class Recipe:
    """One full-mode training run of a notebook, read off its config cell (``cfg``): the checkpoint the cell
    names, the batch (examples per update), the sequence length, the updates of the whole run."""

    notebook: str
    task: str
    checkpoint: Callable[[dict], str | BertConfig]
    batch: Callable[[dict], int]
    seq: Callable[[dict], int]
    steps: Callable[[dict], int]
    sequences_per_example: int = 1
    num_labels: int = 2
    mlm_fraction: float = 0.0

    def model_config(self, cfg: dict) -> BertConfig:
        model = self.checkpoint(cfg)
        return model if isinstance(model, BertConfig) else bert_base(model)


def _epochs_of(examples: int, batch: str = "BATCH_SIZE", epochs: str = "EPOCHS") -> Callable[[dict], int]:
    return lambda cfg: -(-examples // cfg[batch]) * cfg[epochs]


def _tiny_bert(cfg: dict) -> BertConfig:
    return BertConfig(vocab_size=cfg["VOCAB_SIZE"], hidden_size=cfg["HIDDEN"], num_hidden_layers=cfg["LAYERS"],
                      num_attention_heads=cfg["HEADS"], intermediate_size=4 * cfg["HIDDEN"],
                      max_position_embeddings=cfg["MAX_SEQ_LENGTH"])


# Training set sizes: MRPC 3,668 pairs; ChnSentiCorp 9,600 reviews; SQuAD v1.1 87,599 questions (windows at 384/128
# are about 1% more); SWAG 73,546 questions; CoNLL-2003 14,041 sentences; Resume NER 3,821 sentences.
RECIPES = [
    Recipe("07_pretrain_from_scratch", "pre-training, short phase", _tiny_bert, lambda c: c["PHASES"][0][1],
           lambda c: c["PHASES"][0][0], lambda c: c["PHASES"][0][2], mlm_fraction=0.15),
    Recipe("07_pretrain_from_scratch", "pre-training, long phase", _tiny_bert, lambda c: c["PHASES"][1][1],
           lambda c: c["PHASES"][1][0], lambda c: c["PHASES"][1][2], mlm_fraction=0.15),
    Recipe("08_lm_finetuning", "LM fine-tuning on Hamlet", lambda c: c["CHECKPOINT"] or "bert-base-uncased",
           lambda c: c["BATCH_SIZE"], lambda c: c["MAX_SEQ_LENGTH"], lambda c: c["HEAD_STEPS"] + c["NUM_STEPS"],
           mlm_fraction=0.15),
    Recipe("09_mrpc", "MRPC", lambda c: c["CHECKPOINT"], lambda c: c["BATCH_SIZE"], lambda c: c["MAX_SEQ_LENGTH"],
           _epochs_of(3668)),
    Recipe("10_chinese_sentiment", "ChnSentiCorp", lambda c: c["CHECKPOINT"], lambda c: c["BATCH_SIZE"],
           lambda c: c["MAX_SEQ_LENGTH"], _epochs_of(9600)),
    Recipe("13_squad", "SQuAD v1.1", lambda c: c["CHECKPOINT"], lambda c: c["BATCH_SIZE"],
           lambda c: c["MAX_SEQ_LENGTH"], _epochs_of(87_599)),
    Recipe("14_swag", "SWAG", lambda c: c["CHECKPOINT"], lambda c: c["BATCH_SIZE"], lambda c: c["MAX_SEQ_LENGTH"],
           _epochs_of(73_546), sequences_per_example=4, num_labels=1),
    Recipe("15_ner", "CoNLL-2003", lambda c: c["CHECKPOINT"], lambda c: c["BATCH_SIZE"],
           lambda c: c["MAX_SEQ_LENGTH"], _epochs_of(14_041), num_labels=9),
    Recipe("15_ner", "Resume NER", lambda c: c["RESUME_CHECKPOINT"], lambda c: 32,  # train_batch_size=32 in its cell
           lambda c: c["MAX_SEQ_LENGTH"], lambda c: -(-3_821 // 32) * c["RESUME_EPOCHS"], num_labels=17),
    Recipe("17_making_bert_fast", "MRPC (17)", lambda c: c["CHECKPOINT"], lambda c: c["BATCH_SIZE"],
           lambda c: c["MAX_SEQ_LENGTH"], _epochs_of(3668)),
]


def plan(recipe: Recipe, gpu: str | cost.Gpu, precision: str = "auto") -> cost.TrainingPlan:
    """The recipe's :func:`cost.plan_training` on ``gpu``, its sizes read from the notebook's full-mode config."""
    cfg = notebook_config(REPO / "notebooks" / f"{recipe.notebook}.ipynb")
    return cost.plan_training(recipe.model_config(cfg), recipe.batch(cfg), recipe.seq(cfg), precision, gpu,
                              steps=recipe.steps(cfg), sequences_per_example=recipe.sequences_per_example,
                              num_labels=recipe.num_labels, mlm_fraction=recipe.mlm_fraction,
                              task=f"{recipe.notebook[:2]} {recipe.task}")


def print_plans(gpus: list[str]) -> None:
    print(f"Predicted full-mode training runs (memory: minibert.memory + PyTorch's overhead; time: FLOPs at "
          f"{cost.UTILISATION:.0%} of the card's dense peak, evaluation not counted)\n")
    print("| notebook | run | batch x seq | card | precision | peak GB | card GB | fits | updates | time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for recipe in RECIPES:
        for gpu in gpus:
            p = plan(recipe, gpu)
            how = "one step" if p.grad_accumulation == 1 else f"{p.grad_accumulation} x {p.micro_batch}"
            how = how + " + checkpointing" if p.gradient_checkpointing else how
            spe = f" ({p.sequences_per_example} seqs)" if p.sequences_per_example > 1 else ""
            minutes = f"{p.total_seconds / 60:.1f} min" if p.total_seconds is not None else "-"
            print(f"| {recipe.notebook[:2]} | {recipe.task} | {p.batch_size}{spe} x {p.seq_len} | {p.gpu} "
                  f"| {p.precision} | {p.peak_bytes / memory.GB:.1f} | {p.memory_bytes / memory.GB:.1f} "
                  f"| {how if p.fits else 'no'} | {p.steps:,} | {minutes} |")


# ----------------------------------------------------------------------------------------------------------
# Running the notebooks
# ----------------------------------------------------------------------------------------------------------

def run_notebook(path: Path, out: Path, timeout: int) -> dict[str, Any]:
    """Execute one notebook in full mode; its wall time, and the cell and error where it failed."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as err:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        error = plain.strip().splitlines()[-1][:300] if plain.strip() else "a cell failed"
    finally:
        nbformat.write(notebook, out / path.name)
    return {"notebook": path.stem, "wall_seconds": time.perf_counter() - start, "error": error}


def collect(started: float) -> dict[str, dict[str, Any]]:
    """The results the notebooks recorded since ``started`` (older files are from earlier runs)."""
    results = {}
    for name in PUBLISHED:
        record = runtime.read_result(name)
        if record is not None and record.get("written", 0) >= started:
            results[name] = record
    return results


def table(runs: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per task and metric, ours beside the published figure, with wall time and peak memory."""
    wall = {r["notebook"][:2]: r for r in runs}
    lines = ["| task | split | metric | ours | published | source | notebook wall | peak GPU memory |",
             "|---|---|---|---|---|---|---|---|"]
    for name, spec in PUBLISHED.items():
        run = wall.get(spec["notebook"])
        if run is None:
            continue
        record = results.get(name)
        minutes = f"{run['wall_seconds'] / 60:.1f} min"
        if record is None:
            status = f"failed: {run['error']}" if run["error"] else "no result recorded"
            lines.append(f"| {name} | {spec['split']} | - | {status} | - | {spec['source']} | {minutes} | - |")
            continue
        peak = record.get("peak_memory_bytes")
        peak_text = f"{peak / memory.GB:.1f} GB" if peak else "-"
        dry = " (dry run: meaningless)" if record.get("dry_run") else ""
        for metric, value in record["metrics"].items():
            published = spec["metrics"].get(metric)
            published_text = ("-" if published is None else f"{published[0]:g}-{published[1]:g}"
                              if isinstance(published, tuple) else f"{published:g}")
            lines.append(f"| {name} | {record['split']} | {metric} | {100 * value:.1f}{dry} | {published_text} | "
                         f"{spec['source']} | {minutes} | {peak_text} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", nargs="*", help="numbers or names (default: every notebook)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the executed notebooks and the table")
    parser.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per cell")
    parser.add_argument("--dry-run", action="store_true", help="set MINIBERT_DRY_RUN=1 (2 updates per loop)")
    parser.add_argument("--plan", nargs="*", metavar="GPU", default=None,
                        help=f"print the predicted plans for these cards ({', '.join(cost.GPUS)}) and exit")
    args = parser.parse_args()
    if args.plan is not None:
        print_plans(args.plan or ["T4", "A100-40GB"])
        return 0
    os.environ[runtime.MODE_ENV] = "full"  # the kernels inherit the environment
    if args.dry_run:
        os.environ[runtime.DRY_RUN_ENV] = "1"
    chosen = [p for p in NOTEBOOKS if not args.notebooks
              or any(p.stem == n or p.stem.startswith(f"{n}_") for n in args.notebooks)]
    if not chosen:
        parser.error(f"no notebook matches {args.notebooks}")
    out = args.out or assets.runs_dir("full_mode")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    runs = []
    for path in chosen:
        print(f"{path.name} ...", file=sys.stderr, flush=True)
        runs.append(run_notebook(path, out, args.timeout))
        status = f"failed: {runs[-1]['error']}" if runs[-1]["error"] else "done"
        print(f"{path.name}: {status} in {runs[-1]['wall_seconds'] / 60:.1f} min", file=sys.stderr, flush=True)
    results = collect(started)
    text = table(runs, results)
    report = runtime.environment_report()
    header = (f"Full mode{' (dry run)' if args.dry_run else ''} on {report.get('gpu', report['device'])}, "
              f"torch {report['torch']}")
    (out / "full_mode.md").write_text(f"{header}\n\n{text}\n", encoding="utf-8")
    (out / "full_mode.json").write_text(json.dumps({"environment": report, "runs": runs, "results": results},
                                                   indent=1) + "\n", encoding="utf-8")
    print(f"{header}\n\n{text}\n\nwritten to {out}")
    return 1 if any(r["error"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
