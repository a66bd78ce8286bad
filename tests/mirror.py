"""A local HTTP copy of what the course downloads, so tests run the real download code without the internet.

It serves, on 127.0.0.1, every file of :data:`minibert.assets.DATASETS` under its public URL's path
(``/<host>/<path>``, see :func:`minibert.assets.mirror_path`) from a data folder, and hub checkpoints in the
hub's layout (``/huggingface.co/<name>/resolve/main/<file>``). Point the course at it with
``MINIBERT_MIRROR=<url>``. Run it by hand with ``python tests/mirror.py`` (it prints the variable to set).
"""

from __future__ import annotations

import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import torch

from minibert import BertForPreTraining, assets

REPO = Path(__file__).resolve().parent.parent
HUB_HOST = assets.mirror_path(assets.HUB_URL)  # "huggingface.co"


def source_data_dir() -> Path:
    """Where the mirror's files come from: ``$MINIBERT_DATA`` (make sets it), else ``../shared/data`` next to
    the clone on developer and CI machines, else the repository's ``data/`` (filled by ``make``)."""
    if os.environ.get(assets.DATA_ENV):
        return Path(os.environ[assets.DATA_ENV])
    shared = REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else assets.REPO_DATA


def build_small_bert_base_uncased(folder: Path) -> Path:
    """A small stand-in for ``bert-base-uncased`` in the hub's layout: the packaged MiniLM encoder (real weights)
    with MLM and NSP heads (seeded random values), saved by minibert (``bert.`` prefix, ``cls.*`` heads)."""
    torch.manual_seed(0)
    model = BertForPreTraining.from_pretrained(None)
    model.save_pretrained(folder)
    shutil.copy(assets.checkpoint_path(None) / "vocab.txt", folder / "vocab.txt")
    return folder


def routes(data: Path, hub: dict[str, Path]) -> dict[str, Path]:
    """URL path -> file: the data sets found under ``data``, then every file of each hub checkpoint."""
    table = {f"/{assets.mirror_path(r.url)}": data / r.path
             for remotes in assets.DATASETS.values() for r in remotes if (data / r.path).is_file()}
    for name, folder in hub.items():
        for file in folder.iterdir():
            table[f"/{HUB_HOST}/{name}/resolve/main/{file.name}"] = file
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


def course_hub(folder: Path) -> dict[str, Path]:
    """The hub names the course may ask for: bert-base-uncased (the small stand-in) and the packaged MiniLM."""
    return {"bert-base-uncased": build_small_bert_base_uncased(folder / "bert-base-uncased"),
            "sentence-transformers/all-MiniLM-L6-v2": assets.checkpoint_path(None)}


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, Mirror(source_data_dir(), course_hub(Path(tmp))) as url:
        print(f"serving {source_data_dir()} and the hub on {url}; in another shell:\n"
              f"  export {assets.MIRROR_ENV}={url}\nCtrl-C stops it.", file=sys.stderr)
        threading.Event().wait()
