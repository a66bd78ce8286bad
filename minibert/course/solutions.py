"""Worked solutions of the notebooks' "write it yourself" exercises, kept out of the notebooks.

Each exercise cell in a notebook starts empty (it raises NotImplementedError) and its checker in
``minibert.course.checks`` names the first wrong value. When you are stuck, read the function of the same
name here; ``tests/test_exercises.py`` runs every checker on these solutions (they must pass) and on the empty
stubs (they must fail with a clear message).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # labels the losses skip (PyTorch's cross_entropy default)


# 01 · greedy longest-match-first WordPiece
def wordpiece(word: str, vocab: dict[str, int], unk: str = "[UNK]", max_chars: int = 100) -> list[str]:
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):  # the longest candidate first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk]  # nothing fits at `start`: the whole word is unknown
        pieces.append(piece)
        start = end
    return pieces


# 02 · scaled dot-product attention with a padding mask
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (batch, heads, seq, seq)
    if mask is not None:  # (batch, seq) of 1/0: padding keys get -10000 before the softmax, as BERT does
        scores = scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * -10000.0
    probs = scores.softmax(-1)
    return probs @ v, probs


# 05 · masking: 15% targets among non-special tokens, 80% [MASK] / 10% random / 10% unchanged
def mask_tokens(input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, vocab_size: int, mask_token_id: int,
                generator: torch.Generator, masked_lm_prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.full(input_ids.shape, masked_lm_prob).masked_fill(special_tokens_mask, 0.0)
    selected = torch.bernoulli(p, generator=generator).bool()
    u = torch.rand(input_ids.shape, generator=generator)
    inputs = torch.where(selected & (u < 0.8), mask_token_id, input_ids)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = torch.where(selected & (u >= 0.9), random_ids, inputs)
    return inputs, torch.where(selected, input_ids, IGNORE_INDEX)


# 06 · one BertAdam update of one tensor (no bias correction, decoupled weight decay, per-tensor clipping)
def bertadam_step(p, grad, m, v, lr_scheduled, b1, b2, e, weight_decay, max_grad_norm):
    if max_grad_norm > 0:
        grad = grad * min(1.0, max_grad_norm / (grad.norm().item() + 1e-6))
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    update = m / (v.sqrt() + e) + weight_decay * p
    return p - lr_scheduled * update, m, v


# 07 · the pre-training loss: masked-LM cross-entropy over the labelled positions + NSP cross-entropy
def pretraining_loss(prediction_scores: torch.Tensor, seq_relationship_score: torch.Tensor,
                     masked_lm_labels: torch.Tensor, next_sentence_label: torch.Tensor) -> torch.Tensor:
    vocab_size = prediction_scores.shape[-1]
    labels = masked_lm_labels.reshape(-1)
    labels = labels.masked_fill(labels == -1, IGNORE_INDEX)  # the 2019 library marked ignored positions with -1
    mlm = F.cross_entropy(prediction_scores.reshape(-1, vocab_size), labels, ignore_index=IGNORE_INDEX)
    nsp = F.cross_entropy(seq_relationship_score.reshape(-1, 2), next_sentence_label.reshape(-1))
    return mlm + nsp


# 07 · masked-LM accuracy over the predicted positions only
def mlm_accuracy(prediction_scores: torch.Tensor, masked_lm_labels: torch.Tensor) -> float:
    target = masked_lm_labels != IGNORE_INDEX
    return (prediction_scores.argmax(-1)[target] == masked_lm_labels[target]).float().mean().item()


# 08 · perplexity: exp of the mean cross-entropy over all predicted tokens
def perplexity(prediction_scores: torch.Tensor, masked_lm_labels: torch.Tensor) -> float:
    loss = F.cross_entropy(prediction_scores.reshape(-1, prediction_scores.shape[-1]), masked_lm_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)
    return math.exp(loss.item())


# 09 · the fine-tuning loop, bare: forward, loss, backward, step, zero_grad
def train_steps(model: torch.nn.Module, batches: Iterable[dict], optimizer: torch.optim.Optimizer) -> list[float]:
    """One optimizer step per batch; returns the loss of each step. BertAdam clips each gradient itself."""
    model.train()
    losses = []
    for batch in batches:
        loss = model(**batch)  # with labels, a minibert head returns its loss (the 2019 contract)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


# 10 · the number of optimizer updates of a run (BertAdam's t_total)
def num_update_steps(num_examples: int, batch_size: int, epochs: int) -> int:
    return math.ceil(num_examples / batch_size) * epochs


# 10 · dynamic padding: pad every sequence of a batch to the batch's longest, mask 0 on the padding
def pad_collate(features: list[dict], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    longest = max(len(f["input_ids"]) for f in features)

    def pad(seq: list[int], value: int) -> list[int]:
        return list(seq) + [value] * (longest - len(seq))

    return {"input_ids": torch.tensor([pad(f["input_ids"], pad_token_id) for f in features]),
            "token_type_ids": torch.tensor([pad(f["token_type_ids"], 0) for f in features]),
            "attention_mask": torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in features]),
            "labels": torch.tensor([f["label"] for f in features])}
