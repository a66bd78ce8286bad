"""Fixtures several test files share: the packaged all-MiniLM-L6-v2 and its tokenizer, loaded once."""

import pytest

from minibert import BertModel, BertTokenizer


@pytest.fixture(scope="session")
def model() -> BertModel:
    """The offline checkpoint as a BertModel in eval mode (tests must not change its weights)."""
    return BertModel.from_pretrained(None).eval()


@pytest.fixture(scope="session")
def tokenizer() -> BertTokenizer:
    """The vocab of the offline checkpoint (bert-base-uncased's)."""
    return BertTokenizer.from_pretrained(None)
