"""The one collate: dynamic padding with the tokenizer's pad id, every label layout, checks that name the example."""
import pytest
import torch

from minibert.data import IGNORE_INDEX, collate, encode_examples, feature_length
from minibert.datasets import InputExample

PAD = 7  # a pad id that is not 0, so a collate that pads with a hard-coded 0 fails


def test_pads_to_the_longest_with_the_given_pad_id():
    feats = [{"input_ids": [101, 5, 102], "token_type_ids": [0, 0, 0], "label": 1},
             {"input_ids": [101, 8, 9, 10, 102], "token_type_ids": [0, 0, 0, 1, 1], "label": 0}]
    b = collate(feats, pad_token_id=PAD)
    assert b["input_ids"].tolist() == [[101, 5, 102, PAD, PAD], [101, 8, 9, 10, 102]]
    assert b["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert b["labels"].tolist() == [1, 0] and b["labels"].dtype == torch.long
    assert all(v.dtype == torch.long for v in b.values())
    assert collate(feats, PAD, pad_to_multiple_of=8)["input_ids"].shape == (2, 8)
    assert set(collate([{"input_ids": [1, 2]}], PAD)) == {"input_ids", "token_type_ids", "attention_mask"}


def test_keeps_a_given_attention_mask_and_drops_the_guid():
    feats = [{"guid": "a", "input_ids": [1, 2, 3], "attention_mask": [1, 1, 0]},
             {"guid": "b", "input_ids": [4], "attention_mask": [1]}]
    b = collate(feats, PAD)
    assert b["attention_mask"].tolist() == [[1, 1, 0], [1, 0, 0]]
    assert "guid" not in b


def test_per_token_labels_are_padded_with_ignore_index():
    feats = [{"input_ids": [1, 2, 3], "labels": [-100, 4, 0]}, {"input_ids": [1, 2], "labels": [-100, 2]}]
    b = collate(feats, PAD, num_labels=5)
    assert b["labels"].tolist() == [[-100, 4, 0], [-100, 2, IGNORE_INDEX]]
    mlm = [{"input_ids": [1, 2, 3], "masked_lm_labels": [-100, 9, -100], "next_sentence_label": 1},
           {"input_ids": [1, 2], "masked_lm_labels": [-100, 3], "next_sentence_label": 0}]
    b = collate(mlm, PAD, vocab_size=10)
    assert b["masked_lm_labels"].tolist() == [[-100, 9, -100], [-100, 3, -100]]
    assert b["next_sentence_label"].tolist() == [1, 0]


def test_answer_spans_and_regression_targets_are_stacked():
    feats = [{"input_ids": [1, 2, 3], "start_positions": 1, "end_positions": 2},
             {"input_ids": [1, 2], "start_positions": 0, "end_positions": 0}]
    b = collate(feats, PAD)
    assert b["start_positions"].tolist() == [1, 0] and b["end_positions"].tolist() == [2, 0]
    reg = collate([{"input_ids": [1], "label": 0.5}, {"input_ids": [1, 2], "label": 3}], PAD)
    assert reg["labels"].dtype == torch.float32 and reg["labels"].tolist() == [0.5, 3.0]


def test_multiple_choice_gives_batch_choices_seq():
    feats = [{"input_ids": [[1, 2], [1, 2, 3]], "token_type_ids": [[0, 1], [0, 1, 1]], "label": 1},
             {"input_ids": [[1], [1, 2, 3, 4]], "token_type_ids": [[0], [0, 0, 1, 1]], "label": 0}]
    b = collate(feats, PAD, num_labels=2)
    assert b["input_ids"].shape == b["token_type_ids"].shape == b["attention_mask"].shape == (2, 2, 4)
    assert b["input_ids"][0].tolist() == [[1, 2, PAD, PAD], [1, 2, 3, PAD]]
    assert b["attention_mask"][1].tolist() == [[1, 0, 0, 0], [1, 1, 1, 1]]
    assert b["labels"].tolist() == [1, 0]
    assert feature_length(feats[1]) == 4 and feature_length({"input_ids": [1, 2]}) == 2
    with pytest.raises(ValueError, match=r"batch row 1 has 1 choices but batch row 0 has 2"):
        collate([feats[0], {"input_ids": [[1]], "token_type_ids": [[0]], "label": 0}], PAD)


def test_errors_name_the_example():
    good = {"guid": "dev-1", "input_ids": [1, 2], "label": 0}
    with pytest.raises(ValueError, match=r"example 'dev-9' \(batch row 1\): input_ids contain 30 at position 1; "
                                         r"expected token ids in the vocabulary \[0, 30\)"):
        collate([good, {"guid": "dev-9", "input_ids": [1, 30], "label": 0}], PAD, vocab_size=30)
    with pytest.raises(ValueError, match=r"example 'dev-9' \(batch row 1\): labels contain 2; expected class ids "
                                         r"in \[0, 2\).*num_labels=3"):
        collate([good, {"guid": "dev-9", "input_ids": [1], "label": 2}], PAD, num_labels=2)
    with pytest.raises(ValueError, match=r"batch row 0: token_type_ids contain 2 at position 1; expected segment "
                                         r"ids in \[0, 2\) \(segment A is 0, B is 1\)"):
        collate([{"input_ids": [1, 2], "token_type_ids": [0, 2]}], PAD)
    with pytest.raises(ValueError, match=r"batch row 0: attention_mask contain 3 at position 0; expected 0 "
                                         r"\(padding\) or 1"):
        collate([{"input_ids": [1, 2], "attention_mask": [3, 1]}], PAD)
    with pytest.raises(ValueError, match=r"batch row 0: token_type_ids has 1 entries but input_ids has 2"):
        collate([{"input_ids": [1, 2], "token_type_ids": [0]}], PAD)
    with pytest.raises(ValueError, match=r"batch row 1: labels has 1 entries but input_ids has 2; per-token"):
        collate([{"input_ids": [1], "labels": [0]}, {"input_ids": [1, 2], "labels": [0]}], PAD)
    with pytest.raises(ValueError, match=r"batch row 1: masked_lm_labels contain 12 at position 0; expected class "
                                         r"ids in \[0, 10\)"):
        collate([{"input_ids": [1], "masked_lm_labels": [-100]}, {"input_ids": [1], "masked_lm_labels": [12]}],
                PAD, vocab_size=10)
    with pytest.raises(ValueError, match=r"batch row 0: start_positions contain -2; expected token positions >= 0"):
        collate([{"input_ids": [1], "start_positions": -2, "end_positions": 0}], PAD)
    with pytest.raises(ValueError, match=r"batch row 1: labels contain NaN; expected finite regression targets"):
        collate([{"input_ids": [1], "label": 0.5}, {"input_ids": [1], "label": float("nan")}], PAD)
    with pytest.raises(ValueError, match=r"batch row 1 has keys \['input_ids'\] but batch row 0 has "
                                         r"\['input_ids', 'label'\]"):
        collate([{"input_ids": [1], "label": 0}, {"input_ids": [1]}], PAD)
    with pytest.raises(ValueError, match="empty batch"):
        collate([], PAD)


def test_collate_lets_through_what_the_heads_ignore():
    """One rule for the collate and the heads: -100 and the 2019 -1 mark what is not predicted, in labels and in
    answer positions alike."""
    b = collate([{"input_ids": [1, 2], "labels": [-1, 3], "start_positions": -1, "end_positions": -100}], PAD,
                num_labels=4)
    assert b["labels"].tolist() == [[-1, 3]] and b["start_positions"].tolist() == [-1]


def test_encode_examples_keeps_the_mask_and_the_tokenizer_does_the_ids(tokenizer):
    examples = [InputExample("train-3", "Who was Jim Henson?", "A puppeteer.", 1),
                InputExample("train-4", "Hello", None, 0)]
    feats = encode_examples(examples, tokenizer, 16, num_labels=2)
    enc = tokenizer.encode("Who was Jim Henson?", "A puppeteer.", max_length=16)
    assert feats[0] == {"guid": "train-3", **enc, "label": 1}
    b = collate(feats, tokenizer.pad_token_id, vocab_size=tokenizer.vocab_size, num_labels=2)
    want = tokenizer.batch_encode(["Who was Jim Henson?", "Hello"], ["A puppeteer.", None], max_length=16)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(b[key], want[key]), key  # the same padding as the tokenizer's own batch_encode
    with pytest.raises(ValueError, match="example 'train-7': label 3 is outside \\[0, 2\\) .*num_labels=4"):
        encode_examples([InputExample("train-7", "a", None, 3)], tokenizer, num_labels=2)
    with pytest.raises(ValueError, match="example 'train-8' has label '1'; labels must be class indices"):
        encode_examples([InputExample("train-8", "a", None, "1")], tokenizer)
    with pytest.raises(ValueError, match="no examples to encode"):
        encode_examples([], tokenizer)
