"""MRPC and ChnSentiCorp readers on the real files, and clear errors (file and line) for broken ones."""
from __future__ import annotations

import pytest

from minibert.datasets import InputExample, check_labels, read_chnsenticorp, read_mrpc, read_tsv
from minibert.training import encode_examples


@pytest.mark.parametrize("split, rows, positives", [("train", 3668, 2474), ("dev", 408, 279),
                                                    ("test", 1725, 1147)])
def test_mrpc_splits_have_the_published_sizes(split, rows, positives):
    ex = read_mrpc(split)
    assert len(ex) == rows and sum(e.label for e in ex) == positives
    assert all(e.text_a and e.text_b for e in ex)


def test_mrpc_bom_and_unbalanced_quotes():
    first = read_mrpc("train")[0]  # the file starts with a BOM before "Quality"
    assert first.guid == "train-702876-702977" and first.label == 1
    assert first.text_a.startswith('Amrozi accused his brother, whom he called "the witness"')
    # a sentence with one lone quote must not swallow the following rows (as csv quoting would)
    lone = [e for e in read_mrpc("train") if e.text_a.count('"') % 2 or e.text_b.count('"') % 2]
    assert lone, "MRPC train has sentences with unbalanced quotes"
    glue = read_mrpc("glue_test")
    assert len(glue) == 1725 and all(e.label is None for e in glue)
    assert [e.text_a for e in glue[:50]] == [e.text_a for e in read_mrpc("test")[:50]]  # same order


@pytest.mark.parametrize("split, rows, positives", [("train", 9600, 4798), ("dev", 1200, 590),
                                                    ("test", 1200, 602)])
def test_chnsenticorp_splits(split, rows, positives):
    ex = read_chnsenticorp(split)
    assert len(ex) == rows and sum(e.label for e in ex) == positives


def test_chnsenticorp_test_line_419_label_with_spaces():
    ex = {e.guid: e for e in read_chnsenticorp("test")}
    assert ex["test-419"].label == 0
    assert ex["test-419"].source.endswith("test.tsv, line 419")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


MRPC_HEAD = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def test_wrong_column_count_names_file_and_line(tmp_path):
    p = write(tmp_path, "train.tsv", MRPC_HEAD + "1\t1\t2\ta\tb\n0\t3\t4\tonly four\n")
    with pytest.raises(ValueError, match=r"train\.tsv, line 3: expected 5 tab-separated columns, found 4"):
        read_mrpc("train", path=p)


def test_unknown_label_names_file_and_line(tmp_path):
    p = write(tmp_path, "dev.tsv", "label\ttext_a\n1\t好\n2\t坏\n")
    with pytest.raises(ValueError, match=r"dev\.tsv, line 3: label '2' is not one of \['0', '1'\]"):
        read_chnsenticorp("dev", path=p)


def test_empty_split_is_an_error(tmp_path):
    p = write(tmp_path, "train.tsv", MRPC_HEAD)
    with pytest.raises(ValueError, match=r"train\.tsv: no examples"):
        read_mrpc("train", path=p)
    with pytest.raises(ValueError, match="split has no examples"):
        check_labels([], 2)
    with pytest.raises(ValueError, match="split 'validation' does not exist"):
        read_mrpc("validation")


def test_num_labels_that_do_not_match_the_data_name_file_and_line(tmp_path):
    ex = read_chnsenticorp("dev", path=write(tmp_path, "dev.tsv", "label\ttext_a\n1\t好\n0\t坏\n1\t很好\n"))
    ex.append(InputExample("extra", "x", None, 2, f"{tmp_path / 'extra.tsv'}, line 9"))
    with pytest.raises(ValueError, match=r"extra\.tsv, line 9: label 2 is outside \[0, 2\) .*num_labels=3"):
        check_labels(ex, 2)
    with pytest.raises(ValueError, match=r"dev\.tsv, line 2: label 1 is outside \[0, 1\)"):
        encode_examples(ex[:3], tokenizer=None, num_labels=1)
    check_labels(ex, 3)  # fine


def test_read_tsv_counts_lines_from_one(tmp_path):
    rows = read_tsv(write(tmp_path, "x.tsv", "a\tb\n1\t2\n\n3\t4"), 2)  # blank line skipped, no final newline
    assert rows == [(2, ["1", "2"]), (4, ["3", "4"])]
