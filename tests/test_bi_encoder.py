"""The bi-encoder for multiple choice: before training it is the checkpoint's sentence-vector cosine (computed
here independently with minibert.features), it finds real paraphrases among other sentences, and its loss and
input errors are the usual ones."""
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minibert import features
from minibert.bi_encoder import BiEncoderForMultipleChoice
from minibert.data import collate
from minibert.datasets import SwagExample, encode_sentence_choices, read_mrpc


@pytest.fixture(scope="module")
def bi_encoder():
    return BiEncoderForMultipleChoice.from_pretrained(None).eval()


@pytest.fixture(scope="module")
def paraphrase_questions():
    """MRPC dev: each paraphrase's first sentence, its second sentence among three non-paraphrase sentences,
    the true one at every position in turn."""
    dev = read_mrpc("dev")
    pairs = [e for e in dev if e.label == 1][:24]
    others = [e.text_b for e in dev if e.label == 0]
    questions = []
    for i, e in enumerate(pairs):
        endings = others[3 * i:3 * i + 3]
        endings.insert(i % 4, e.text_b)
        questions.append(SwagExample(f"mrpc-{i}", e.text_a, "", tuple(endings), i % 4))
    return questions


def test_before_training_it_is_the_checkpoints_sentence_vector_cosine(bi_encoder, tokenizer, paraphrase_questions,
                                                                        caplog):
    with caplog.at_level(logging.WARNING, logger="minibert.checkpoints"):
        BiEncoderForMultipleChoice.from_pretrained(None)
    assert "not initialized" not in caplog.text  # no new weights: nothing starts random
    feats = encode_sentence_choices(paraphrase_questions, tokenizer, 128)
    batch = collate(feats, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[:2] == (24, 5)
    with torch.no_grad():
        logits = bi_encoder(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert logits.shape == (24, 4)
    labels = [q.label for q in paraphrase_questions]
    assert np.mean(logits.argmax(1).numpy() == labels) >= 0.9  # a sentence encoder finds the paraphrase
    vec = lambda ts: features.sentence_vectors(bi_encoder.bert, tokenizer, ts).mean[-1]  # noqa: E731
    for q, row in zip(paraphrase_questions[:6], logits[:6]):  # each text alone, through features' own pooling
        cosines = features.cosine_similarity(vec([q.context_sentence]), vec(list(q.endings)))
        np.testing.assert_allclose(row.numpy(), 20.0 * cosines, atol=2e-4)  # padded batch vs alone: fp32 noise
    assert np.isnan(features.sentence_vectors(bi_encoder.bert, tokenizer, ["no pooler"]).pooled).all()
    loss = bi_encoder(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], torch.tensor(labels))
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.tensor(labels)), atol=1e-5, rtol=0)


def test_training_moves_the_encoder_and_bad_inputs_are_named(tokenizer, paraphrase_questions):
    torch.manual_seed(0)
    model = BiEncoderForMultipleChoice.from_pretrained(None, scale=10.0)
    batch = collate(encode_sentence_choices(paraphrase_questions[:4], tokenizer, 32), tokenizer.pad_token_id)
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    model(*inputs, torch.tensor([q.label for q in paraphrase_questions[:4]])).backward()
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"labels contain 4 at row 3; expected class ids in \[0, 4\)"):
        model(*inputs, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="must be \\(batch, 1 \\+ num_choices, seq\\) with the context first"):
        model(batch["input_ids"][:, 0])
    with pytest.raises(ValueError, match="like input_ids"):
        model(batch["input_ids"], attention_mask=batch["attention_mask"][:, :3])
    with pytest.raises(ValueError, match="scale must be > 0"):
        BiEncoderForMultipleChoice(model.config, scale=0)
    with pytest.raises(ValueError, match="has no choices"):
        encode_sentence_choices([SwagExample("q", "a context", "", (), None)], tokenizer)
