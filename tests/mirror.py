"""A local HTTP copy of what the course downloads, so tests run the real download code without the internet.

It serves, on 127.0.0.1, every file of :data:`minibert.assets.DATASETS` under its public URL's path
(``/<host>/<path>``, see :func:`minibert.assets.mirror_path`) from a data folder, and hub checkpoints in the
hub's layout (``/huggingface.co/<name>/resolve/main/<file>``). Point the course at it with
``MINIBERT_MIRROR=<url>`` (or at its hub alone with ``HF_ENDPOINT=<url>/huggingface.co``). Run it by hand with
``python tests/mirror.py`` (fast mode's hub) or ``python tests/mirror.py --dry-run`` (full mode's); it prints the
variable to set.

Two hubs, two worlds:

- :func:`course_hub` (fast mode, CI): only the packaged all-MiniLM-L6-v2 under its own name. No stand-in is served
  under a real model's name, so a notebook that asks for ``bert-base-uncased`` gets what a learner without the hub
  gets: the packaged MiniLM, named as such.
- :func:`dry_run_hub` (full mode's dry run, ``MINIBERT_DRY_RUN=1``): in addition, under every hub name full mode
  loads (:data:`STAND_IN_NAMES`), a tiny random BERT in the hub's layout with the real vocabulary and every head the
  notebooks load (``bert.*`` with the pooler, ``cls.predictions.*``, ``cls.seq_relationship.*``), as
  ``hf-internal-testing/tiny-random-bert`` serves transformers' tests. Its config.json carries
  ``assets.STAND_IN_KEY``, so ``assets.describe_checkpoint`` says "a test stand-in ..." wherever a notebook prints it.

The full-mode data sets that the offline data folder lacks (SQuAD's training sets and 2.0 dev set, SWAG's CSVs)
get small stand-ins in the exact public format, written by :func:`write_stand_in_data` straight into a data folder
(their downloads are pinned by sha256, so the mirror does not serve them under the real URLs: the dry run's data
folder holds them before the notebook starts, and ``download`` keeps files that are already there).
"""

from __future__ import annotations

import argparse
import csv
import http.server
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from minibert import BertConfig, BertForPreTraining, assets
from minibert.tokenization import load_vocab

REPO = Path(__file__).resolve().parent.parent
HUB_HOST = assets.mirror_path(assets.HUB_URL)  # "huggingface.co"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

# What every stand-in says about itself (its config.json, under assets.STAND_IN_KEY)
STAND_IN = "a test stand-in served by a local mirror, random weights"
# The hub names full mode loads (notebooks 03-04, 09, 11-17: bert-base-uncased; 15: bert-base-cased; 10 and 15:
# bert-base-chinese), with each one's vocabulary in the data folder and its casing.
STAND_IN_NAMES = {"bert-base-uncased": ("bert-base-uncased-vocab.txt", True),
                  "bert-base-cased": ("bert-base-cased-vocab.txt", False),
                  "bert-base-chinese": ("bert-base-chinese-vocab.txt", True)}
# Small enough to train at full mode's sizes (seq 384, batch 32) on a CPU in seconds; 512 positions as the real ones.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=512)


def source_data_dir() -> Path:
    """Where the mirror's files come from: ``$MINIBERT_DATA`` (make sets it), else ``../shared/data`` next to
    the clone on developer and CI machines, else the repository's ``data/`` (filled by ``make``)."""
    if os.environ.get(assets.DATA_ENV):
        return Path(os.environ[assets.DATA_ENV])
    shared = REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else assets.REPO_DATA


def build_stand_in(folder: Path, name: str, data: Path | None = None) -> Path:
    """A tiny random BERT in the hub's layout under ``folder``, standing in for the hub's ``name`` (one of
    :data:`STAND_IN_NAMES`): config.json in transformers' format plus the stand-in marker, the real vocab.txt,
    tokenizer_config.json, and model.safetensors with the pre-training heads. The English ones use the legacy
    ``LayerNorm.gamma``/``beta`` names of the 2019 conversions, so the renaming on load runs too."""
    vocab_name, do_lower_case = STAND_IN_NAMES[name]
    vocab = (data or source_data_dir()) / "vocab" / vocab_name
    vocab_size = len(load_vocab(vocab))
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=vocab_size, **TINY))
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update({"architectures": ["BertForMaskedLM"], assets.STAND_IN_KEY: STAND_IN})
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if name != "bert-base-chinese":
        state = load_file(str(folder / "model.safetensors"))
        legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                  for k, v in state.items()}
        save_file(legacy, str(folder / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(vocab, folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": do_lower_case, "model_max_length": 512}) + "\n", encoding="utf-8")
    return folder


def course_hub(folder: Path) -> dict[str, Path]:
    """Fast mode's hub: the packaged all-MiniLM-L6-v2 under its own name, and no stand-in under a real model's
    name (``folder`` is unused; the signature is :func:`dry_run_hub`'s)."""
    return {MINILM: assets.checkpoint_path(None)}


def dry_run_hub(folder: Path, data: Path | None = None) -> dict[str, Path]:
    """Full mode's dry run: :func:`course_hub` plus a stand-in (:func:`build_stand_in`) under every name of
    :data:`STAND_IN_NAMES`, built in ``folder``."""
    return {**course_hub(folder),
            **{name: build_stand_in(folder / name, name, data) for name in STAND_IN_NAMES}}


# ----------------------------------------------------------------------------------------------------------
# Stand-in data sets: the exact public formats, small, and marked ("(stand-in)" titles, "stand-in" ids)
# ----------------------------------------------------------------------------------------------------------

def _squad_part(articles: list[dict], titles: list[str], paragraphs: int, rename: bool) -> list[dict]:
    """The first ``paragraphs`` paragraphs of the named articles; renamed (title and ids marked as stand-ins) when
    they are taken from another split, so no article or question id seems to be in two splits."""
    chosen = []
    for article in articles:
        if article["title"] not in titles:
            continue
        part = json.loads(json.dumps(article))  # a deep copy
        part["paragraphs"] = part["paragraphs"][:paragraphs]
        if rename:
            part["title"] = f"{article['title']} (stand-in)"
            for paragraph in part["paragraphs"]:
                for qa in paragraph["qas"]:
                    qa["id"] = f"stand-in-{qa['id']}"
        chosen.append(part)
    if len(chosen) != len(titles):
        raise ValueError(f"the SQuAD source lacks some of {titles}")
    return chosen


SWAG_COLUMNS = ["", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
                "ending0", "ending1", "ending2", "ending3", "label"]  # swagaf's data/{train,val}.csv header


def _swag_rows(sample: Path, copies: int, split: str) -> list[dict[str, str]]:
    """swagaf CSV rows from the 10 real SWAG rows of ``swag/sample.json`` (``copies`` times each), marked by their
    video-id ``stand-in-...``."""
    rows = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for copy in range(copies):
        for i, row in enumerate(rows):
            n = len(out)
            out.append({"": str(n), "video-id": f"stand-in-{split}-{i}", "fold-ind": str(n),
                        "startphrase": f"{row['sent1']} {row['sent2']}", "sent1": row["sent1"], "sent2": row["sent2"],
                        "gold-source": "gold0-orig", **{f"ending{k}": row[f"ending{k}"] for k in range(4)},
                        "label": str(row["label"])})
    return out


def write_stand_in_data(folder: Path, data: Path | None = None) -> list[Path]:
    """Write, under the data folder ``folder``, stand-ins for the full-mode files the offline data lacks, in the
    public formats and small: SQuAD ``train-v1.1.json`` (two dev-v1.1 articles, renamed), ``dev-v2.0.json`` (part
    of the real 2.0 dev set's first article), ``train-v2.0.json`` (part of its fifth, renamed), and SWAG's
    ``train.csv`` / ``val.csv`` (the 10 real rows of sample.json in swagaf's columns). Returns the paths."""
    data = data or source_data_dir()
    v1 = json.loads((data / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    v2 = json.loads((data / "squad" / "dev-v2.0-first5articles.json").read_text(encoding="utf-8"))["data"]
    files = {
        "squad/train-v1.1.json": {"data": _squad_part(v1, ["Super_Bowl_50", "Warsaw"], 4, rename=True),
                                  "version": "1.1"},
        "squad/dev-v2.0.json": {"version": "v2.0", "data": _squad_part(v2, ["Normans"], 4, rename=False)},
        "squad/train-v2.0.json": {"version": "v2.0",
                                  "data": _squad_part(v2, ["Victoria_(Australia)"], 4, rename=True)},
    }
    written = []
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content), encoding="utf-8")
        written.append(path)
    for split, copies in (("train", 4), ("val", 1)):
        path = folder / "swag" / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SWAG_COLUMNS)
            writer.writeheader()
            writer.writerows(_swag_rows(data / "swag" / "sample.json", copies, split))
        written.append(path)
    return written


# ----------------------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------------------

def routes(data: Path, hub: dict[str, Path]) -> dict[str, Path]:
    """URL path -> file: the data sets found under ``data``, then every file of each hub checkpoint. A hub file
    whose URL is also a data set's must be the same bytes (else one of the two downloads would get the other)."""
    table = {f"/{assets.mirror_path(r.url)}": data / r.path
             for remotes in assets.DATASETS.values() for r in remotes if (data / r.path).is_file()}
    for name, folder in hub.items():
        for file in folder.iterdir():
            if not file.is_file():
                continue
            route = f"/{HUB_HOST}/{name}/resolve/main/{file.name}"
            if route in table and table[route].read_bytes() != file.read_bytes():
                raise ValueError(f"{route} is both the data file {table[route]} and {file}, which differ")
            table[route] = file
    return table


class Mirror:
    """``with Mirror(data, hub) as url:`` serves :func:`routes` at ``url`` from a background thread."""

    def __init__(self, data: Path, hub: dict[str, Path]) -> None:
        table = routes(data, hub)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                file = table.get(self.path.split("?", 1)[0])
                if file is None:
                    self.send_error(404, "not on the mirror")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(file.stat().st_size))
                self.end_headers()
                with open(file, "rb") as f:
                    shutil.copyfileobj(f, self.wfile)

            def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every request
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    import tempfile
    parser = argparse.ArgumentParser(description="serve the course's downloads on 127.0.0.1")
    parser.add_argument("--dry-run", action="store_true", help="also the stand-ins full mode's dry run loads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = (dry_run_hub if args.dry_run else course_hub)(Path(tmp))
        with Mirror(source_data_dir(), hub) as url:
            extra = ("\n  python -c 'import sys; sys.path.insert(0, \"tests\"); import mirror; "
                     "mirror.write_stand_in_data(mirror.Path(sys.argv[1]))' <data folder>  (stand-in data)"
                     if args.dry_run else "")
            print(f"serving {source_data_dir()} and the hub ({', '.join(hub)}) on {url}; in another shell:\n"
                  f"  export {assets.MIRROR_ENV}={url}{extra}\nCtrl-C stops it.", file=sys.stderr)
            threading.Event().wait()
