"""Worked solutions of the notebooks' "write it yourself" exercises, kept out of the notebooks.

Each exercise cell in a notebook starts empty and ``course.exercise(name, my_function)`` runs its checker
(``minibert.course.checks``), which names the first wrong value. When you are stuck, ``course.solution(name)``
prints the function here; ``tests/test_exercises.py`` runs every checker on these solutions (they must pass),
on the empty stubs and on typical wrong answers (they must fail with a clear message).
"""
from __future__ import annotations

import math
import unicodedata
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from minibert import memory
from minibert.data import collate
from minibert.inputs import IGNORE_INDEX  # labels the losses skip (PyTorch's cross_entropy default)


# 00 · BERT's size from its config
def parameter_count(config) -> int:
    """The weights of BertModel (pooler included) from a BertConfig: every matrix and every bias."""
    H, FF, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * H
    embeddings += 2 * H  # the embeddings' LayerNorm: a weight and a bias per dimension
    attention = 4 * (H * H + H) + 2 * H  # query, key, value and output projections, then a LayerNorm
    feed_forward = (H * FF + FF) + (FF * H + H) + 2 * H  # H -> FF, FF -> H, then a LayerNorm
    pooler = H * H + H  # the dense layer on [CLS] that BertModel returns as its pooled output
    return embeddings + L * (attention + feed_forward) + pooler


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


# 01 · basic tokenization: clean, space out CJK, NFC, lower-case and strip accents, split off punctuation
def basic_tokenize(text: str, lower: bool = True) -> list[str]:
    special = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"}

    def is_whitespace(ch: str) -> bool:
        return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"

    def is_dropped(ch: str) -> bool:  # NUL, U+FFFD and every control/format/unassigned character
        return ord(ch) in (0, 0xFFFD) or (ch not in "\t\n\r" and unicodedata.category(ch).startswith("C"))

    def is_cjk(ch: str) -> bool:
        ranges = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                  (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
        return any(lo <= ord(ch) <= hi for lo, hi in ranges)

    def is_punct(ch: str) -> bool:
        cp = ord(ch)
        return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 \
            or unicodedata.category(ch).startswith("P")

    def split_punct(word: str) -> list[str]:
        out, new_word = [], True
        for ch in word:
            if is_punct(ch):
                out.append(ch)
                new_word = True
            else:
                if new_word:
                    out.append("")
                out[-1] += ch
                new_word = False
        return out

    text = "".join(" " if is_whitespace(ch) else f" {ch} " if is_cjk(ch) else ch for ch in text if not is_dropped(ch))
    words = []
    for word in unicodedata.normalize("NFC", text).split():
        if word in special:
            words.append(word)
            continue
        if lower:
            word = "".join(ch for ch in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(ch) != "Mn")
        words += [w for piece in split_punct(word) for w in piece.split()]
    return words


# 02 · scaled dot-product attention with a padding mask
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (batch, heads, seq, seq)
    if mask is not None:  # (batch, seq) of 1/0: padding keys get -10000 before the softmax, as BERT does
        scores = scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * -10000.0
    probs = scores.softmax(-1)
    return probs @ v, probs


# 03 · one BertLayer from its submodules (post-LN: residual, then LayerNorm, after each sublayer)
def bert_layer(layer: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    sa = layer.attention.self
    B, S, H = x.shape
    A = sa.num_attention_heads
    d = H // A

    def split(t: torch.Tensor) -> torch.Tensor:  # (batch, seq, hidden) -> (batch, heads, seq, head_dim)
        return t.view(B, S, A, d).transpose(1, 2)

    q, k, v = split(sa.query(x)), split(sa.key(x)), split(sa.value(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    scores = scores + (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0  # hide padding keys
    context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, H)
    h = layer.attention.output.LayerNorm(layer.attention.output.dense(context) + x)
    ffn = layer.output.dense(F.gelu(layer.intermediate.dense(h)))  # the exact (erf) GELU
    return layer.output.LayerNorm(ffn + h)


# 04 · the masked-LM loss: mean cross-entropy over the labelled positions (-1 or -100 elsewhere)
def mlm_loss(prediction_scores: torch.Tensor, masked_lm_labels: torch.Tensor) -> torch.Tensor:
    labels = masked_lm_labels.masked_fill(masked_lm_labels == -1, IGNORE_INDEX)  # the 2019 convention too
    return F.cross_entropy(prediction_scores.reshape(-1, prediction_scores.shape[-1]), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


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


# 11 · mean attention entropy per head over the real query tokens (0 log 0 = 0)
def attention_entropy(attn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    p = attn.double()                                          # (layers, batch, heads, seq, seq)
    per_query = -(p * p.clamp_min(1e-30).log()).sum(-1)        # (layers, batch, heads, seq)
    real = mask.double()[None, :, None, :]                     # padding queries weigh 0
    return (per_query * real).sum((1, 3)) / mask.sum()         # (layers, heads)


# 12 · ROC AUC from the ranks (Mann-Whitney U), tied scores sharing the mean of their ranks
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # ties: every tied score gets the mean of the ranks they span
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# 13 · the best answer span of one window, as run_squad's post-processing picks it
def best_span(start_logits: np.ndarray, end_logits: np.ndarray, window, n_best_size: int = 20,
              max_answer_length: int = 30) -> tuple[int, int] | None:
    spans, is_max = window.token_spans, window.token_is_max_context  # span None: [CLS], question, [SEP]
    n = len(spans)
    best, best_score = None, -math.inf
    for s in np.argsort(-start_logits[:n])[:n_best_size]:
        for e in np.argsort(-end_logits[:n])[:n_best_size]:
            if spans[s] is None or spans[e] is None or e < s or e - s + 1 > max_answer_length or not is_max[s]:
                continue
            score = start_logits[s] + end_logits[e]
            if score > best_score:
                best, best_score = (int(s), int(e)), score
    return best


# 14 · multiple choice: fold the choices into the batch, score each [CLS], unfold, softmax over the choices
def choice_probs(model: torch.nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> torch.Tensor:
    batch, choices, seq = input_ids.shape
    flat = [t.reshape(batch * choices, seq) for t in (input_ids, token_type_ids, attention_mask)]
    _, pooled = model.bert(*flat, output_all_encoded_layers=False)    # (batch * choices, hidden)
    scores = model.classifier(pooled).view(batch, choices)             # the order reshape flattened in
    return scores.softmax(-1)


# 15 · CoNLL-2003's IOB1 to IOB2: an I-X that does not continue an X starts one, so it becomes B-X
def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    out = []
    for tag in tags:
        prev = out[-1] if out else "O"
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


# 16 · the bytes that do not depend on the batch: fp32 weights, fp32 gradients, the optimizer's moments
def static_bytes(num_parameters: int, optimizer: str = "bertadam") -> dict[str, int]:
    moments = {"bertadam": 2, "adamw": 2, "sgd": 0}[optimizer]  # Adam keeps m and v; plain SGD nothing
    return {"parameters": 4 * num_parameters, "gradients": 4 * num_parameters,
            "optimizer_state": 4 * moments * num_parameters}


# 16 · what one layer's feed-forward network saves for backward, fp32: dense(H -> I), GELU, dense(I -> H)
def ffn_activation_bytes(batch_size: int, seq_len: int, hidden_size: int, intermediate_size: int) -> int:
    tokens = batch_size * seq_len
    first_linear_input = tokens * hidden_size
    gelu_input = tokens * intermediate_size
    second_linear_input = tokens * intermediate_size  # the GELU's output
    return 4 * (first_linear_input + gelu_input + second_linear_input)


# 16 · the largest batch whose predicted peak fits the card (fp32, BertAdam)
def max_batch_size(config, seq_len: int, memory_bytes: float) -> int:
    batch = 0
    while memory.estimate(config, batch + 1, seq_len).peak <= memory_bytes:
        batch += 1
    return batch


# 17 · predict in length-sorted batches (little padding), then put every row back where its feature was
@torch.no_grad()
def bucketed_predict(model: torch.nn.Module, features: Sequence[dict], batch_size: int,
                     pad_token_id: int = 0) -> torch.Tensor:
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    out = [None] * len(features)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        logits = model(**collate([features[i] for i in idx], pad_token_id))
        for row, i in enumerate(idx):
            out[i] = logits[row]  # row k of the sorted batch belongs to features[order[k]]
    return torch.stack(out)
