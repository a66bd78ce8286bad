"""BertConfig, the encoder's parity with the real checkpoint and transformers, and clear input errors."""
import dataclasses
import json

import pytest
import torch

from minibert import modeling
from minibert.assets import checkpoint_path, data_path
from minibert.course import checks
from minibert.modeling import BertConfig, BertModel



@pytest.fixture(scope="module")
def minilm():
    return BertModel.from_pretrained()  # the packaged all-MiniLM-L6-v2, eval mode


@pytest.fixture(scope="module")
def mrpc_batch():
    """Eight real MRPC dev pairs, padded to the longest: the padding exercises the mask."""
    from minibert.datasets import read_mrpc
    from minibert.tokenization import BertTokenizer
    tok = BertTokenizer.from_pretrained(checkpoint_path())
    examples = read_mrpc("dev")[:8]
    batch = tok.batch_encode([e.text_a for e in examples], [e.text_b for e in examples], max_length=128)
    assert (batch["attention_mask"] == 0).any() and batch["input_ids"].shape[0] == 8
    return batch


# ---------------------------------------------------------------------------------------------- config
def test_config_defaults_are_bert_base():
    c = BertConfig()
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == \
        (30522, 768, 12, 12, 3072)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.hidden_size = 10
    assert dataclasses.replace(c, num_hidden_layers=3).num_hidden_layers == 3


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_size": 100, "num_attention_heads": 12}, r"hidden_size=100 is not divisible by num_attention_heads=12.*"
                                                      r"pick num_attention_heads among \[1, 2, 4, 5, 10, 20, 25, 50\]"),
    ({"hidden_act": "gelu_fast"}, r"unknown hidden_act='gelu_fast'; use one of"),
    ({"num_hidden_layers": 0}, r"num_hidden_layers must be a positive int, got 0"),
    ({"vocab_size": 3.5}, r"vocab_size must be a positive int, got 3.5"),
    ({"hidden_dropout_prob": 1.0}, r"hidden_dropout_prob must be a probability in \[0, 1\)"),
    ({"layer_norm_eps": 0}, r"layer_norm_eps must be > 0"),
])
def test_config_validation_says_what_to_change(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BertConfig(**kwargs)


def test_config_reads_google_and_hf_json(tmp_path):
    google = BertConfig.from_json_file(data_path("vocab", "bert-base-uncased-bert_config.json"))
    assert google == BertConfig()  # Google's file has no layer_norm_eps: the default 1e-12 is BERT's
    hf = BertConfig.from_json_file(checkpoint_path() / "config.json")  # HF keys like architectures ignored
    assert (hf.hidden_size, hf.num_hidden_layers, hf.intermediate_size) == (384, 6, 1536)
    chinese = BertConfig.from_json_file(data_path("vocab", "bert-base-chinese-config.json"))
    assert chinese.vocab_size == 21128
    hf.to_json_file(tmp_path / "c.json")
    assert BertConfig.from_json_file(tmp_path / "c.json") == hf
    assert json.loads((tmp_path / "c.json").read_text())["hidden_act"] == "gelu"


def test_initialization_is_the_originals():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=2000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256)
    model = BertModel(config)
    for name, p in model.named_parameters():
        if name.endswith("LayerNorm.weight"):
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith("bias"):
            assert not p.any(), name
        else:
            assert abs(p.std().item() - 0.02) < 0.002 and abs(p.mean().item()) < 0.002, name
    assert "embeddings.position_ids" not in model.state_dict()


# ---------------------------------------------------------------------------------------------- parity
def test_reproduces_reference_json(minilm, jim_henson_reference):
    ref = jim_henson_reference  # transformers' outputs, computed in conftest.py
    ids = torch.tensor([ref["input_ids"]])
    types = torch.tensor([ref["token_type_ids"]])
    with torch.no_grad():
        encoded, pooled = minilm(ids, types, torch.tensor([ref["attention_mask"]]), output_all_encoded_layers=False)
        zero_types, _ = minilm(ids, output_all_encoded_layers=False)
    assert encoded.shape == tuple(ref["last_hidden_state_shape"])
    torch.testing.assert_close(encoded[0, 0], torch.tensor(ref["cls_last_hidden_full"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(encoded[0, -1, :5], torch.tensor(ref["last_token_last_hidden_first5"]), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(pooled[0, :5], torch.tensor(ref["pooler_output_first5"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(zero_types[0, 0, :5],
                               torch.tensor(ref["cls_last_hidden_first5_if_token_type_ids_all_zero"]), atol=1e-5,
                               rtol=0)


def test_every_layer_matches_transformers_on_padded_mrpc(minilm, mrpc_batch):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertModel.from_pretrained(str(checkpoint_path())).eval()
    b = mrpc_batch
    real = b["attention_mask"].bool()
    with torch.no_grad():
        out = theirs(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                     attention_mask=b["attention_mask"], output_hidden_states=True)
        encoded, pooled = minilm(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    assert len(encoded) == 6
    for i, layer in enumerate(encoded):
        diff = (layer - out.hidden_states[i + 1])[real].abs().max().item()
        assert diff < 1e-5, f"layer {i}: max abs difference {diff:.2e}"
    torch.testing.assert_close(pooled, out.pooler_output, atol=1e-5, rtol=0)


def test_explicit_and_sdpa_paths_agree_and_attentions_match_transformers(minilm, mrpc_batch):
    transformers = pytest.importorskip("transformers")
    b = mrpc_batch
    args = (b["input_ids"], b["token_type_ids"], b["attention_mask"])
    real = b["attention_mask"].bool()
    with torch.no_grad():
        fast, fast_pooled = minilm(*args)
        slow, slow_pooled, attentions = minilm(*args, output_attentions=True)
        minilm.set_attn_implementation("explicit")
        try:
            explicit, _ = minilm(*args)
        finally:
            minilm.set_attn_implementation("sdpa")
    for i, (f, s, e) in enumerate(zip(fast, slow, explicit)):
        assert (f - s)[real].abs().max() < 1e-5, f"layer {i}"
        assert torch.equal(s, e), f"layer {i}: output_attentions and 'explicit' take the same path"
    torch.testing.assert_close(fast_pooled, slow_pooled, atol=1e-5, rtol=0)
    assert len(attentions) == 6 and attentions[0].shape == (8, 12, real.shape[1], real.shape[1])
    probs = attentions[3]
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5, rtol=0)
    assert probs.masked_select(~real[:, None, None, :]).abs().max() == 0  # padding gets no attention
    theirs = transformers.BertModel.from_pretrained(str(checkpoint_path()), attn_implementation="eager").eval()
    with torch.no_grad():
        ref = theirs(input_ids=args[0], token_type_ids=args[1], attention_mask=args[2], output_attentions=True)
    for i in range(6):
        q = real[:, None, :, None]  # compare rows of real query tokens
        assert (attentions[i] - ref.attentions[i]).masked_select(q).abs().max() < 1e-5, f"layer {i}"


def test_output_all_encoded_layers_false_returns_last_tensor(minilm):
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        last, pooled = minilm(ids, output_all_encoded_layers=False)
        every, _ = minilm(ids)
    assert isinstance(last, torch.Tensor) and torch.equal(last, every[-1]) and pooled.shape == (1, 384)


def test_attention_path_flag_is_validated():
    with pytest.raises(ValueError, match=r"attn_implementation must be one of \('sdpa', 'explicit'\)"):
        BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=8), attn_implementation="flash")


def test_train_mode_gradients_agree_between_paths():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertModel(config).train()
    ids = torch.randint(1, 100, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    grads = []
    for path in ("sdpa", "explicit"):
        model.zero_grad()
        model.set_attn_implementation(path)
        encoded, pooled = model(ids, attention_mask=mask)
        (encoded[-1][mask.bool()].sum() + pooled.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def _ids_and_mask():
    torch.manual_seed(0)
    ids = torch.randint(1, 100, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return ids, mask


def test_the_model_reports_the_attention_that_runs(monkeypatch):
    """On a CPU, in train mode with attention dropout, "sdpa" runs the fused function with the dropout."""
    calls = []
    fused = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("dropout_p"))
        return fused(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, attention_probs_dropout_prob=0.1)
    model = BertModel(config).train()
    ids, mask = _ids_and_mask()
    assert model.attn_implementation == "sdpa"
    first, _ = model(ids, attention_mask=mask)
    assert calls == [0.1, 0.1]  # one fused call per layer, dropout in it
    second, _ = model(ids, attention_mask=mask)
    assert not torch.equal(first[-1], second[-1])  # dropout really drew new masks
    calls.clear()
    model.eval()(ids, attention_mask=mask)
    assert calls == [0.0, 0.0]
    calls.clear()
    model(ids, attention_mask=mask, output_attentions=True)  # only the explicit formula has the probabilities
    model.set_attn_implementation("explicit")
    assert model.attn_implementation == "explicit" and model.encoder.layer[1].attention.self.attn_implementation \
        == "explicit"
    model(ids, attention_mask=mask)
    assert calls == []


def _gradients(model, ids, mask, seed):
    model.zero_grad()
    saved = []

    def keep(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(seed)  # the same dropout masks for every run
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        encoded, pooled = model(ids, attention_mask=mask)
    (encoded[-1][mask.bool()].sum() + pooled.sum()).backward()
    return [p.grad.clone() for p in model.parameters()], sum(saved)


def test_gradient_checkpointing_gives_the_same_gradients_and_keeps_less():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64)  # dropout 0.1 on: recomputation must replay the same masks
    model = BertModel(config).train()
    assert model.encoder.gradient_checkpointing is False
    ids, mask = _ids_and_mask()
    plain, plain_bytes = _gradients(model, ids, mask, seed=1)
    model.encoder.gradient_checkpointing = True
    recomputed, recomputed_bytes = _gradients(model, ids, mask, seed=1)
    for name, a, b in zip([n for n, _ in model.named_parameters()], plain, recomputed):
        # the backward pass recomputes each layer with the same ops on the same inputs; 1e-6 covers an fp32
        # kernel that blocks a reduction differently on the second run
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)
    assert recomputed_bytes < plain_bytes / 3  # the layers' activations were not kept
    other, _ = _gradients(model, ids, mask, seed=2)
    assert not torch.equal(other[0], recomputed[0])  # dropout is on: the seed matters, the test can tell


def test_input_value_checks_take_one_sync_and_can_be_turned_off(monkeypatch):
    syncs = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, _o=original, _n=name: syncs.append(_n) or _o(t))
    model = BertModel(SMALL).eval()
    ids, types, mask = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 0, 1, 1]]), torch.tensor([[1, 1, 1, 0]])
    with torch.no_grad():
        checked = model(ids, types, mask)[1]
        assert syncs == ["tolist"]  # ids, segment ids and mask read back together
        model.check_inputs = False
        unchecked = model(ids, types, mask)[1]
    assert syncs == ["tolist"] and torch.equal(checked, unchecked)
    with pytest.raises(ValueError, match=r"input_ids must be a \(batch, seq\) tensor"):
        model(ids[0])  # shapes are still checked: that costs nothing
    model.check_inputs = True
    with pytest.raises(ValueError, match="expected token ids in the vocabulary"):
        model(ids + 100)


# ---------------------------------------------------------------------------------------------- errors
SMALL = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=12, type_vocab_size=2)


@pytest.mark.parametrize("ids, types, mask, match", [
    (torch.randint(1, 100, (2, 13)), None, None,
     r"sequence length 13 exceeds max_position_embeddings=12; truncate with max_seq_length<=12"),
    (torch.tensor([[1, 2, 100]]), None, None,
     r"input_ids contain 100 at row 0, position 2; expected token ids in the vocabulary \[0, 100\); was the text "
     r"tokenized with this model's vocab.txt\?"),
    (torch.tensor([[1, 5, 5], [1, -3, 5]]), None, None, r"input_ids contain -3 at row 1, position 1; expected"),
    (torch.tensor([1, 2, 3]), None, None, r"input_ids must be a \(batch, seq\) tensor.*got \(3,\)"),
    (torch.tensor([[1.0, 2.0]]), None, None, r"input_ids must hold integer token ids"),
    # int16 ids would fail inside the embedding, with a message that does not name input_ids
    (torch.tensor([[1, 2]], dtype=torch.int16), None, None,
     r"input_ids must hold integer token ids of dtype torch.long \(or torch.int32\), got dtype torch.int16; "
     r"convert with input_ids.long\(\)"),
    (torch.tensor([[1, 2]]), torch.tensor([[0.0, 1.0]]), None, r"token_type_ids must hold integer segment ids"),
    (torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1, 2]]), None,
     r"token_type_ids contain 2 at row 0, position 2; expected segment ids in \[0, 2\)"),
    (torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1]]), None, r"token_type_ids has shape \(1, 2\), expected \(1, 3\)"),
    (torch.tensor([[1, 2, 3]]), None, torch.tensor([[1, 1]]), r"attention_mask has shape \(1, 2\), expected \(1, 3\)"),
    (torch.tensor([[1, 2, 3]]), None, torch.tensor([[1, 1, 2]]),
     r"attention_mask contain 2 at row 0, position 2; expected 0 \(padding\) or 1 \(token\)"),
    (torch.tensor([[1, 2, 3]]), None, torch.tensor([[1.0, 0.5, 1.0]]),
     r"attention_mask contain 0.5 at row 0, position 1"),
])
def test_bad_inputs_raise_before_any_kernel(ids, types, mask, match):
    model = BertModel(SMALL).eval()
    with pytest.raises(ValueError, match=match):
        model(ids, types, mask)


def test_check_functions_accept_ours_and_name_the_first_mistake():
    checks.check_attention(checks.reference_attention)

    def unscaled(q, k, v, mask=None):
        scores = q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        probs = scores.softmax(-1)
        return probs @ v, probs

    with pytest.raises(AssertionError, match=r"\[no mask, one head\] probs: at index \(0, 0, 0, \d\)"):
        checks.check_attention(unscaled)

    def forward(layer, x, mask):
        ext = modeling.extended_attention_mask(mask, x.dtype)
        return layer(x, ext)[0]

    checks.check_bert_layer(forward)

    def no_residual(layer, x, mask):
        a = layer.attention.output.LayerNorm(layer.attention.output.dense(
            layer.attention.self(x, modeling.extended_attention_mask(mask, x.dtype))[0]))
        return layer.output(layer.intermediate(a), a)

    with pytest.raises(AssertionError, match=r"layer output: at index"):
        checks.check_bert_layer(no_residual)
