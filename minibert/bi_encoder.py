"""Multiple choice by sentence-vector cosine, fine-tuned: a bi-encoder (Sentence-BERT, Reimers & Gurevych 2019).

``BertForMultipleChoice`` (the BERT paper, 4.4) reads each (context, ending) pair as one sequence and scores
its pooled ``[CLS]`` state with a new linear unit. A sentence encoder such as all-MiniLM-L6-v2 was fine-tuned
the other way: each sentence encoded alone, its last layer's token vectors averaged (padding excluded), related
sentences near each other by cosine. This model keeps that layout: a choice's score is ``scale`` times the
cosine between the context's vector and the ending's, and the loss is the cross-entropy over the choices. It
adds no weights, so before any update it chooses by the checkpoint's own sentence vectors
(:func:`minibert.features.sentence_vectors`, last layer, ``mean``) and their cosine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from minibert.config import BertConfig
from minibert.inputs import IGNORE_INDEX, check_class_labels
from minibert.modeling import BertModel, BertPreTrainedModel


class BiEncoderForMultipleChoice(BertPreTrainedModel):
    """Inputs (batch, 1 + num_choices, seq): the context first, then each ending, every one a sequence of its
    own (:func:`minibert.datasets.encode_sentence_choices`). ``labels`` (batch,) in [0, num_choices). Returns the
    loss, or the logits (batch, num_choices) = ``scale`` x cosine.

    ``scale`` sharpens the softmax over cosines, which lie in [-1, 1]: 20 is sentence-transformers' default for
    its ranking loss (a temperature of 0.05)."""

    def __init__(self, config: BertConfig, scale: float = 20.0) -> None:
        super().__init__(config)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        self.bert = BertModel(config, add_pooling_layer=False)  # no [CLS] pooler: every weight gets a gradient
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        if input_ids.dim() != 3 or input_ids.size(1) < 2:
            raise ValueError(f"input_ids must be (batch, 1 + num_choices, seq) with the context first, got "
                             f"{tuple(input_ids.shape)}")
        batch, texts, seq = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape or (token_type_ids is not None
                                                       and token_type_ids.shape != input_ids.shape):
            raise ValueError(f"token_type_ids and attention_mask must be {tuple(input_ids.shape)} like input_ids")
        flat = lambda t: None if t is None else t.reshape(-1, seq)  # noqa: E731
        encoded, _ = self.bert(flat(input_ids), flat(token_type_ids), flat(attention_mask),
                               output_all_encoded_layers=False)
        mask = flat(attention_mask).unsqueeze(-1).to(encoded.dtype)
        vectors = ((encoded * mask).sum(1) / mask.sum(1).clamp(min=1)).view(batch, texts, -1)
        logits = self.scale * F.cosine_similarity(vectors[:, :1], vectors[:, 1:], dim=-1)
        if labels is None:
            return logits
        labels = check_class_labels(labels, "labels", (batch,), texts - 1, self._check_inputs)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
