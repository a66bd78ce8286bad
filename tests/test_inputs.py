"""The input and label rules (minibert.inputs): each rule on its own, and that the package states them once."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from minibert import BertConfig, inputs
from minibert.inputs import (
    IGNORE_INDEX, explain, first_index, invalid_input_ids, invalid_labels, invalid_mask, invalid_positions,
    invalid_segment_ids, invalid_targets,
)

PACKAGE = Path(__file__).resolve().parent.parent / "minibert"


def test_each_rule_gives_the_first_offending_index_in_row_major_order():
    ids = torch.tensor([[1, 2, 3], [4, 30, -1]])
    assert first_index(invalid_input_ids(ids, 30)) == (1, 1)
    assert first_index(invalid_input_ids(ids, 31)) == (1, 2)
    assert first_index(invalid_input_ids(ids.clamp(min=0), 31)) is None
    assert first_index(invalid_input_ids(ids, None)) == (1, 2)  # no vocab size: only >= 0 is checked
    assert first_index(invalid_segment_ids(torch.tensor([[0, 1, 1, 2]]))) == (0, 3)
    assert first_index(invalid_segment_ids(torch.tensor([[0, 1, 2]]), type_vocab_size=3)) is None


def test_the_mask_is_exactly_zero_or_one_and_nan_is_never_valid():
    assert first_index(invalid_mask(torch.tensor([[1, 1, 0]]))) is None
    assert first_index(invalid_mask(torch.tensor([[True, False]]))) is None
    assert first_index(invalid_mask(torch.tensor([[1.0, 0.5]]))) == (0, 1)
    assert first_index(invalid_mask(torch.tensor([[1.0, float("nan")]]))) == (0, 1)
    assert first_index(invalid_targets(torch.tensor([0.5, float("inf")]))) == (1,)


@pytest.mark.parametrize("ignored", [IGNORE_INDEX, -1])
def test_labels_and_positions_let_the_ignore_marks_through_and_nothing_else(ignored):
    assert IGNORE_INDEX == -100  # cross_entropy's default ignore_index
    assert first_index(invalid_labels(torch.tensor([0, ignored, 2]), 3)) is None
    assert first_index(invalid_labels(torch.tensor([0, -2, 3]), 3)) == (1,)
    assert first_index(invalid_labels(torch.tensor([0, ignored, 3]), 3)) == (2,)
    assert first_index(invalid_labels(torch.tensor([0, 7]), None)) is None
    assert first_index(invalid_positions(torch.tensor([ignored, 500]))) is None  # past the end: no answer here
    assert first_index(invalid_positions(torch.tensor([3, -2]))) == (1,)


def test_messages_say_what_was_found_where_and_what_is_expected():
    assert explain("input_ids", 30, 30, " at row 1, position 1") == (
        "input_ids contain 30 at row 1, position 1; expected token ids in the vocabulary [0, 30); was the text "
        "tokenized with this model's vocab.txt?")
    assert explain("token_type_ids", 2, 2) == "token_type_ids contain 2; expected segment ids in [0, 2) (segment A " \
                                              "is 0, B is 1)"
    assert explain("attention_mask", float("nan")) == "attention_mask contain NaN; expected 0 (padding) or 1 (token)"
    assert explain("labels", 2, 2, largest=4).endswith("; build the model with num_labels=5")
    assert "num_labels" not in explain("masked_lm_labels", 12, 10, largest=12)
    assert explain("labels", float("inf")) == "labels contain inf; expected finite regression targets"
    assert explain("end_positions", -2).startswith("end_positions contain -2; expected token positions >= 0")


def test_the_model_and_the_heads_raise_what_the_rules_find():
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
    ids = torch.tensor([[1, 2, 3]])
    assert inputs.check_model_inputs(config, ids) is True
    assert inputs.check_model_inputs(config, ids, attention_mask=torch.tensor([[1, 1, 0]])) is False
    assert inputs.check_model_inputs(config, ids, attention_mask=torch.ones(1, 3)) is True  # dropped: hides nothing
    assert inputs.check_model_inputs(config, ids, attention_mask=torch.ones(1, 3), check_values=False) is False
    with pytest.raises(ValueError, match=r"attention_mask contain 0.5 at row 0, position 2"):
        inputs.check_model_inputs(config, ids, attention_mask=torch.tensor([[1.0, 1.0, 0.5]]))
    labels = inputs.check_class_labels(torch.tensor([[0, -1, 2]], dtype=torch.int16), "labels", (1, 3), 3)
    assert labels.dtype == torch.long and labels.tolist() == [[0, IGNORE_INDEX, 2]]  # -1 read as IGNORE_INDEX
    positions = inputs.check_positions(torch.tensor([2, -1, 9]), "start_positions", batch=3, seq=5)
    assert positions.tolist() == [2, IGNORE_INDEX, IGNORE_INDEX]  # ignored, and past the window
    with pytest.raises(ValueError, match=r"labels has shape \(2,\), expected \(3,\)"):
        inputs.check_class_labels(torch.tensor([0, 1]), "labels", (3,), 2)
    with pytest.raises(ValueError, match=r"labels has shape \(2,\), expected \(3,\): one target per row"):
        inputs.check_regression_targets(torch.tensor([0.5, 1.0]), "labels", 3, torch.float32)


def test_ignore_index_is_defined_once_in_the_library():
    definitions = []  # the course's worked solutions are a learner's code, written without the library
    for path in sorted(p for p in PACKAGE.rglob("*.py") if "course" not in p.parts):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            definitions += [path.name for t in targets if isinstance(t, ast.Name) and t.id == "IGNORE_INDEX"]
    assert definitions == ["inputs.py"]
