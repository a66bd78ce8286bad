"""What pytorch-pretrained-bert 0.6.2 did, kept: its casing rule for the released names, ``cache_dir`` receiving the
vocabulary, and the imports its example scripts make (``whitespace_tokenize``, ``file_utils``)."""
import logging
import shutil
import subprocess
import sys

import pytest

from minibert import BertTokenizer, assets
from minibert.tokenization import PRETRAINED_VOCAB_ARCHIVE_MAP


def test_a_cased_name_with_do_lower_case_true_keeps_capitals_with_0_6_2s_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="minibert.tokenization"):
        tokenizer = BertTokenizer.from_pretrained("bert-base-cased", do_lower_case=True)
    assert not tokenizer.do_lower_case and tokenizer.tokenize("Jim Henson") == ["Jim", "He", "##nson"]
    assert "a cased model but you have not set `do_lower_case` to False. We are setting `do_lower_case=False` for " \
           "you" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="minibert.tokenization"):
        assert not BertTokenizer.from_pretrained("bert-base-cased").do_lower_case  # the default: no warning
        assert BertTokenizer.from_pretrained("bert-base-chinese", do_lower_case=False).do_lower_case  # not '-cased'
    assert "uncased model but you have set `do_lower_case` to False" in caplog.text
    assert "We are setting `do_lower_case=False`" not in caplog.text


def test_a_folder_keeps_the_casing_it_is_given(tmp_path):
    """0.6.2's rule is for its released names; a folder (a fine-tuned model) is loaded as asked."""
    folder = tmp_path / "my-bert-base-cased"
    folder.mkdir()
    shutil.copy(assets.vocab_path("bert-base-cased"), folder / "vocab.txt")
    assert BertTokenizer.from_pretrained(folder, do_lower_case=True).do_lower_case
    assert not BertTokenizer.from_pretrained(folder).do_lower_case  # a cased name defaults to keeping capitals


def test_cache_dir_receives_the_vocabulary_as_in_0_6_2(tmp_path, monkeypatch):
    url = PRETRAINED_VOCAB_ARCHIVE_MAP["bert-base-uncased"]
    served = tmp_path / "mirror" / assets.mirror_path(url)
    served.parent.mkdir(parents=True)
    shutil.copy(assets.vocab_path("bert-base-uncased"), served)
    monkeypatch.setenv(assets.MIRROR_ENV, (tmp_path / "mirror").as_uri())
    tokenizer = BertTokenizer.from_pretrained("bert-base-uncased", cache_dir=tmp_path / "d")
    cached = tmp_path / "d" / assets.url_to_filename(url)  # named by the sha256 of its URL, as 0.6.2 named it
    assert [p.name for p in (tmp_path / "d").iterdir()] == [cached.name]
    assert cached.read_bytes() == served.read_bytes()
    assert tokenizer.tokenize("Jim Henson") == ["jim", "henson"] and tokenizer.max_len == 512
    shutil.rmtree(tmp_path / "mirror")  # the second time it comes from d
    assert BertTokenizer.from_pretrained("bert-base-uncased", cache_dir=tmp_path / "d").vocab == tokenizer.vocab


def test_a_vocabulary_that_is_not_the_released_one_is_refused(tmp_path, monkeypatch):
    url = PRETRAINED_VOCAB_ARCHIVE_MAP["bert-base-cased"]
    served = tmp_path / "mirror" / assets.mirror_path(url)
    served.parent.mkdir(parents=True)
    served.write_text("[PAD]\n[UNK]\n")
    monkeypatch.setenv(assets.MIRROR_ENV, (tmp_path / "mirror").as_uri())
    with pytest.raises(ValueError, match=f"expected sha256 {assets.VOCAB_REMOTES['bert-base-cased'].sha256}"):
        BertTokenizer.from_pretrained("bert-base-cased", cache_dir=tmp_path / "d")
    assert not (tmp_path / "d").exists()  # no file, no temporary copy, no folder made for them


def test_whitespace_tokenize_is_0_6_2s():
    from minibert.tokenization import whitespace_tokenize

    assert whitespace_tokenize("  Jim\tHenson \n was ") == ["Jim", "Henson", "was"]
    assert whitespace_tokenize("   ") == [] and whitespace_tokenize("") == []


def test_the_2019_scripts_imports_run_with_the_package_renamed(tmp_path):
    """run_squad.py's and run_classifier.py's import lines of 0.6.2, with pytorch_pretrained_bert -> minibert."""
    script = (
        "from minibert.tokenization import (BasicTokenizer, BertTokenizer, whitespace_tokenize)\n"
        "from minibert.file_utils import PYTORCH_PRETRAINED_BERT_CACHE, WEIGHTS_NAME, CONFIG_NAME\n"
        "import minibert.file_utils as file_utils\n"
        "from minibert.file_utils import cached_path, url_to_filename, read_set_from_file, get_file_extension\n"
        "print(WEIGHTS_NAME, CONFIG_NAME, get_file_extension('a/B.TXT'), whitespace_tokenize(' a b '))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["pytorch_model.bin", "config.json", ".txt", "['a',", "'b']"]


def test_file_utils_names_are_the_assets_ones_and_its_s3_helpers_say_they_are_gone(tmp_path):
    import minibert.file_utils as file_utils

    for name in ("PYTORCH_PRETRAINED_BERT_CACHE", "WEIGHTS_NAME", "CONFIG_NAME", "cached_path", "url_to_filename"):
        assert getattr(file_utils, name) is getattr(assets, name)
    words = tmp_path / "words.txt"
    words.write_text("a \nb\na\n", encoding="utf-8")
    assert file_utils.read_set_from_file(words) == {"a", "b"}
    assert file_utils.get_file_extension("x.TAR", dot=False, lower=False) == "TAR"
    assert assets.url_to_filename("u", etag="e").count(".") == 1
    with pytest.raises(AttributeError, match="S3 links .* are gone"):
        file_utils.s3_get  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        file_utils.nope  # noqa: B018
