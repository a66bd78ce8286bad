"""The course frame: where data and checkpoints come from, the fast/full switch, CI = README, notebook shape."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minibert import assets, runtime

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(autouse=True)
def empty_hugging_face_cache(tmp_path, monkeypatch):
    """A hub name is looked up in the Hugging Face cache first: keep this machine's out of the tests."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv(assets.HF_ENDPOINT_ENV, raising=False)


# --- data ---------------------------------------------------------------------------------------------------

def test_data_path_reads_the_variable(tmp_path, monkeypatch):
    (tmp_path / "mrpc").mkdir()
    (tmp_path / "mrpc" / "train.tsv").write_text("x")
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path))
    assert assets.data_path("mrpc", "train.tsv") == tmp_path / "mrpc" / "train.tsv"


def test_data_path_defaults_to_repo_data(monkeypatch):
    monkeypatch.delenv(assets.DATA_ENV, raising=False)
    assert assets.in_checkout()
    assert assets.data_dir() == REPO / "data"
    assert assets.data_path("README.md") == REPO / "data" / "README.md"


def test_an_installed_copy_keeps_its_data_in_the_cache(tmp_path, monkeypatch):
    """Without a clone around it (pip installed minibert), data goes to $MINIBERT_CACHE/data, never site-packages
    (tests/test_colab.py checks a real non-editable install)."""
    monkeypatch.delenv(assets.DATA_ENV, raising=False)
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(assets, "CHECKOUT", tmp_path / "site-packages")
    assert not assets.in_checkout()
    assert assets.data_dir() == tmp_path / "cache" / "data"
    with pytest.raises(FileNotFoundError, match=r"minibert is installed, so data/ in the cache \(\$MINIBERT_CACHE\)"):
        assets.data_path("mrpc", "train.tsv")


def test_missing_file_names_path_variable_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        assets.data_path("mrpc", "train.tsv")
    message = str(err.value)
    assert str(tmp_path / "mrpc" / "train.tsv") in message
    assert "MINIBERT_DATA" in message
    assert "python -m minibert download mrpc" in message


def test_missing_file_without_variable_says_so(monkeypatch):
    monkeypatch.delenv(assets.DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=r"MINIBERT_DATA is not set.*data/"):
        assets.data_path("squad", "no-such.json")


def test_vocab_path_by_name_and_by_path(tmp_path):
    uncased = assets.vocab_path("bert-base-uncased")
    assert uncased.name == "bert-base-uncased-vocab.txt"
    assert len(uncased.read_text(encoding="utf-8").splitlines()) == 30522
    assert assets.vocab_path(uncased.parent.parent / "vocab" / uncased.name) == uncased
    with pytest.raises(FileNotFoundError, match="bert-base-uncased"):
        assets.vocab_path(tmp_path / "nope.txt")


def test_glue_mrpc_is_rebuilt_byte_for_byte(tmp_path):
    """The download path builds train/dev/test.tsv from the MSR files exactly as GLUE's script did."""
    source = assets.data_path("mrpc")
    for name in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt", "dev_ids.tsv"):
        shutil.copy(source / name, tmp_path / name)
    assets.build_glue_mrpc(tmp_path)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / name).read_bytes() == (source / name).read_bytes(), name


def test_gutenberg_sentences_are_rebuilt_byte_for_byte(tmp_path):
    """The pretraining text is derived from four books; the download path rebuilds the exact file."""
    (tmp_path / "gutenberg").mkdir()
    for book in assets.GUTENBERG_SENTENCE_BOOKS:
        shutil.copy(assets.data_path("gutenberg", f"{book}.txt"), tmp_path / "gutenberg")
    built = assets.build_gutenberg_sentences(tmp_path)
    reference = assets.data_path("lm_text", "gutenberg_austen_chesterton_sentences.txt")
    assert built.read_bytes() == reference.read_bytes()


def test_download_fetches_from_sources_and_checks_sha256(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(assets.data_path("lm_text", "sample_text.txt"), mirror / "sample_text.txt")
    good = assets.DATASETS["lm_text"][0]
    monkeypatch.setitem(assets.DATASETS, "lm_text", [assets.Remote(good.path, (mirror / "sample_text.txt").as_uri(),
                                                                   good.sha256)])
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path / "data"))
    derived = tmp_path / "data" / "lm_text" / "gutenberg_austen_chesterton_sentences.txt"
    derived.parent.mkdir(parents=True)
    derived.write_text("already built\n")  # so the download does not fetch the books to rebuild it
    assets.download("lm_text")
    fetched = tmp_path / "data" / "lm_text" / "sample_text.txt"
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == good.sha256

    bad = assets.Remote("lm_text/bad.txt", (mirror / "sample_text.txt").as_uri(), "0" * 64)
    monkeypatch.setitem(assets.DATASETS, "lm_text", [bad])
    with pytest.raises(ValueError, match="sha256"):
        assets.download("lm_text")
    assert not (tmp_path / "data" / "lm_text" / "bad.txt").exists()
    assert not list((tmp_path / "data" / "lm_text").glob(".bad.txt*")), "a failed download left a temp file"


def test_download_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown data set.*'mrpc'"):
        assets.download("mrpcc")


def test_unreachable_url_is_a_clear_connection_error(tmp_path):
    with pytest.raises(ConnectionError, match="offline"):
        assets._fetch("http://127.0.0.1:9/vocab.txt", tmp_path / "data" / "vocab" / "vocab.txt")
    assert not any(tmp_path.iterdir()), "a refused download left a folder behind"


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    """A network that accepts the connection and then says nothing must fail soon, with a message."""
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or answers
        monkeypatch.setattr(assets, "TIMEOUT", 0.5)
        with pytest.raises(ConnectionError, match="no answer within 0.5 s"):
            assets._fetch(f"http://127.0.0.1:{silent.getsockname()[1]}/x.txt", tmp_path / "new" / "x.txt")
    assert not any(tmp_path.iterdir())


def test_failed_checkpoint_download_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.MIRROR_ENV, "http://127.0.0.1:9")
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ConnectionError):
        assets.checkpoint_path("bert-base-uncased")
    assert not any(tmp_path.iterdir()), "a refused download left the cache folder behind"


def test_messages_name_nothing_a_learner_lacks(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        assets.data_path("mrpc", "train.tsv")
    source = (REPO / "minibert" / "assets.py").read_text(encoding="utf-8")
    for text in (str(err.value), source):
        assert "workplace" not in text and "shared" not in text


def test_mirror_variable_redirects_every_download(monkeypatch):
    url = assets.DATASETS["mrpc"][2].url  # with a query string and an escaped slash
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    assert assets.mirrored(url) == url
    monkeypatch.setenv(assets.MIRROR_ENV, "http://127.0.0.1:8000/")
    assert assets.mirrored(url) == ("http://127.0.0.1:8000/firebasestorage.googleapis.com/v0/b/"
                                    "mtl-sentence-representations.appspot.com/o/data%2Fmrpc_dev_ids.tsv")


def test_runs_dir_is_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    assert assets.runs_dir("07_small_bert") == tmp_path / "runs" / "07_small_bert"
    assert (tmp_path / "runs" / "07_small_bert").is_dir()


# --- checkpoints ----------------------------------------------------------------------------------------------

def test_offline_checkpoint_is_the_packaged_minilm():
    folder = assets.checkpoint_path(None)
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (6, 384, 30522)
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file()
    assert assets.checkpoint_path("all-MiniLM-L6-v2") == folder


def test_local_folder_is_used_as_is(tmp_path):
    assert assets.checkpoint_path(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="does not exist"):
        assets.checkpoint_path(tmp_path / "missing")


def test_hub_checkpoint_download_and_cache(tmp_path, monkeypatch):
    """The real hub download code, pointed at a local mirror laid out like the hub (no network)."""
    packaged = assets.checkpoint_path(None)
    remote = tmp_path / "hub" / "huggingface.co" / "bert-base-uncased" / "resolve" / "main"
    remote.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        (remote / name).symlink_to(packaged / name)
    monkeypatch.setenv(assets.MIRROR_ENV, (tmp_path / "hub").as_uri())
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    folder = assets.checkpoint_path("bert-base-uncased")
    assert folder == tmp_path / "cache" / "bert-base-uncased"
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        assert (folder / name).read_bytes() == (packaged / name).read_bytes()
    assert assets.checkpoint_source("bert-base-uncased") == \
        "downloaded from https://huggingface.co into the minibert cache"
    shutil.rmtree(tmp_path / "hub")  # a second call is served from the cache
    assert assets.checkpoint_path("bert-base-uncased") == folder


def test_hub_checkpoint_falls_back_to_the_bin_file(tmp_path, monkeypatch):
    remote = tmp_path / "hub" / "huggingface.co" / "org" / "tiny" / "resolve" / "main"
    remote.mkdir(parents=True)
    for name, text in (("config.json", "{}"), ("vocab.txt", "[PAD]\n"), ("pytorch_model.bin", "weights")):
        (remote / name).write_text(text)
    monkeypatch.setenv(assets.MIRROR_ENV, (tmp_path / "hub").as_uri())
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    folder = assets.checkpoint_path("org/tiny")
    assert (folder / "pytorch_model.bin").read_text() == "weights"
    assert not (folder / "model.safetensors").exists()


def test_course_checkpoint_prefers_bert_base_then_falls_back(tmp_path, monkeypatch):
    monkeypatch.delenv(assets.CHECKPOINT_ENV, raising=False)
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(assets.MIRROR_ENV, "http://127.0.0.1:9")  # refused: as if offline
    assert assets.course_checkpoint() == assets.OFFLINE_CHECKPOINT
    assert "no MLM/NSP heads" in assets.describe_checkpoint(assets.course_checkpoint())
    cached = tmp_path / "cache" / "bert-base-uncased"
    cached.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (cached / name).symlink_to(assets.checkpoint_path(None) / name)
    assert assets.course_checkpoint() == "bert-base-uncased"  # in the cache: no network needed
    monkeypatch.setenv(assets.CHECKPOINT_ENV, "some/folder")
    assert assets.course_checkpoint() == "some/folder"


def test_download_through_the_http_mirror(tmp_path, monkeypatch):
    """The course's real download code against tests/mirror.py: data sets and a hub checkpoint with heads."""
    from mirror import Mirror, build_stand_in

    source = assets.data_dir()
    hub = {"bert-base-uncased": build_stand_in(tmp_path / "hub", "bert-base-uncased", source)}
    with Mirror(source, hub) as url:
        monkeypatch.setenv(assets.MIRROR_ENV, url)
        monkeypatch.setenv(assets.DATA_ENV, str(tmp_path / "data"))
        monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
        assets.download("mrpc", "vocab")
        folder = assets.checkpoint_path("bert-base-uncased")
    for name in ("train.tsv", "dev.tsv", "test.tsv", "dev_ids.tsv"):  # GLUE's files, rebuilt from the MSR files
        assert (tmp_path / "data" / "mrpc" / name).read_bytes() == (source / "mrpc" / name).read_bytes(), name
    assert folder == tmp_path / "cache" / "bert-base-uncased"
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        assert (folder / name).read_bytes() == (tmp_path / "hub" / name).read_bytes(), name
    assert assets.describe_checkpoint("bert-base-uncased") == ("bert-base-uncased: a test stand-in served by a local "
                                                               "mirror, random weights (2 layers, hidden 32, 2 heads; "
                                                               "with its MLM and NSP heads)")


# --- mode -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["fast", "full"])
def test_mode_from_variable(mode, monkeypatch):
    monkeypatch.setenv(runtime.MODE_ENV, mode)
    assert runtime.course_mode() == mode


@pytest.mark.parametrize("cuda, expected", [(True, "full"), (False, "fast")])
def test_mode_default_follows_the_gpu(cuda, expected, monkeypatch):
    monkeypatch.delenv(runtime.MODE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert runtime.course_mode() == expected


def test_bad_mode_is_an_error(monkeypatch):
    monkeypatch.setenv(runtime.MODE_ENV, "quick")
    with pytest.raises(ValueError, match="'fast' or 'full'"):
        runtime.course_mode()


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("1", True), ("true", True), ("No", False)])
def test_dry_run_from_variable(value, expected, monkeypatch):
    monkeypatch.setenv(runtime.DRY_RUN_ENV, value)
    assert runtime.dry_run() is expected


def test_bad_dry_run_value_is_an_error(monkeypatch):
    monkeypatch.setenv(runtime.DRY_RUN_ENV, "2")
    with pytest.raises(ValueError, match="MINIBERT_DRY_RUN='2'.*set it to 1"):
        runtime.dry_run()


def test_environment_report_finds_data_and_checkpoint():
    report = runtime.environment_report()
    assert report["torch"] == torch.__version__
    assert "MISSING" not in " ".join(report.values()), report


# --- CI and README ----------------------------------------------------------------------------------------------

def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(?:bash|sh)\n(.+?)\n```", setup, flags=re.M | re.S)


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    assert len(commands) == 2, f"the README's set-up should show two commands, found {commands}"
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == [commands[1]], f".ci/run runs {ci}, the README's test command is {commands[1]!r}"


def _floor(spec: str) -> tuple[int, ...]:
    """(3, 10) from ">=3.10" or ">=3.10.0"."""
    return tuple(int(x) for x in re.fullmatch(r">=\s*([\d.]+)", spec.strip()).group(1).split("."))[:2]


def test_requires_python_is_what_the_dependencies_need():
    """pyproject and README promise the Python that torch (the build the Makefile installs) and, for the tests,
    transformers really need."""
    import importlib.metadata
    import tomllib

    ours = _floor(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    torch_floor = _floor(importlib.metadata.metadata("torch")["Requires-Python"])
    tests_floor = _floor(importlib.metadata.metadata("transformers")["Requires-Python"])
    makefile_torch = re.search(r"^TORCH \?= torch==([\d.]+)", (REPO / "Makefile").read_text(), re.M).group(1)
    if torch.__version__.split("+")[0] == makefile_torch:
        assert ours == torch_floor, f"requires-python says {ours}, torch {makefile_torch} needs {torch_floor}"
    assert sys.version_info[:2] >= ours
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"Python {'.'.join(map(str, ours))}+" in readme
    assert f"{'.'.join(map(str, tests_floor))}+ for `make test`" in readme


def test_readme_lists_every_notebook_once_in_order():
    """The README's notebook list (one `| `NN_name` | what it does |` row each) is where a learner finds a
    chapter: a notebook missing there, or a row overwritten by another table's, goes unnoticed otherwise."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `(\d\d_\w+)` \| \S", readme, re.M)
    assert listed == [p.stem for p in NOTEBOOKS], f"README lists {listed}"


def test_readme_library_snippet_prints_what_it_says():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"## The library\n\n```python\n(.+?)\n```", readme, re.S).group(1)
    expected = re.search(r"^# (\d+ torch\.Size.+?\)) {2}", snippet, re.M).group(1)  # before its comment
    output = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, check=True).stdout
    assert output.strip() == expected


# --- notebooks --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_shape(path):
    """Badge first, the Colab setup cell, then the config cell opened by course.start() (the mode switch). (Their
    saved outputs: test_notebooks.py.)"""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert re.match(r"\d\d_\w+\.ipynb$", path.name)
    badge = f"colab.research.google.com/github/minibert-course/minibert/blob/main/notebooks/{path.name}"
    assert cells[0]["cell_type"] == "markdown" and badge in "".join(cells[0]["source"])
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert '"google.colab" in sys.modules' in code[0], "first code cell must be the Colab setup cell"
    assert "MODE = course.start()" in code[1] and code[1].startswith("# Config:"), \
        "second code cell must be the config cell, opened by course.start()"
    assert not any("MINIBERT_MODE\")" in c for c in code), "the mode is read by course.start(), not by hand"


KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}  # the standard kernel
# The setup cell's install on Colab: the course's GitHub repository, or what MINIBERT_INSTALL names (one pip
# requirement: a fork, a branch, a local folder; tests/test_colab.py installs the local checkout that way).
INSTALL_ENV = "MINIBERT_INSTALL"
DEFAULT_INSTALL = "minibert @ git+https://github.com/minibert-course/minibert.git"
COLAB_INSTALL = ['MINIBERT_INSTALL = os.environ.get(', f'"{INSTALL_ENV}", "{DEFAULT_INSTALL}")',
                 '%pip install -q "$MINIBERT_INSTALL" bertviz']
# What a Colab runtime ships already (never reinstalled: a second torch would be a multi-GB download), and what it
# does not need (it has its own notebook front end).
COLAB_PREINSTALLED = {"torch", "numpy", "safetensors", "tqdm", "ipykernel", "ipywidgets", "matplotlib", "seaborn",
                      "pandas", "transformers"}
NOT_NEEDED_ON_COLAB = {"jupyterlab"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_uses_the_registered_kernel(path):
    assert json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"] == KERNEL


def colab_install_lines(path: Path) -> list[str]:
    """The lines of a notebook's setup cell that choose and run the Colab install."""
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    return [line.strip() for line in "".join(cells[0]["source"]).splitlines() if not line.lstrip().startswith("#")
            and ("pip install" in line or INSTALL_ENV in line or DEFAULT_INSTALL in line)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_colab_setup_cells_install_the_same_line(path):
    """One install line everywhere, which MINIBERT_INSTALL can point elsewhere."""
    assert colab_install_lines(path) == COLAB_INSTALL, f"{path.name}: its setup cell installs with " \
        f"{colab_install_lines(path)}; copy 00_setup's"


def test_colab_installs_only_what_colab_lacks():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"] + project["optional-dependencies"]["course"]}
    installed = set(COLAB_INSTALL[-1].rsplit('"', 1)[1].split())  # what follows minibert itself
    assert needed - COLAB_PREINSTALLED - NOT_NEEDED_ON_COLAB == installed, "Colab would miss a course dependency"
    assert not re.search(r"\btorch\b|jupyterlab|\[course\]", " ".join(COLAB_INSTALL))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert INSTALL_ENV in readme and DEFAULT_INSTALL in readme
