"""Output heads on top of the encoder, and the eight BERT models with the 2019 signatures.

Pre-training heads (paper 3.1): the masked-LM head, whose output matrix is the word-embedding matrix itself
(tied, with its own bias), and the next-sentence head on the pooled [CLS] state. Fine-tuning heads (paper
4, figure 4): one linear layer on [CLS] (classification, multiple choice), on every token (tagging), or a
start/end pair on every token (SQuAD).

Every model returns the loss when labels are given and the logits otherwise. Label positions to ignore may
be marked -1 (the 2019 convention) or -100 (PyTorch's and today's transformers' convention): both are
ignored. With masked-LM labels, the vocabulary scores are computed only at the labelled positions (about 15%
of the tokens), which gives the same loss for a fraction of the work.

A new task model is one class here: a ``BertPreTrainedModel`` with the encoder at ``.bert``, its head under
the name its checkpoints use, that head declared in ``checkpoint_heads`` (prefix -> name, so that loading a
checkpoint without it warns and another model's checkpoint loads), and its loss; then export it from
``minibert/__init__.py``. ``MODEL_CLASSES`` lists the models by name.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from minibert.config import ACT2FN, BertConfig
from minibert.inputs import IGNORE_INDEX, check_class_labels, check_positions, check_regression_targets
from minibert.modeling import BertModel, BertPreTrainedModel

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------

class BertPredictionHeadTransform(nn.Module):
    """dense + GELU + LayerNorm applied to every token before the vocabulary projection."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Scores over the vocabulary. The decoder weight IS the word-embedding matrix (tied, Press & Wolf 2017),
    plus an output-only bias per token."""

    def __init__(self, config: BertConfig, bert_model_embedding_weights: nn.Parameter) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = bert_model_embedding_weights  # the same Parameter object: one matrix, two uses
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden_states), self.decoder.weight, self.bias)  # (..., vocab)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig, bert_model_embedding_weights: nn.Parameter) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config, bert_model_embedding_weights)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class BertOnlyNSPHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.seq_relationship(pooled_output)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig, bert_model_embedding_weights: nn.Parameter) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config, bert_model_embedding_weights)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


# ----------------------------------------------------------------------------------------------------------
# The models. Each holds the encoder at `.bert` (the checkpoint prefix) and its head under the original name.
# ----------------------------------------------------------------------------------------------------------

def masked_lm_loss(prediction_scores: torch.Tensor, masked_lm_labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions of (batch, seq, vocab) scores; -1 and -100 are ignored."""
    vocab_size = prediction_scores.size(-1)
    labels = check_class_labels(masked_lm_labels, "masked_lm_labels", tuple(prediction_scores.shape[:2]), vocab_size)
    return F.cross_entropy(prediction_scores.reshape(-1, vocab_size), labels.view(-1), ignore_index=IGNORE_INDEX)


def _mlm_loss_at_targets(predictions: BertLMPredictionHead, sequence_output: torch.Tensor,
                         masked_lm_labels: torch.Tensor, vocab_size: int, check_values: bool) -> torch.Tensor:
    """masked_lm_loss, with the head run only on the labelled positions: the same mean cross-entropy (each
    position's scores depend on that position alone), without the (batch, seq, vocab) scores of the others."""
    labels = check_class_labels(masked_lm_labels, "masked_lm_labels", tuple(sequence_output.shape[:2]), vocab_size,
                                check_values)
    target = labels != IGNORE_INDEX  # (batch, seq)
    scores = predictions(sequence_output[target])  # (targets, vocab)
    return F.cross_entropy(scores, labels[target])


def _nsp_loss(scores: torch.Tensor, labels: torch.Tensor, check_values: bool) -> torch.Tensor:
    labels = check_class_labels(labels, "next_sentence_label", (scores.size(0),), 2, check_values)
    return F.cross_entropy(scores, labels, ignore_index=IGNORE_INDEX)


class BertForPreTraining(BertPreTrainedModel):
    """BERT with both pre-training heads (paper 3.1): masked LM + next sentence prediction.

    ``masked_lm_labels`` (batch, seq): the original id at masked positions, -1 or -100 elsewhere.
    ``next_sentence_label`` (batch,): 0 = B follows A, 1 = B is random. With both: the summed loss (the
    vocabulary scores computed at the labelled positions only); otherwise, as in 2019:
    ``(prediction_scores (batch, seq, vocab), seq_relationship_score (batch, 2))``.
    """

    checkpoint_heads = {"cls.predictions.": "masked-LM head", "cls.seq_relationship.": "next-sentence head"}

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings.weight)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, masked_lm_labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None):
        sequence_output, pooled_output = self.bert(input_ids, token_type_ids, attention_mask,
                                                   output_all_encoded_layers=False)
        if masked_lm_labels is None or next_sentence_label is None:  # the 2019 contract: scores unless both
            if masked_lm_labels is not None or next_sentence_label is not None:
                logger.warning("BertForPreTraining computes a loss only with both masked_lm_labels and "
                               "next_sentence_label; returning the scores (BertForMaskedLM trains MLM alone)")
            return self.cls(sequence_output, pooled_output)
        return (_mlm_loss_at_targets(self.cls.predictions, sequence_output, masked_lm_labels,
                                     self.config.vocab_size, self._check_inputs)
                + _nsp_loss(self.cls.seq_relationship(pooled_output), next_sentence_label, self._check_inputs))


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-LM head. ``masked_lm_labels`` (batch, seq) as in BertForPreTraining.
    Returns the mean loss over labelled positions (scores computed there only), or scores (batch, seq, vocab)."""

    checkpoint_heads = {"cls.predictions.": "masked-LM head"}

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, masked_lm_labels: torch.Tensor | None = None):
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False)
        if masked_lm_labels is None:
            return self.cls(sequence_output)
        return _mlm_loss_at_targets(self.cls.predictions, sequence_output, masked_lm_labels, self.config.vocab_size,
                                    self._check_inputs)


class BertForNextSentencePrediction(BertPreTrainedModel):
    """BERT with the next-sentence head. ``next_sentence_label`` (batch,): 0 = IsNext, 1 = NotNext.
    Returns the loss, or logits (batch, 2)."""

    checkpoint_heads = {"cls.seq_relationship.": "next-sentence head"}

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertOnlyNSPHead(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, next_sentence_label: torch.Tensor | None = None):
        _, pooled_output = self.bert(input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False)
        seq_relationship_score = self.cls(pooled_output)
        if next_sentence_label is None:
            return seq_relationship_score
        return _nsp_loss(seq_relationship_score, next_sentence_label, self._check_inputs)


class BertForSequenceClassification(BertPreTrainedModel):
    """Sentence (pair) classification on the pooled [CLS] state (paper figure 4a/b, GLUE).

    ``labels`` (batch,) class ids in [0, num_labels); -1/-100 rows are ignored. With ``num_labels=1`` it is a
    regression (float labels, mean squared error; STS-B). Returns the loss, or logits (batch, num_labels).
    """

    checkpoint_heads = {"classifier.": "classifier"}

    def __init__(self, config: BertConfig, num_labels: int = 2) -> None:
        super().__init__(config)
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be an int >= 1 (1 = regression), got {num_labels!r}")
        self.num_labels = num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        _, pooled_output = self.bert(input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False)
        logits = self.classifier(self.dropout(pooled_output))
        if labels is None:
            return logits
        if self.num_labels == 1:
            targets = check_regression_targets(labels, "labels", logits.size(0), logits.dtype, self._check_inputs)
            return F.mse_loss(logits.view(-1), targets)
        labels = check_class_labels(labels, "labels", (logits.size(0),), self.num_labels, self._check_inputs)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


class BertForMultipleChoice(BertPreTrainedModel):
    """Multiple choice (SWAG, paper 4.4): each (context, choice) pair is scored by one linear unit on its
    [CLS] state; a softmax over the choices picks one. Inputs are (batch, num_choices, seq);
    ``labels`` (batch,) in [0, num_choices). Returns the loss, or logits (batch, num_choices)."""

    checkpoint_heads = {"classifier.": "multiple-choice classifier"}

    def __init__(self, config: BertConfig, num_choices: int = 2) -> None:
        super().__init__(config)
        if not isinstance(num_choices, int) or num_choices < 1:
            raise ValueError(f"num_choices must be an int >= 1, got {num_choices!r}")
        self.num_choices = num_choices
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        if input_ids.dim() != 3:
            raise ValueError(f"input_ids must be (batch, num_choices, seq), got {tuple(input_ids.shape)}")
        batch, choices, seq = input_ids.shape
        flat = [None if t is None else t.reshape(-1, t.size(-1)) if t.shape == input_ids.shape else t
                for t in (token_type_ids, attention_mask)]
        for name, t in zip(("token_type_ids", "attention_mask"), flat):
            if t is not None and t.dim() != 2:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(input_ids.shape)} "
                                 "like input_ids")
        _, pooled_output = self.bert(input_ids.reshape(-1, seq), flat[0], flat[1],
                                     output_all_encoded_layers=False)
        logits = self.classifier(self.dropout(pooled_output)).view(batch, choices)
        if labels is None:
            return logits
        labels = check_class_labels(labels, "labels", (batch,), choices, self._check_inputs)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


class BertForTokenClassification(BertPreTrainedModel):
    """Tagging (NER, paper 4.3): a linear layer on every token's final state.

    ``labels`` (batch, seq) in [0, num_labels); -1/-100 positions and, as in the 2019 code, padding
    positions (attention_mask == 0) are ignored. Returns the loss, or logits (batch, seq, num_labels).
    """

    checkpoint_heads = {"classifier.": "token classifier"}

    def __init__(self, config: BertConfig, num_labels: int = 2) -> None:
        super().__init__(config)
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be an int >= 1, got {num_labels!r}")
        self.num_labels = num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False)
        logits = self.classifier(self.dropout(sequence_output))
        if labels is None:
            return logits
        labels = check_class_labels(labels, "labels", tuple(logits.shape[:2]), self.num_labels, self._check_inputs)
        if attention_mask is not None:
            labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=IGNORE_INDEX)


class BertForQuestionAnswering(BertPreTrainedModel):
    """Span extraction (SQuAD, paper 4.2): a start and an end score for every token.

    ``start_positions``/``end_positions`` (batch,) token indices. A row marked -100 or -1 is ignored (not
    trained toward [CLS], as clamping it to 0 would), and so, as in the original, is a position past the
    sequence (an answer cut off by the window). Returns the mean of the start and end losses, or
    ``(start_logits, end_logits)``, each (batch, seq).
    """

    checkpoint_heads = {"qa_outputs.": "span head (start/end scores)"}

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None):
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False)
        start_logits, end_logits = self.qa_outputs(sequence_output).unbind(-1)
        if start_positions is None and end_positions is None:
            return start_logits, end_logits
        if start_positions is None or end_positions is None:
            raise ValueError("give both start_positions and end_positions for a loss, or neither for logits")
        batch, seq = start_logits.shape
        start = check_positions(start_positions, "start_positions", batch, seq, self._check_inputs)
        end = check_positions(end_positions, "end_positions", batch, seq, self._check_inputs)
        return (F.cross_entropy(start_logits, start, ignore_index=IGNORE_INDEX)
                + F.cross_entropy(end_logits, end, ignore_index=IGNORE_INDEX)) / 2


# Every model by name, BertModel first, then the task models in the order above.
MODEL_CLASSES: dict[str, type[BertPreTrainedModel]] = {
    cls.__name__: cls for cls in BertPreTrainedModel.__subclasses__() if cls.__module__ in (BertModel.__module__,
                                                                                              __name__)}
