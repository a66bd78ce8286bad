"""Porting 2019 code: pytorch-pretrained-bert 0.6.2 scripts run with only their imports changed (issue 16).

The scripts below are the 0.6.2 README example and the shape of its ``run_classifier.py``, verbatim but for
the imports (``pytorch_pretrained_bert`` and each of its modules -> ``minibert``) and the model name, which is
the packaged checkpoint folder (tests never download). Every deliberate difference is in the README's section
"Porting from pytorch-pretrained-bert".
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import minibert
from minibert.assets import checkpoint_path
from minibert.checkpoints import read_state_dict

MODEL_DIR = str(checkpoint_path(None))


def port(source: str) -> str:
    """The only edit a user makes: ``pytorch_pretrained_bert`` and any ``pytorch_pretrained_bert.<module>``
    become ``minibert``."""
    return re.sub(r"pytorch_pretrained_bert(\.\w+)?", "minibert", textwrap.dedent(source))


README_EXAMPLE = '''
import torch
from pytorch_pretrained_bert import BertTokenizer, BertModel, BertForMaskedLM

tokenizer = BertTokenizer.from_pretrained(BERT_MODEL)
text = "[CLS] Who was Jim Henson ? [SEP] Jim Henson was a puppeteer [SEP]"
tokenized_text = tokenizer.tokenize(text)
masked_index = 8
tokenized_text[masked_index] = '[MASK]'
assert tokenized_text == ['[CLS]', 'who', 'was', 'jim', 'henson', '?', '[SEP]', 'jim', '[MASK]', 'was', 'a',
                          'puppet', '##eer', '[SEP]']
indexed_tokens = tokenizer.convert_tokens_to_ids(tokenized_text)
segments_ids = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
tokens_tensor = torch.tensor([indexed_tokens])
segments_tensors = torch.tensor([segments_ids])

model = BertModel.from_pretrained(BERT_MODEL)
model.eval()
with torch.no_grad():
    encoded_layers, _ = model(tokens_tensor, segments_tensors)
assert len(encoded_layers) == NUM_LAYERS

model = BertForMaskedLM.from_pretrained(BERT_MODEL)
model.eval()
with torch.no_grad():
    predictions = model(tokens_tensor, segments_tensors)
predicted_index = torch.argmax(predictions[0, masked_index]).item()
predicted_token = tokenizer.convert_ids_to_tokens([predicted_index])[0]
'''


def test_the_2019_readme_example_runs_with_only_the_import_changed():
    scope = {"BERT_MODEL": MODEL_DIR, "NUM_LAYERS": 6}
    exec(compile(port(README_EXAMPLE), "readme_example.py", "exec"), scope)
    assert scope["predictions"].shape == (1, 14, 30522)
    # the packaged MiniLM has no MLM head weights (a fresh head predicts noise), so only the type is checked;
    # tests/test_heads.py checks the MLM head against transformers on real weights
    assert isinstance(scope["predicted_token"], str)
    layers = scope["encoded_layers"]
    assert all(t.shape == (1, 14, 384) for t in layers) and torch.isfinite(layers[-1]).all()


RUN_CLASSIFIER = '''
import os
import torch
from torch.utils.data import DataLoader, TensorDataset
from pytorch_pretrained_bert.file_utils import PYTORCH_PRETRAINED_BERT_CACHE, WEIGHTS_NAME, CONFIG_NAME
from pytorch_pretrained_bert.modeling import BertForSequenceClassification, BertConfig
from pytorch_pretrained_bert.tokenization import BertTokenizer
from pytorch_pretrained_bert.optimization import BertAdam, WarmupLinearSchedule

class InputFeatures(object):
    def __init__(self, input_ids, input_mask, segment_ids, label_id):
        self.input_ids, self.input_mask, self.segment_ids, self.label_id = input_ids, input_mask, segment_ids, label_id

def convert_examples_to_features(examples, label_list, max_seq_length, tokenizer):
    label_map = {label: i for i, label in enumerate(label_list)}
    features = []
    for (text_a, text_b, label) in examples:
        tokens_a = tokenizer.tokenize(text_a)
        tokens_b = tokenizer.tokenize(text_b)
        while len(tokens_a) + len(tokens_b) > max_seq_length - 3:
            (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
        tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
        segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
        input_ids = tokenizer.convert_tokens_to_ids(tokens)
        input_mask = [1] * len(input_ids)
        padding = [0] * (max_seq_length - len(input_ids))
        input_ids += padding
        input_mask += padding
        segment_ids += padding
        features.append(InputFeatures(input_ids, input_mask, segment_ids, label_map[label]))
    return features

cache_dir = os.path.join(str(PYTORCH_PRETRAINED_BERT_CACHE), 'distributed_{}'.format(-1))
tokenizer = BertTokenizer.from_pretrained(args.bert_model, do_lower_case=args.do_lower_case)
num_train_optimization_steps = int(len(train_examples) / args.train_batch_size) * args.num_train_epochs
model = BertForSequenceClassification.from_pretrained(args.bert_model, cache_dir=cache_dir, num_labels=2)

param_optimizer = list(model.named_parameters())
no_decay = ['bias', 'LayerNorm.bias', 'LayerNorm.weight']
optimizer_grouped_parameters = [
    {'params': [p for n, p in param_optimizer if not any(nd in n for nd in no_decay)], 'weight_decay': 0.01},
    {'params': [p for n, p in param_optimizer if any(nd in n for nd in no_decay)], 'weight_decay': 0.0}]
optimizer = BertAdam(optimizer_grouped_parameters, lr=args.learning_rate, warmup=args.warmup_proportion,
                     t_total=num_train_optimization_steps)

train_features = convert_examples_to_features(train_examples, ["0", "1"], args.max_seq_length, tokenizer)
all_input_ids = torch.tensor([f.input_ids for f in train_features], dtype=torch.long)
all_input_mask = torch.tensor([f.input_mask for f in train_features], dtype=torch.long)
all_segment_ids = torch.tensor([f.segment_ids for f in train_features], dtype=torch.long)
all_label_ids = torch.tensor([f.label_id for f in train_features], dtype=torch.long)
train_data = TensorDataset(all_input_ids, all_input_mask, all_segment_ids, all_label_ids)
train_dataloader = DataLoader(train_data, batch_size=args.train_batch_size)

model.train()
losses = []
for _ in range(int(args.num_train_epochs)):
    for step, batch in enumerate(train_dataloader):
        input_ids, input_mask, segment_ids, label_ids = batch
        loss = model(input_ids, segment_ids, input_mask, label_ids)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()

model_to_save = model.module if hasattr(model, 'module') else model
output_model_file = os.path.join(args.output_dir, WEIGHTS_NAME)
output_config_file = os.path.join(args.output_dir, CONFIG_NAME)
torch.save(model_to_save.state_dict(), output_model_file)
model_to_save.config.to_json_file(output_config_file)
tokenizer.save_vocabulary(args.output_dir)

model = BertForSequenceClassification.from_pretrained(args.output_dir, num_labels=2)
tokenizer = BertTokenizer.from_pretrained(args.output_dir, do_lower_case=args.do_lower_case)
model.eval()
with torch.no_grad():
    logits = model(all_input_ids, all_segment_ids, all_input_mask, labels=None)
'''


def test_a_run_classifier_shaped_script_runs_with_only_the_import_changed(tmp_path):
    from types import SimpleNamespace

    examples = [("The cat sat on the mat.", "A cat was sitting on the mat.", "1"),
                ("Stocks fell sharply on Monday.", "The weather was sunny.", "0")] * 4
    args = SimpleNamespace(bert_model=MODEL_DIR, do_lower_case=True, train_batch_size=4, num_train_epochs=2,
                           learning_rate=5e-5, warmup_proportion=0.1, max_seq_length=24, output_dir=str(tmp_path))
    torch.manual_seed(0)
    scope = {"args": args, "train_examples": examples}
    exec(compile(port(RUN_CLASSIFIER), "run_classifier.py", "exec"), scope)
    assert len(scope["losses"]) == 4 and all(math.isfinite(x) for x in scope["losses"])
    assert (tmp_path / "pytorch_model.bin").is_file() and (tmp_path / "config.json").is_file()
    assert (tmp_path / "vocab.txt").is_file()
    # the reloaded model is the trained one, bit for bit
    saved = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert torch.equal(scope["model"].classifier.weight, saved["classifier.weight"])
    assert scope["logits"].shape == (8, 2)


# ----------------------------------------------------------------------------------------------------------
# from_pretrained's 2019 arguments


def test_from_pretrained_takes_the_2019_keywords_and_positional_inputs(tmp_path):
    cls = minibert.BertForSequenceClassification
    model = cls.from_pretrained(MODEL_DIR, cache_dir=str(tmp_path), num_labels=2, from_tf=False)
    assert model.num_labels == 2
    assert cls.from_pretrained(MODEL_DIR, 3).num_labels == 3  # extra positional inputs go to __init__, as in 0.6.2
    with pytest.raises(ValueError, match="from_tf=True.*TensorFlow"):
        cls.from_pretrained(MODEL_DIR, from_tf=True)


def test_from_pretrained_with_a_state_dict_uses_it_instead_of_the_file():
    state = read_state_dict(checkpoint_path(None) / "model.safetensors")
    state["encoder.layer.0.output.dense.bias"] = torch.full_like(state["encoder.layer.0.output.dense.bias"], 0.5)
    model = minibert.BertModel.from_pretrained(MODEL_DIR, state_dict=state)
    assert torch.all(model.encoder.layer[0].output.dense.bias == 0.5)


def test_cache_dir_is_where_a_hub_checkpoint_goes(tmp_path, monkeypatch):
    """A hub name is fetched through a file:// mirror of the packaged checkpoint: into cache_dir, not the cache."""
    mirror = tmp_path / "mirror"
    remote = mirror / "huggingface.co" / "someone" / "tiny-bert" / "resolve" / "main"
    remote.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        shutil.copy(checkpoint_path(None) / name, remote / name)
    monkeypatch.setenv("MINIBERT_MIRROR", mirror.as_uri())
    monkeypatch.setenv("MINIBERT_CACHE", str(tmp_path / "default-cache"))
    model = minibert.BertModel.from_pretrained("someone/tiny-bert", cache_dir=str(tmp_path / "mine"))
    tokenizer = minibert.BertTokenizer.from_pretrained("someone/tiny-bert", cache_dir=str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "someone--tiny-bert" / "model.safetensors").is_file()
    assert not (tmp_path / "default-cache").exists()
    assert model.config.hidden_size == 384 and tokenizer.tokenize("Jim Henson") == ["jim", "henson"]


def test_a_2019_tar_gz_archive_is_a_model_path(tmp_path):
    """The 2019 S3 links served bert_config.json + pytorch_model.bin in a .tar.gz."""
    staging = tmp_path / "staging"
    staging.mkdir()
    state = read_state_dict(checkpoint_path(None) / "model.safetensors")
    torch.save(state, staging / "pytorch_model.bin")
    shutil.copy(checkpoint_path(None) / "config.json", staging / "bert_config.json")
    archive = tmp_path / "bert-tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("bert_config.json", "pytorch_model.bin"):
            tar.add(staging / name, arcname=name)
    model = minibert.BertModel.from_pretrained(str(archive))
    assert torch.equal(model.embeddings.word_embeddings.weight, state["embeddings.word_embeddings.weight"])


def test_bertconfig_takes_vocab_size_or_config_json_file(tmp_path):
    from minibert.modeling import BertConfig

    assert BertConfig(vocab_size_or_config_json_file=32000).vocab_size == 32000
    assert BertConfig(32000, hidden_size=64, num_attention_heads=4).hidden_size == 64
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({"vocab_size": 1000, "hidden_size": 48, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "intermediate_size": 96}))
    for value in (str(path), path):
        config = BertConfig(vocab_size_or_config_json_file=value)
        assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (1000, 48, 2)
    assert BertConfig(str(path)) == config  # positional, as ppb's run_pretraining scripts wrote it


def test_custom_heads_initialize_with_model_apply_init_bert_weights():
    from minibert.modeling import BertConfig, BertModel, BertPreTrainedModel

    class MyHead(BertPreTrainedModel):  # a 2019 custom head, as the ppb README showed
        def __init__(self, config):
            super().__init__(config)
            self.bert = BertModel(config)
            self.out = nn.Linear(config.hidden_size, 3)
            self.apply(self.init_bert_weights)

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, initializer_range=0.5)
    head = MyHead(config)
    assert torch.all(head.out.bias == 0)
    # std 0.5 on 96 weights: the sample std is within 0.35..0.65 with overwhelming probability
    assert 0.35 < head.out.weight.std().item() < 0.65


# ----------------------------------------------------------------------------------------------------------
# Names the 2019 code imports, each in the module where pytorch-pretrained-bert had it


def test_the_2019_module_level_names_exist_and_behave():
    from minibert import assets, modeling, optimization, tokenization

    assert (modeling.WEIGHTS_NAME, modeling.CONFIG_NAME, modeling.BERT_CONFIG_NAME) == (
        "pytorch_model.bin", "config.json", "bert_config.json")
    assert (assets.WEIGHTS_NAME, assets.CONFIG_NAME) == ("pytorch_model.bin", "config.json")  # file_utils' copies
    for name in ("PYTORCH_PRETRAINED_BERT_CACHE", "cached_path", "WEIGHTS_NAME", "CONFIG_NAME"):
        assert getattr(minibert, name) is getattr(assets, name)  # 0.6.2 exported these from the package
    ppb_models = {"bert-base-uncased", "bert-large-uncased", "bert-base-cased", "bert-large-cased",
                  "bert-base-multilingual-uncased", "bert-base-multilingual-cased", "bert-base-chinese"}
    assert ppb_models <= set(modeling.PRETRAINED_MODEL_ARCHIVE_MAP)
    assert ppb_models <= set(tokenization.PRETRAINED_VOCAB_ARCHIVE_MAP)
    x = torch.linspace(-4, 4, 101)
    # exact erf GELU (0.6.2's gelu); 1e-6 covers float32 rounding of the two formulas
    torch.testing.assert_close(modeling.gelu(x), x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))),
                               rtol=1e-6, atol=1e-6)
    ln = modeling.BertLayerNorm(8, eps=1e-12)
    assert isinstance(ln, nn.LayerNorm) and ln.eps == 1e-12 and ln.normalized_shape == (8,)
    assert optimization._LRSchedule is optimization.LRSchedule


def test_cached_path_returns_a_local_file_and_downloads_a_url_once(tmp_path):
    from minibert.assets import PYTORCH_PRETRAINED_BERT_CACHE, cached_path

    source = tmp_path / "remote" / "vocab.txt"
    source.parent.mkdir()
    source.write_text("[PAD]\n[UNK]\n")
    assert cached_path(str(source)) == str(source)  # a local file as is
    first = cached_path(source.as_uri(), cache_dir=tmp_path / "cache")
    assert first.startswith(str(tmp_path / "cache")) and Path(first).read_text() == "[PAD]\n[UNK]\n"
    source.write_text("changed")
    assert cached_path(source.as_uri(), cache_dir=tmp_path / "cache") == first  # cached: not fetched again
    assert Path(first).read_text() == "[PAD]\n[UNK]\n"
    with pytest.raises(EnvironmentError, match="not found"):  # what 2019 code catches
        cached_path(str(tmp_path / "missing.txt"))
    assert isinstance(PYTORCH_PRETRAINED_BERT_CACHE, os.PathLike)


def test_warmup_cosine_with_warmup_restarts_matches_the_2019_formula():
    from minibert.optimization import SCHEDULES, WarmupCosineWithWarmupRestartsSchedule

    sched = WarmupCosineWithWarmupRestartsSchedule(warmup=0.05, t_total=100, cycles=3)
    assert SCHEDULES["warmup_cosine_warmup_restarts"] is WarmupCosineWithWarmupRestartsSchedule

    def ppb(progress: float, warmup: float = 0.05 * 3, cycles: float = 3.0) -> float:  # 0.6.2's get_lr_
        progress = progress * cycles % 1.0
        if progress < warmup:
            return progress / warmup
        progress = (progress - warmup) / (1 - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    got = [sched.get_lr(step) for step in range(100)]
    assert got == pytest.approx([ppb(step / 100) for step in range(100)], abs=1e-12)  # same float ops
    restarts = [step for step in range(1, 99) if got[step - 1] > got[step] < got[step + 1]]
    assert got[0] == 0.0 and max(got) == 1.0 and len(restarts) == 2  # three warmups: at 0, ~33, ~67


def test_google_fulltokenizer_and_module_level_conversions():
    from minibert.tokenization import FullTokenizer, convert_ids_to_tokens, convert_tokens_to_ids

    vocab_file = checkpoint_path(None) / "vocab.txt"
    full = FullTokenizer(vocab_file=str(vocab_file), do_lower_case=True)
    tokens = full.tokenize("Who was Jim Henson? Jim Henson was a puppeteer")
    assert tokens == minibert.BertTokenizer(vocab_file).tokenize("Who was Jim Henson? Jim Henson was a puppeteer")
    ids = convert_tokens_to_ids(full.vocab, tokens)
    assert ids == full.convert_tokens_to_ids(tokens) and convert_ids_to_tokens(full.inv_vocab, ids) == tokens
    assert full.convert_ids_to_tokens(ids) == tokens


# ----------------------------------------------------------------------------------------------------------
# Behaviour the 2019 library had


def test_uncased_name_with_do_lower_case_false_is_corrected_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="minibert.tokenization"):
        tok = minibert.BertTokenizer.from_pretrained("bert-base-uncased", do_lower_case=False)
    assert tok.tokenize("Jim Henson") == ["jim", "henson"]  # not [UNK] [UNK]
    assert "uncased model" in caplog.text and "do_lower_case=True" in caplog.text


def test_bertforpretraining_with_only_masked_lm_labels_returns_the_scores():
    from minibert.modeling import BertConfig

    torch.manual_seed(0)
    model = minibert.BertForPreTraining(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=32)).eval()
    ids = torch.tensor([[1, 5, 6, 2]])
    out = model(ids, masked_lm_labels=torch.tensor([[-1, 5, -1, -1]]))
    assert isinstance(out, tuple) and out[0].shape == (1, 4, 50) and out[1].shape == (1, 2)
    ref = model(ids)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
