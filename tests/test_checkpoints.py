"""from_pretrained / save_pretrained: real checkpoint, name variants, round trips, and refusals."""
import dataclasses
import json
import logging
import os

import pytest
import torch

from minibert import heads
from minibert.assets import checkpoint_path
from minibert.checkpoints import load_state_dict_into, read_state_dict
from minibert.modeling import BertConfig, BertModel, known_checkpoint_heads

TINY = BertConfig(vocab_size=120, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=48, max_position_embeddings=32)
IDS = torch.tensor([[101, 7, 8, 9, 102, 0], [101, 11, 12, 102, 13, 102]]) % 120
MASK = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])


def _copy_checkpoint(tmp_path, config_edit=None):
    """A folder with the packaged weights (linked) and a possibly edited config.json."""
    src = checkpoint_path()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    os.symlink(src / "model.safetensors", folder / "model.safetensors")
    raw = json.loads((src / "config.json").read_text())
    if config_edit:
        raw.update(config_edit)
    (folder / "config.json").write_text(json.dumps(raw))
    return folder


@pytest.mark.parametrize("name", list(heads.MODEL_CLASSES))
def test_packaged_checkpoint_loads_into_every_model(name, caplog):
    cls = heads.MODEL_CLASSES[name]
    kwargs = {"num_labels": 3} if name in ("BertForSequenceClassification", "BertForTokenClassification") else {}
    with caplog.at_level(logging.INFO, logger="minibert.checkpoints"):
        model = cls.from_pretrained(None, **kwargs)
    assert not model.training
    base = model if name == "BertModel" else model.bert
    raw = read_state_dict(checkpoint_path() / "model.safetensors")
    assert torch.equal(base.encoder.layer[5].output.LayerNorm.bias, raw["encoder.layer.5.output.LayerNorm.bias"])
    assert torch.equal(base.embeddings.word_embeddings.weight, raw["embeddings.word_embeddings.weight"])
    if name != "BertModel":  # the checkpoint has no heads: listed in a log line, initialized fresh
        assert "not initialized from the" in caplog.text
    if name in ("BertForMaskedLM", "BertForPreTraining"):
        assert model.cls.predictions.decoder.weight is base.embeddings.word_embeddings.weight
        assert "cls.predictions.transform.dense.weight" in caplog.text
    if name in ("BertForMaskedLM", "BertForTokenClassification", "BertForQuestionAnswering"):
        assert "pooler.dense.weight" in caplog.text and "not used in" in caplog.text  # no pooler in these


@pytest.mark.parametrize("name", ["BertForPreTraining", "BertForSequenceClassification", "BertModel",
                                  "BertForQuestionAnswering"])
def test_save_pretrained_round_trips_bit_identically_and_loads_in_transformers(name, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cls = heads.MODEL_CLASSES[name]
    kwargs = {"num_labels": 3} if name == "BertForSequenceClassification" else {}
    model = cls(TINY, **kwargs).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the fresh init: a weight left behind would show
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    again = cls.from_pretrained(tmp_path)  # num_labels comes back from config.json
    assert again.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    theirs = getattr(transformers, name).from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        ours = model(IDS, attention_mask=MASK)
        ref = theirs(input_ids=IDS, attention_mask=MASK)
    if name == "BertModel":
        pairs = [(ours[0][-1][MASK.bool()], ref.last_hidden_state[MASK.bool()]), (ours[1], ref.pooler_output)]
    elif name == "BertForPreTraining":
        pairs = [(ours[0], ref.prediction_logits), (ours[1], ref.seq_relationship_logits)]
    elif name == "BertForQuestionAnswering":
        pairs = [(ours[0], ref.start_logits), (ours[1], ref.end_logits)]
    else:
        pairs = [(ours, ref.logits)]
    for got, expected in pairs:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_google_names_prefix_and_bin_file(tmp_path):
    """bert_config.json + pytorch_model.bin with `bert.` keys and LayerNorm.gamma/beta, as 2018 files had."""
    torch.manual_seed(1)
    source = heads.BertForPreTraining(TINY).eval()
    state = {}
    for key, value in source.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[key] = value.clone()
    state["bert.embeddings.position_ids"] = torch.arange(32)[None]
    torch.save(state, tmp_path / "pytorch_model.bin")
    TINY.to_json_file(tmp_path / "bert_config.json")
    bare = BertModel.from_pretrained(tmp_path)
    full = heads.BertForPreTraining.from_pretrained(tmp_path)
    with torch.no_grad():
        expected = source(IDS, attention_mask=MASK)
        got = full(IDS, attention_mask=MASK)
        assert torch.equal(bare(IDS, attention_mask=MASK)[1], source.bert(IDS, attention_mask=MASK)[1])
    for g, e in zip(got, expected):
        assert torch.equal(g, e)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    TINY.to_json_file(tmp_path / "config.json")
    torch.save({"embeddings.word_embeddings.weight": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"refusing to load .*pytorch_model.bin: it holds objects other than "
                                         r"tensors \((posix|nt)\.system\)"):
        BertModel.from_pretrained(tmp_path)
    assert not marker.exists()


def test_shape_mismatch_names_key_and_both_shapes(tmp_path, caplog):
    folder = _copy_checkpoint(tmp_path, {"intermediate_size": 1000})
    with pytest.raises(ValueError, match=r"shape mismatch: encoder.layer.0.intermediate.dense.bias: \(1536,\) in "
                                         r"the file, \(1000,\) in the model; "
                                         r"encoder.layer.0.intermediate.dense.weight: \(1536, 384\) in the file, "
                                         r"\(1000, 384\) in the model.*and 12 more"):
        BertModel.from_pretrained(folder)
    with caplog.at_level(logging.WARNING, logger="minibert.checkpoints"):
        model = BertModel.from_pretrained(folder, strict=False)
    assert "shape mismatch" in caplog.text
    raw = read_state_dict(checkpoint_path() / "model.safetensors")
    assert torch.equal(model.encoder.layer[0].attention.self.query.weight,
                       raw["encoder.layer.0.attention.self.query.weight"])


def test_missing_and_unexpected_keys_raise(tmp_path, caplog):
    torch.manual_seed(2)
    model = BertModel(TINY)
    state = model.state_dict()
    del state["encoder.layer.1.output.dense.bias"]
    state["encoder.layer.1.output.dense.scale"] = torch.ones(3)
    TINY.to_json_file(tmp_path / "config.json")
    from safetensors.torch import save_file
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors into BertModel: missing from the file: "
                                         r"encoder.layer.1.output.dense.bias: \(24,\)"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"unexpected in the file \(no such weight in BertModel\): "
                                         r"encoder.layer.1.output.dense.scale: \(3,\)"):
        BertModel.from_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="minibert.checkpoints"):
        loose = BertModel.from_pretrained(tmp_path, strict=False)  # loads what fits, says what did not
    assert "missing from the file: encoder.layer.1.output.dense.bias" in caplog.text
    assert "encoder.layer.1.output.dense.scale" in caplog.text
    for key, value in loose.state_dict().items():
        if key != "encoder.layer.1.output.dense.bias":
            assert torch.equal(value, state[key]), key
    assert not loose.encoder.layer[1].output.dense.bias.any()  # kept its fresh initialization (zeros)


def test_num_labels_mismatch_is_explained(tmp_path):
    heads.BertForSequenceClassification(TINY, num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"classifier.weight: \(3, 24\) in the file, \(2, 24\) in the "
                                         r"model.*num_labels"):
        heads.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has no config \(looked for config.json, bert_config.json\)"):
        BertModel.from_pretrained(tmp_path)
    TINY.to_json_file(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match=r"has no weights file \(looked for model.safetensors, "
                                                r"pytorch_model.bin\)"):
        BertModel.from_pretrained(tmp_path)


def test_mlm_checkpoint_without_pooler_feeds_a_classifier(tmp_path, caplog):
    """Pre-train with BertForMaskedLM (no pooler), then fine-tune: the pooler starts fresh, as a head does."""
    torch.manual_seed(3)
    mlm = heads.BertForMaskedLM(TINY)
    mlm.save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="minibert.checkpoints"):
        clf = heads.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert "bert.pooler.dense.weight" in caplog.text and "classifier.weight" in caplog.text
    assert torch.equal(clf.bert.encoder.layer[1].output.dense.weight, mlm.bert.encoder.layer[1].output.dense.weight)


def test_attention_path_can_be_chosen_at_load_time():
    model = heads.BertForSequenceClassification.from_pretrained(None, num_labels=2, attn_implementation="explicit")
    assert {m.attn_implementation for m in model.modules() if hasattr(m, "attn_implementation")} == {"explicit"}
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        BertModel.from_pretrained(None, attn_implementation="flash")


@pytest.mark.parametrize("name, heads_named", [
    ("BertForMaskedLM", ["masked-LM head (cls.predictions.*)"]),
    ("BertForPreTraining", ["masked-LM head (cls.predictions.*)", "next-sentence head (cls.seq_relationship.*)"]),
    ("BertForSequenceClassification", ["classifier (classifier.*)"]),
    ("BertForQuestionAnswering", ["span head (start/end scores) (qa_outputs.*)"]),
    ("BertModel", []),
])
def test_missing_head_weights_are_a_warning_that_names_the_head(name, heads_named, caplog):
    """The packaged MiniLM has no MLM or NSP weights: a model with those heads predicts noise until trained."""
    with caplog.at_level(logging.WARNING, logger="minibert.checkpoints"):
        heads.MODEL_CLASSES[name].from_pretrained(None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if not heads_named:
        assert warnings == []
        return
    assert len(warnings) == 1, warnings
    assert f"Weights of {name} not initialized from the" in warnings[0]
    assert "from random values and must be trained" in warnings[0]
    for head in heads_named:
        assert head in warnings[0]


def test_a_new_head_is_one_class(tmp_path, caplog):
    """A task model declares its head's prefix; a base checkpoint loads into it, and its own checkpoint loads
    back into it and into BertModel (which skips the head)."""

    class BertForRegression(heads.BertPreTrainedModel):
        checkpoint_heads = {"regressor.": "regressor"}

        def __init__(self, config):
            super().__init__(config)
            self.bert = BertModel(config)
            self.regressor = torch.nn.Linear(config.hidden_size, 1)
            self.init_weights()

    with caplog.at_level(logging.WARNING, logger="minibert.checkpoints"):
        model = BertForRegression.from_pretrained(None)
    assert "regressor (regressor.*)" in caplog.text and "random values" in caplog.text
    model.save_pretrained(tmp_path)
    again = BertForRegression.from_pretrained(tmp_path)
    assert torch.equal(again.regressor.weight, model.regressor.weight)
    bare = BertModel.from_pretrained(tmp_path)  # "regressor.*" is a known head: skipped, not an error
    assert torch.equal(bare.pooler.dense.weight, model.bert.pooler.dense.weight)


def test_known_heads_are_read_from_the_model_classes_and_passed_explicitly(tmp_path):
    declared = {prefix for cls in heads.MODEL_CLASSES.values() for prefix in cls.checkpoint_heads}
    assert declared == {"cls.predictions.", "cls.seq_relationship.", "classifier.", "qa_outputs."}
    assert declared <= known_checkpoint_heads()
    assert not hasattr(heads.BertPreTrainedModel, "known_checkpoint_heads")  # no registry filled as a side effect
    torch.manual_seed(0)
    heads.BertForPreTraining(TINY).save_pretrained(tmp_path)
    state = read_state_dict(tmp_path / "model.safetensors")
    alone = load_state_dict_into(BertModel(TINY), dict(state), strict=False)  # told of no other model's heads
    assert sorted({k.split(".")[1] for k in alone["unexpected"]}) == ["predictions", "seq_relationship"]
    told = load_state_dict_into(BertModel(TINY), dict(state), known_heads=known_checkpoint_heads())
    assert told["unexpected"] == [] and {k.split(".")[1] for k in told["unused"]} == {"predictions",
                                                                                         "seq_relationship"}


def test_pad_token_id_comes_from_the_config_and_is_saved(tmp_path):
    assert BertModel(TINY).embeddings.word_embeddings.padding_idx == 0  # Google's bert_config.json has none: 0
    torch.manual_seed(0)
    model = BertModel(dataclasses.replace(TINY, pad_token_id=5))
    assert model.embeddings.word_embeddings.padding_idx == 5
    model(torch.tensor([[1, 5, 5, 2]]))[1].sum().backward()
    grad = model.embeddings.word_embeddings.weight.grad
    assert not grad[5].any() and grad[1].any()  # [PAD]'s row is not trained
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["pad_token_id"] == 5
    assert BertModel.from_pretrained(tmp_path).embeddings.word_embeddings.padding_idx == 5
    raw = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "pad_token_id": None}))  # some hub files say null
    assert BertModel.from_pretrained(tmp_path, strict=False).config.pad_token_id == 0
    with pytest.raises(ValueError, match=r"pad_token_id must be the \[PAD\] token's id, an int in \[0, "
                                         r"vocab_size=120\), got 120"):
        dataclasses.replace(TINY, pad_token_id=120)
