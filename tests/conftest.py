"""Fixtures several test files share: the packaged all-MiniLM-L6-v2, its tokenizer, and transformers' outputs
for the 2019 README's Jim Henson pair, each built once. (The session's thread count is set by the repository's
conftest.py.)"""

import pytest
import torch

from minibert import BertModel, BertTokenizer
from minibert.assets import checkpoint_path


@pytest.fixture(scope="session")
def model() -> BertModel:
    """The offline checkpoint as a BertModel in eval mode (tests must not change its weights)."""
    return BertModel.from_pretrained(None).eval()


@pytest.fixture(scope="session")
def tokenizer() -> BertTokenizer:
    """The vocab of the offline checkpoint (bert-base-uncased's)."""
    return BertTokenizer.from_pretrained(None)


@pytest.fixture(scope="session")
def jim_henson_reference() -> dict:
    """What the reference implementations give for ``Who was Jim Henson ?`` / ``Jim Henson was a puppeteer`` on
    the packaged checkpoint: tokens and ids from transformers' pure-Python BertTokenizerLegacy, outputs from
    transformers' BertModel (float32, CPU). Computed on this machine, as a learner's machine would."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    folder = checkpoint_path(None)
    tok = BertTokenizerLegacy(str(folder / "vocab.txt"), do_lower_case=True)
    enc = tok("Who was Jim Henson ?", "Jim Henson was a puppeteer", return_token_type_ids=True,
              return_attention_mask=True)
    ids, types, mask = (torch.tensor([enc[k]]) for k in ("input_ids", "token_type_ids", "attention_mask"))
    model = transformers.BertModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
        zero_types = model(input_ids=ids)
    return {
        "tokens": tok.convert_ids_to_tokens(enc["input_ids"]),
        **{k: list(enc[k]) for k in ("input_ids", "token_type_ids", "attention_mask")},
        "last_hidden_state_shape": list(out.last_hidden_state.shape),
        "cls_last_hidden_full": out.last_hidden_state[0, 0].tolist(),
        "cls_last_hidden_first5": out.last_hidden_state[0, 0, :5].tolist(),
        "last_token_last_hidden_first5": out.last_hidden_state[0, -1, :5].tolist(),
        "pooler_output_first5": out.pooler_output[0, :5].tolist(),
        "cls_last_hidden_first5_if_token_type_ids_all_zero": zero_types.last_hidden_state[0, 0, :5].tolist(),
    }
