"""Every inference loop runs the model in eval mode and gives its train/eval mode back, even when a batch fails
halfway; in a dry run (MINIBERT_DRY_RUN=1) each goes through its first batches only (issues 23 and 24)."""
from __future__ import annotations

import pytest
import torch

from minibert import features, pretraining, runtime, squad, training, viz
from minibert.config import BertConfig
from minibert.heads import BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification
from minibert.tokenization import BertTokenizer

TEXTS = [f"sentence number {i} of the test." for i in range(9)]


@pytest.fixture(scope="module")
def tok() -> BertTokenizer:
    return BertTokenizer.from_pretrained(None)  # the packaged uncased vocab


def tiny(cls, tok: BertTokenizer, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    return cls(cfg, **kw)


def qa_features(tok: BertTokenizer, n: int) -> list[dict]:
    return [tok.encode(f"question {i}?", f"the answer is {i}.") for i in range(n)]


def loops(tok: BertTokenizer):
    """(name, model, call): each call runs one inference loop over 9 inputs in batches of 2 (5 batches)."""
    classifier = tiny(BertForSequenceClassification, tok, num_labels=2)
    feats = [dict(tok.encode(t), label=i % 2) for i, t in enumerate(TEXTS)]
    qa = tiny(BertForQuestionAnswering, tok)
    encoder = tiny(BertForSequenceClassification, tok, num_labels=2)
    pre = tiny(BertForPreTraining, tok)
    items = [{"input_ids": torch.tensor(f["input_ids"]), "token_type_ids": torch.tensor(f["token_type_ids"]),
              "word_start": torch.ones(len(f["input_ids"]), dtype=torch.bool), "next_sentence_label": i % 2}
             for i, f in enumerate(qa_features(tok, 9))]
    col = pretraining.PretrainingCollator(tok, seed=0)
    held_out = [col(items[i:i + 2]) for i in range(0, 9, 2)]
    return [
        ("evaluate", classifier, lambda: training.evaluate(classifier, feats, batch_size=2).logits),
        ("predict_logits", qa, lambda: squad.predict_logits(qa, qa_features(tok, 9), batch_size=2)),
        ("sentence_vectors", encoder,
         lambda: features.sentence_vectors(encoder, tok, TEXTS, batch_size=2).pooled),
        ("attention", encoder, lambda: viz.batch_attention(encoder, tok, TEXTS, batch_size=2)),
        ("evaluate_pretraining", pre, lambda: pretraining.evaluate_pretraining(pre, held_out)),
        ("mlm_accuracy_by_input", pre, lambda: pretraining.mlm_accuracy_by_input(pre, held_out, tok.mask_token_id)),
    ]


def forward_calls(model: torch.nn.Module) -> list[int]:
    """Counts the forward passes of the encoder inside ``model`` (one per batch in every loop)."""
    calls = []
    features.unwrap_bert(model).register_forward_pre_hook(lambda m, a: calls.append(1))
    return calls


def test_every_inference_loop_gives_the_train_mode_back_after_an_error(tok):
    for name, model, call in loops(tok):
        model.train()
        list(model.children())[-1].eval()  # the head left in eval mode on purpose: it must stay so
        modes = {n: m.training for n, m in model.named_modules()}
        seen = []

        def fail_on_the_second_batch(module, args):
            seen.append(module.training)
            if len(seen) == 2:
                raise RuntimeError("out of memory, say")

        handle = features.unwrap_bert(model).register_forward_pre_hook(fail_on_the_second_batch)
        with pytest.raises(RuntimeError, match="out of memory"):
            call()
        handle.remove()
        assert seen == [False, False], name  # in eval mode while it ran
        assert {n: m.training for n, m in model.named_modules()} == modes, name  # each module as it was


def test_a_dry_run_stops_every_inference_loop_after_two_batches(tok, monkeypatch):
    full = {}
    for name, model, call in loops(tok):
        calls = forward_calls(model)
        full[name] = call()
        assert len(calls) == 5, name  # 9 inputs, batches of 2
    monkeypatch.setenv(runtime.DRY_RUN_ENV, "1")
    for name, model, call in loops(tok):
        calls = forward_calls(model)
        out = call()
        assert len(calls) == runtime.DRY_RUN_EVAL_BATCHES, name
        if name in ("evaluate", "predict_logits", "sentence_vectors"):  # the first 4 inputs' results, as in full
            assert len(out) == 4, name
            for got, want in zip(out, full[name][:4]):
                got, want = (got.start_logits, want.start_logits) if name == "predict_logits" else (got, want)
                assert torch.allclose(torch.as_tensor(got), torch.as_tensor(want), atol=1e-5), name
