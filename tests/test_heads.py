"""Every head vs the transformers class with the same random weights, exchanged by name both ways; the masked-LM
loss computed at the masked positions only; label checks."""
import pytest
import torch

from minibert import heads
from minibert.checkpoints import load_state_dict_into
from minibert.modeling import BertConfig

PACKAGED = BertConfig(vocab_size=4000, hidden_size=384, num_hidden_layers=1, num_attention_heads=12,
                      intermediate_size=1536)  # the packaged shapes, a smaller vocab to keep the test quick
CHINESE_SMALL = BertConfig(vocab_size=21128, hidden_size=96, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=384, max_position_embeddings=64)
CONFIGS = {"minilm-shaped": PACKAGED, "L3-H96-A4-zh": CHINESE_SMALL}

# (minibert class, transformers class name, constructor kwargs, label kwargs builder)
B, S, C = 3, 11, 3


def _labels(name, config, gen):
    V = config.vocab_size
    mlm = torch.randint(0, V, (B, S), generator=gen)
    mlm[:, ::2] = -100  # ignored positions
    if name == "BertForPreTraining":
        return {"masked_lm_labels": mlm, "next_sentence_label": torch.tensor([0, 1, 1])}, \
               {"labels": mlm, "next_sentence_label": torch.tensor([0, 1, 1])}
    if name == "BertForMaskedLM":
        return {"masked_lm_labels": mlm}, {"labels": mlm}
    if name == "BertForNextSentencePrediction":
        return {"next_sentence_label": torch.tensor([1, 0, 1])}, {"labels": torch.tensor([1, 0, 1])}
    if name == "BertForSequenceClassification":
        return {"labels": torch.tensor([2, 0, 1])}, {"labels": torch.tensor([2, 0, 1])}
    if name == "BertForMultipleChoice":
        return {"labels": torch.tensor([1, 2, 0])}, {"labels": torch.tensor([1, 2, 0])}
    if name == "BertForTokenClassification":
        tags = torch.randint(0, 5, (B, S), generator=gen)
        tags[2, 7:] = -100  # the padded positions of the batch below
        return {"labels": tags}, {"labels": tags}
    if name == "BertForQuestionAnswering":
        pos = {"start_positions": torch.tensor([1, 4, 30]), "end_positions": torch.tensor([3, 6, 2])}
        return pos, pos  # 30 is outside the sequence: clamped and ignored by both
    raise KeyError(name)


MODELS = {
    "BertForPreTraining": {},
    "BertForMaskedLM": {},
    "BertForNextSentencePrediction": {},
    "BertForSequenceClassification": {"num_labels": 3},
    "BertForMultipleChoice": {"num_choices": C},
    "BertForTokenClassification": {"num_labels": 5},
    "BertForQuestionAnswering": {},
}


def _build(name, config, kwargs):
    transformers = pytest.importorskip("transformers")
    ours = getattr(heads, name)(config, **kwargs).eval()
    hf_config = transformers.BertConfig(**config.to_dict(), num_labels=kwargs.get("num_labels", 2))
    theirs = getattr(transformers, name)(hf_config).eval()
    return ours, theirs


def _inputs(name, config, gen):
    shape = (B, C, S) if name == "BertForMultipleChoice" else (B, S)
    ids = torch.randint(1, config.vocab_size, shape, generator=gen)
    types = torch.zeros(shape, dtype=torch.long)
    types[..., 6:] = 1
    mask = torch.ones(shape, dtype=torch.long)
    mask[2, ..., 7:] = 0
    return ids, types, mask


def _scramble(model, gen):
    with torch.no_grad():  # random values everywhere, so no zero bias or unit LayerNorm hides a swap
        for name, p in model.named_parameters():
            if "word_embeddings" in name:
                continue  # already N(0, 0.02) from the initialization; redrawing 30522 rows costs seconds
            offset = 1.0 if name.endswith("LayerNorm.weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05 + offset)


def _as_tuple(out):
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


def _hf_logits(name, out):
    if name == "BertForPreTraining":
        return out.prediction_logits, out.seq_relationship_logits
    if name == "BertForQuestionAnswering":
        return out.start_logits, out.end_logits
    return (out.logits,)


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("direction", ["transformers->minibert", "minibert->transformers"])
def test_head_matches_transformers(name, config_name, direction):
    config = CONFIGS[config_name]
    gen = torch.Generator().manual_seed(hash((name, config_name)) % 1000)
    ours, theirs = _build(name, config, MODELS[name])
    if direction == "transformers->minibert":
        _scramble(theirs, gen)
        report = load_state_dict_into(ours, theirs.state_dict(), strict=True)
        assert not report["new_heads"] and not report["missing"] and not report["unused"], report
    else:
        _scramble(ours, gen)
        missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
        assert not unexpected
        assert set(missing) <= {"cls.predictions.decoder.bias"}, missing  # tied to cls.predictions.bias
        if missing:
            theirs.cls.predictions.decoder.bias = theirs.cls.predictions.bias
    ids, types, mask = _inputs(name, config, gen)
    with torch.no_grad():
        got = _as_tuple(ours(ids, types, mask))
        expected = _hf_logits(name, theirs(input_ids=ids, token_type_ids=types, attention_mask=mask))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            if name == "BertForTokenClassification":
                g, e = g[mask.bool()], e[mask.bool()]
            torch.testing.assert_close(g, e, atol=1e-5, rtol=0)
        ours_labels, hf_labels = _labels(name, config, gen)
        loss = ours(ids, types, mask, **ours_labels)
        hf_loss = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask, **hf_labels).loss
    assert loss.dim() == 0
    torch.testing.assert_close(loss, hf_loss, atol=1e-5, rtol=0)


def test_minus_one_and_minus_100_are_both_ignored():
    torch.manual_seed(0)
    model = heads.BertForPreTraining(CHINESE_SMALL).eval()
    ids = torch.randint(1, 1000, (2, 9))
    labels = torch.randint(0, 1000, (2, 9))
    old, new = labels.clone(), labels.clone()
    old[:, :5], new[:, :5] = -1, -100
    nsp = torch.tensor([0, 1])
    with torch.no_grad():
        a = model(ids, masked_lm_labels=old, next_sentence_label=nsp)
        b = model(ids, masked_lm_labels=new, next_sentence_label=nsp)
        scores, nsp_scores = model(ids)
    expected = torch.nn.functional.cross_entropy(scores[:, 5:].reshape(-1, 21128), labels[:, 5:].reshape(-1)) + \
        torch.nn.functional.cross_entropy(nsp_scores, nsp)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, expected, atol=1e-6, rtol=0)
    tagger = heads.BertForTokenClassification(CHINESE_SMALL, num_labels=4).eval()
    tags = torch.randint(0, 4, (2, 9))
    tags_old, tags_new = tags.clone(), tags.clone()
    tags_old[0, 2], tags_new[0, 2] = -1, -100
    with torch.no_grad():
        assert torch.equal(tagger(ids, labels=tags_old), tagger(ids, labels=tags_new))


def test_decoder_is_tied_to_word_embeddings():
    model = heads.BertForMaskedLM(CHINESE_SMALL)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.bias.shape == (21128,) and not model.cls.predictions.bias.any()
    names = {n for n, _ in model.named_parameters()}
    assert "cls.predictions.decoder.weight" not in names  # one matrix, counted once


@pytest.mark.parametrize("make, call, match", [
    (lambda c: heads.BertForMaskedLM(c), lambda m, ids: m(ids, masked_lm_labels=torch.zeros(2, 8, dtype=torch.long)),
     r"masked_lm_labels has shape \(2, 8\), expected \(2, 9\)"),
    (lambda c: heads.BertForMaskedLM(c), lambda m, ids: m(ids, masked_lm_labels=torch.full((2, 9), 21128)),
     r"masked_lm_labels contain 21128 at row 0, position 0; expected class ids in \[0, 21128\)"),
    (lambda c: heads.BertForMaskedLM(c), lambda m, ids: m(ids, masked_lm_labels=torch.full((2, 9), -5)),
     r"contain -5 at row 0, position 0; expected class ids in \[0, 21128\) \(-100 or -1 where no prediction is made\)"),
    (lambda c: heads.BertForNextSentencePrediction(c), lambda m, ids: m(ids, next_sentence_label=torch.tensor([0, 2])),
     r"next_sentence_label contain 2 at row 1; expected class ids in \[0, 2\)"),
    (lambda c: heads.BertForSequenceClassification(c, num_labels=3),
     lambda m, ids: m(ids, labels=torch.tensor([0, 1, 2])), r"labels has shape \(3,\), expected \(2,\)"),
    (lambda c: heads.BertForSequenceClassification(c, num_labels=3),
     lambda m, ids: m(ids, labels=torch.tensor([0.0, 1.0])), r"integer class ids"),
    (lambda c: heads.BertForTokenClassification(c, num_labels=3),
     lambda m, ids: m(ids, labels=torch.full((2, 9), 3)),
     r"labels contain 3 at row 0, position 0; expected class ids in \[0, 3\).*build the model with num_labels=4"),
    (lambda c: heads.BertForSequenceClassification(c, num_labels=1),
     lambda m, ids: m(ids, labels=torch.tensor([0.5, float("nan")])),
     r"labels contain NaN at row 1; expected finite regression targets"),
    (lambda c: heads.BertForQuestionAnswering(c),
     lambda m, ids: m(ids, start_positions=torch.tensor([1, -2]), end_positions=torch.tensor([1, 2])),
     r"start_positions contain -2 at row 1; expected token positions >= 0"),
    (lambda c: heads.BertForQuestionAnswering(c),
     lambda m, ids: m(ids, start_positions=torch.tensor([1.0, 2.0]), end_positions=torch.tensor([1, 2])),
     r"start_positions must hold integer token positions, got dtype torch.float32"),
    (lambda c: heads.BertForMultipleChoice(c, num_choices=2), lambda m, ids: m(ids),
     r"input_ids must be \(batch, num_choices, seq\)"),
    (lambda c: heads.BertForQuestionAnswering(c), lambda m, ids: m(ids, start_positions=torch.tensor([1, 2])),
     r"give both start_positions and end_positions"),
])
def test_bad_labels_raise_clear_errors(make, call, match):
    ids = torch.randint(1, 1000, (2, 9))
    with pytest.raises(ValueError, match=match):
        call(make(CHINESE_SMALL), ids)


@pytest.mark.parametrize("name", ["BertForMaskedLM", "BertForPreTraining"])
def test_masked_lm_loss_is_computed_at_the_masked_positions_only(name):
    torch.manual_seed(0)
    model = getattr(heads, name)(CHINESE_SMALL).eval()
    ids = torch.randint(1, 1000, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[2, 7:] = 0
    labels = torch.full((3, 10), -100)
    labels[0, [1, 4]], labels[1, 8], labels[2, 2] = torch.tensor([5, 6]), 7, 8
    labels[1, 3] = -1  # the 2019 marker is ignored too
    nsp = {"next_sentence_label": torch.tensor([0, 1, 0])} if name == "BertForPreTraining" else {}
    rows = []
    hook = model.cls.predictions.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[:-1].numel()))
    with torch.no_grad():
        loss = model(ids, attention_mask=mask, masked_lm_labels=labels, **nsp)
        scores = model(ids, attention_mask=mask)
    hook.remove()
    assert rows == [4, 3 * 10]  # the vocabulary projection ran on the 4 labelled positions, then on all 30
    full_scores, nsp_scores = scores if name == "BertForPreTraining" else (scores, None)
    expected = heads.masked_lm_loss(full_scores, labels)
    if nsp:
        expected = expected + torch.nn.functional.cross_entropy(nsp_scores, nsp["next_sentence_label"])
    # the same per-position scores, from a matmul over 4 rows instead of 30: 1e-6 covers fp32 blocking
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)


def test_label_checks_follow_the_models_check_inputs_switch(monkeypatch):
    syncs = []
    for method in ("item", "tolist"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda t, _o=original, _n=method: syncs.append(_n) or _o(t))
    model = heads.BertForSequenceClassification(CHINESE_SMALL, num_labels=3).eval()
    ids, labels = torch.randint(1, 1000, (2, 9)), torch.tensor([0, 2])
    with torch.no_grad():
        checked = model(ids, labels=labels)
        assert len(syncs) == 2  # inputs, then labels
        model.check_inputs = False  # what a training loop does after its first, checked batch
        assert model.bert.check_inputs is False
        unchecked = model(ids, labels=labels)
    assert len(syncs) == 2 and torch.equal(checked, unchecked)
    model.check_inputs = True
    with pytest.raises(ValueError, match=r"labels contain 3 at row 1; expected class ids in \[0, 3\)"):
        model(ids, labels=torch.tensor([0, 3]))
