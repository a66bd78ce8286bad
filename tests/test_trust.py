"""Trust: no code runs from a checkpoint, no silent NaN, every bad file named with what to do (issue 16).

Each test feeds one bad input a careful user meets (a crafted or corrupt file, a NaN, a wrong encoding, a
nonsense argument) and checks that minibert refuses it, or survives it, with a message that names the source.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minibert import BertAdam, BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel
from minibert.assets import checkpoint_path
from minibert.checkpoints import read_state_dict
from minibert.datasets import read_chnsenticorp, read_mrpc
from minibert.tokenization import BertTokenizer, load_vocab
from minibert.training import TrainingArguments, load_checkpoint, train

TINY = BertConfig(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=48, max_position_embeddings=32)


# ----------------------------------------------------------------------------------------------------------
# A tiny classifier and data for the training loop (the loop only needs model(**batch) -> loss)


class TinyClassifier(nn.Module):
    """Embeddings, masked mean, linear head. Token 13 in a sequence poisons it: the loss becomes NaN
    (``poison="loss"``) or, with a finite loss, one gradient element of the classifier becomes NaN
    (``poison="grad"``), as one bad batch does to a real model."""

    POISON = 13

    def __init__(self, poison: str = "loss") -> None:
        super().__init__()
        self.num_labels = 2
        self.word = nn.Embedding(40, 8)
        self.classifier = nn.Linear(8, 2)
        self.poison, self._poisoned = poison, False
        self.classifier.weight.register_hook(self._poison_grad)

    def _poison_grad(self, grad: torch.Tensor) -> torch.Tensor:
        if self.poison == "grad" and self._poisoned:
            grad = grad.clone()
            grad[0, 0] = float("nan")
        return grad

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None):
        m = attention_mask.unsqueeze(-1).float()
        logits = self.classifier((self.word(input_ids) * m).sum(1) / m.sum(1))
        if labels is None:
            return logits
        self._poisoned = bool((input_ids == self.POISON).any())
        loss = F.cross_entropy(logits, labels)
        return loss * float("nan") if self.poison == "loss" and self._poisoned else loss


def features(n: int, poisoned: set[int] = frozenset()) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        ids = rng.integers(14, 40, size=int(rng.integers(3, 9))).tolist()  # never 13 unless poisoned
        if i in poisoned:
            ids[1] = TinyClassifier.POISON
        out.append({"input_ids": ids, "token_type_ids": [0] * len(ids), "label": int(ids[0] % 2)})
    return out


def quick_args(**kw) -> TrainingArguments:
    base = dict(learning_rate=1e-2, num_train_epochs=1, train_batch_size=1, warmup_proportion=0.0,
                progress=False, device="cpu", precision="fp32", bucket_batches=0)
    return TrainingArguments(**{**base, **kw})


# ----------------------------------------------------------------------------------------------------------
# 1. Resuming never runs code from the checkpoint file


class WritesAMarker:
    """A pickle payload that, when unpickled, creates a file: proof that loading ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "minibert-train-1", "state": {"t_total": 4}, "rng": WritesAMarker(str(marker))}, path)
    with pytest.raises(ValueError, match=r"checkpoint\.pt.*(code|tensors)") as err:
        load_checkpoint(path)
    assert not marker.exists(), "loading the checkpoint ran the payload"
    assert "weights_only=False" not in str(err.value)  # never point at the unsafe path
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"checkpoint\.pt"):
        train(TinyClassifier(), features(4), quick_args(), resume_from=tmp_path)
    assert not marker.exists()


def test_a_training_checkpoint_is_plain_tensors_and_lists_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    train(TinyClassifier(), features(6), quick_args(num_train_epochs=2, output_dir=str(tmp_path), save_steps=2))
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # the safe loader reads all of it
    assert payload["format"].startswith("minibert-train")
    # the same run, resumed from the saved end of epoch 2, has nothing left to do and keeps the state
    torch.manual_seed(0)
    res = train(TinyClassifier(), features(6), quick_args(num_train_epochs=2), resume_from=tmp_path)
    assert res.state.global_step == 12 == payload["state"]["global_step"]


# ----------------------------------------------------------------------------------------------------------
# 3. Every file that fails to load is named, with what was expected and what to do


def _checkpoint_folder(tmp_path, weights_name: str, data: bytes | None = None):
    """The packaged config, and a weights file holding ``data`` (or the real weights)."""
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    shutil.copy(checkpoint_path(None) / "config.json", folder / "config.json")
    if data is not None:
        (folder / weights_name).write_bytes(data)
    return folder


def _real_bin_bytes(tmp_path) -> bytes:
    path = tmp_path / "real.bin"
    torch.save(read_state_dict(checkpoint_path(None) / "model.safetensors"), path)
    return path.read_bytes()


@pytest.mark.parametrize("case", ["truncated", "random", "empty"])
def test_a_corrupt_model_safetensors_is_named_with_what_to_do(tmp_path, case):
    real = (checkpoint_path(None) / "model.safetensors").read_bytes()
    data = {"truncated": real[: len(real) // 2], "random": os.urandom(4096), "empty": b""}[case]
    folder = _checkpoint_folder(tmp_path, "model.safetensors", data)
    with pytest.raises(ValueError, match=r"model\.safetensors") as err:
        BertModel.from_pretrained(folder)
    message = str(err.value)
    assert str(folder / "model.safetensors") in message
    assert "safetensors" in message and "again" in message  # what was expected, and what to do
    assert "weights_only=False" not in message


@pytest.mark.parametrize("case", ["truncated", "random", "empty"])
def test_a_corrupt_pytorch_model_bin_is_named_and_not_sent_to_the_unsafe_loader(tmp_path, case):
    real = _real_bin_bytes(tmp_path)
    data = {"truncated": real[: len(real) // 3], "random": os.urandom(4096), "empty": b""}[case]
    folder = _checkpoint_folder(tmp_path, "pytorch_model.bin", data)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin") as err:
        BertModel.from_pretrained(folder)
    message = str(err.value)
    assert str(folder / "pytorch_model.bin") in message and "again" in message
    assert "weights_only=False" not in message  # a corrupt file is not an unsafe one


def test_a_bin_that_runs_code_is_still_refused_as_unsafe(tmp_path):
    marker = tmp_path / "pwned"
    folder = _checkpoint_folder(tmp_path, "pytorch_model.bin")
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2), "x": WritesAMarker(str(marker))},
               folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"refusing to load .*pytorch_model\.bin.*arbitrary code"):
        BertModel.from_pretrained(folder)
    assert not marker.exists()


@pytest.mark.parametrize("writer, value, named", [
    ("pickle.dump", np.zeros((2, 2)), "numpy"), ("torch.save", np.zeros((2, 2)), "numpy"),
    ("pickle.dump", torch.zeros(2, 2), "torch.storage._load_from_bytes"),  # pickle's tensors call torch.load
])
def test_a_bin_of_pickled_objects_is_named_as_such_with_how_to_convert_a_trusted_file(tmp_path, writer, value, named):
    folder = _checkpoint_folder(tmp_path, "pytorch_model.bin")
    state = {"embeddings.word_embeddings.weight": value}
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump(state, f) if writer == "pickle.dump" else torch.save(state, f)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: it holds objects other than tensors") as err:
        BertModel.from_pretrained(folder)
    message = str(err.value)
    assert f"({named}" in message and "truncated" not in message and "corrupt" not in message
    assert "Only if you trust the file's source, convert it once" in message and "save_file(" in message


def test_a_checkpoint_pt_cut_short_is_named(tmp_path):
    torch.manual_seed(0)
    train(TinyClassifier(), features(4), quick_args(output_dir=str(tmp_path)))
    path = tmp_path / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"checkpoint\.pt.*(truncated|corrupt)") as err:
        load_checkpoint(tmp_path)
    assert "weights_only=False" not in str(err.value)


def test_a_flipped_bit_in_a_training_checkpoint_is_detected_by_its_checksum(tmp_path):
    torch.manual_seed(0)
    train(TinyClassifier(), features(4), quick_args(output_dir=str(tmp_path)))
    path = tmp_path / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    weight = payload["model"]["classifier.weight"]
    bits = weight.view(torch.int32)
    bits[0, 0] ^= 1 << 3  # one bit of one float: a value that still looks plausible
    torch.save(payload, path)  # a well-formed file whose recorded checksum no longer matches
    with pytest.raises(ValueError, match=r"checkpoint\.pt.*checksum"):
        load_checkpoint(path)


def test_nan_inside_a_weight_file_names_the_file_and_the_tensor(tmp_path):
    state = read_state_dict(checkpoint_path(None) / "model.safetensors")
    state["encoder.layer.3.attention.self.key.weight"][5, 7] = float("nan")
    from safetensors.torch import save_file
    folder = _checkpoint_folder(tmp_path, "model.safetensors")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.safetensors.*encoder\.layer\.3\.attention\.self\.key\.weight"):
        BertModel.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------------------
# 4. A config.json that is not a config is named


CONFIG_CASES = {
    "invalid JSON": "{\"hidden_size\": 384,",
    "a list": "[1, 2, 3]",
    "null": "null",
    "hidden_act as a list": {"hidden_act": ["gelu"]},
    "layer_norm_eps NaN": "NaN",  # json.loads accepts the bare NaN that json.dumps writes
    "vocab_size as a string": {"vocab_size": "30522"},
}


def _write_config(folder, case) -> None:
    raw = json.loads((checkpoint_path(None) / "config.json").read_text())
    value = CONFIG_CASES[case]
    if case == "layer_norm_eps NaN":
        text = json.dumps({**raw, "layer_norm_eps": float("nan")})
    elif isinstance(value, dict):
        text = json.dumps({**raw, **value})
    else:
        text = value
    (folder / "config.json").write_text(text)


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_config_json_that_is_not_a_config_is_named(tmp_path, case):
    folder = _checkpoint_folder(tmp_path, "model.safetensors")
    os.symlink(checkpoint_path(None) / "model.safetensors", folder / "model.safetensors")
    _write_config(folder, case)
    with pytest.raises(ValueError, match=r"config\.json") as via_file:
        BertConfig.from_json_file(folder / "config.json")
    with pytest.raises(ValueError, match=r"config\.json") as via_model:
        BertModel.from_pretrained(folder)
    assert str(folder / "config.json") in str(via_file.value) and str(folder / "config.json") in str(via_model.value)


def test_id2label_that_is_not_a_mapping_is_named(tmp_path):
    folder = _checkpoint_folder(tmp_path, "model.safetensors")
    os.symlink(checkpoint_path(None) / "model.safetensors", folder / "model.safetensors")
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "id2label": 3}))
    with pytest.raises(ValueError, match=r"config\.json.*id2label"):
        BertForSequenceClassification.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------------------
# 2. Non-finite values: refused where they enter, skipped (and counted) where they arise in training


@pytest.mark.parametrize("field", ["layer_norm_eps", "initializer_range", "hidden_dropout_prob"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_config_fields_must_be_finite(field, value):
    with pytest.raises(ValueError, match=field):
        BertConfig(**{field: value})


@pytest.mark.parametrize("lr", [float("nan"), float("inf")])
def test_a_non_finite_learning_rate_is_refused(lr):
    with pytest.raises(ValueError, match=r"lr.*finite"):
        BertAdam([nn.Parameter(torch.zeros(2))], lr=lr)
    with pytest.raises(ValueError, match="learning_rate"):
        train(TinyClassifier(), features(2), quick_args(learning_rate=lr))


def test_a_nan_in_a_float_attention_mask_is_refused():
    torch.manual_seed(0)
    model = BertModel(TINY).eval()
    ids = torch.tensor([[1, 5, 6, 2]])
    mask = torch.tensor([[1.0, 1.0, float("nan"), 1.0]])
    with pytest.raises(ValueError, match=r"attention_mask.*(NaN|finite)"):
        model(ids, attention_mask=mask)


@pytest.mark.parametrize("poison", ["loss", "grad"])
def test_a_non_finite_step_is_skipped_counted_and_logged(poison, caplog):
    torch.manual_seed(0)
    model = TinyClassifier(poison)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="minibert.training"):
        res = train(model, features(12, poisoned={3, 8}), quick_args())
    assert all(torch.isfinite(p).all() for p in model.parameters()), "one bad batch made the weights NaN"
    assert not torch.equal(model.classifier.weight, before["classifier.weight"])  # the other steps trained
    assert res.state.global_step == 12 and res.state.nonfinite_steps == 2
    assert caplog.text.count("not finite") == 2


def test_non_finite_steps_in_a_row_stop_the_run_with_a_clear_error():
    torch.manual_seed(0)
    model = TinyClassifier("loss")
    with pytest.raises(FloatingPointError, match=r"3 updates in a row.*not finite.*learning_rate"):
        train(model, features(10, poisoned=set(range(10))), quick_args(max_nonfinite_steps=3))
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------
# 5. Text files: BOM stripped, wrong encoding named with file and line, missing header detected


def test_a_vocab_with_a_utf8_bom_keeps_pad_at_id_0(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("\ufeff[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n".encode("utf-8"))
    vocab = load_vocab(path)
    assert vocab["[PAD]"] == 0 and "\ufeff[PAD]" not in vocab
    assert BertTokenizer(path).pad_token_id == 0


def test_a_vocab_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("[PAD]\n[UNK]\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"vocab\.txt, line 3.*UTF-8"):
        load_vocab(path)


MRPC_HEAD = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def test_a_data_file_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes((MRPC_HEAD.lstrip("\ufeff") + "1\t1\t2\ta\tb\n0\t3\t4\tcaf\u00e9\td\n").encode("latin-1"))
    with pytest.raises(ValueError, match=r"train\.tsv, line 3: byte b'\\xe9'.*not UTF-8.*iconv"):
        read_mrpc("train", path=path)
    chn = tmp_path / "dev.tsv"
    chn.write_bytes("label\ttext_a\n1\t好\n".encode("gbk"))
    with pytest.raises(ValueError, match=r"dev\.tsv, line 2.*not UTF-8"):
        read_chnsenticorp("dev", path=chn)


def test_an_mrpc_file_without_its_header_is_detected(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("1\t702876\t702977\tAmrozi accused his brother.\tReferring to him.\n0\t1\t2\ta\tb\n")
    with pytest.raises(ValueError, match=r"train\.tsv, line 1: expected the header.*'Quality'.*header is missing"):
        read_mrpc("train", path=path)
    with_header = tmp_path / "dev.tsv"
    with_header.write_text(MRPC_HEAD + path.read_text())
    assert [e.label for e in read_mrpc("dev", path=with_header)] == [1, 0]  # both examples, BOM or not
    chn = tmp_path / "chn.tsv"
    chn.write_text("1\t好\n0\t坏\n")
    with pytest.raises(ValueError, match=r"chn\.tsv, line 1: expected the header.*'label'"):
        read_chnsenticorp("dev", path=chn)


# ----------------------------------------------------------------------------------------------------------
# 6. BertAdam arguments are validated where they are given, with the fix


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lr=1e-3, warmup=0.1, t_total=0), ValueError, r"t_total=0.*-1"),
    (dict(lr=1e-3, weight_decay=-0.01), ValueError, r"weight_decay=-0\.01.*>= 0"),
    (dict(lr="1e-3"), TypeError, r"lr.*'1e-3'.*float"),
    (dict(lr=1e-3, max_grad_norm=float("nan")), ValueError, "max_grad_norm"),
])
def test_bertadam_refuses_bad_arguments_in_init(kwargs, error, message):
    with pytest.raises(error, match=message):
        BertAdam([nn.Parameter(torch.zeros(2))], **kwargs)


def test_bertadam_load_state_dict_with_an_unknown_schedule_says_which_exist():
    p = nn.Parameter(torch.zeros(2))
    opt = BertAdam([p], lr=1e-3, warmup=0.1, t_total=10)
    state = opt.state_dict()
    state["param_groups"][0]["schedule"]["name"] = "warmup_polynomial"
    with pytest.raises(ValueError, match=r"'warmup_polynomial'.*warmup_linear"):
        BertAdam([p], lr=1e-3, warmup=0.1, t_total=10).load_state_dict(state)


# ----------------------------------------------------------------------------------------------------------
# 7. Question answering: an ignored position (-100, or the 2019 -1) is ignored, not trained toward [CLS]


@pytest.mark.parametrize("ignore", [-100, -1])
def test_qa_ignored_positions_do_not_train_toward_cls(ignore):
    torch.manual_seed(0)
    model = BertForQuestionAnswering(TINY).eval()
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 10, 11, 12, 2]])
    start, end = torch.tensor([2, ignore]), torch.tensor([3, ignore])
    loss = model(ids, start_positions=start, end_positions=end)
    first_row_only = model(ids[:1], start_positions=start[:1], end_positions=end[:1])
    start_logits, _ = model(ids)
    toward_cls = F.cross_entropy(start_logits[1:], torch.tensor([0]))
    # exact in exact arithmetic; 1e-6 covers float32 summation order across batch sizes
    torch.testing.assert_close(loss, first_row_only, rtol=1e-6, atol=1e-6)
    assert toward_cls.item() > 0.1  # so training toward [CLS] would have changed the loss
    # positions past the window (an answer cut off) are still ignored, as in the original
    past = model(ids, start_positions=torch.tensor([2, 50]), end_positions=torch.tensor([3, 50]))
    torch.testing.assert_close(past, first_row_only, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# 8. Empty inputs are rejected clearly


@pytest.mark.parametrize("shape, message", [((0, 5), "empty batch"), ((2, 0), "empty sequence")])
def test_empty_batches_and_sequences_are_refused(shape, message):
    model = BertModel(TINY).eval()
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape, dtype=torch.long))


def test_an_empty_batch_from_the_tokenizer_or_the_collate_is_refused():
    from minibert.data import collate

    tokenizer = BertTokenizer.from_pretrained(None)
    with pytest.raises(ValueError, match="empty batch"):
        BertModel(TINY).eval()(**tokenizer.batch_encode([]))
    with pytest.raises(ValueError, match="empty batch"):
        collate([], pad_token_id=0)
    with pytest.raises(ValueError, match="empty"):
        collate([{"input_ids": []}], pad_token_id=0)
