"""Pre-training data and a small pre-training loop: NSP sentence pairs and dynamic masked-LM masking.

Follows Google's `create_pretraining_data.py` (Devlin et al. 2019, section 3.1 and appendix A.1) for the
pairs, and does the masking dynamically in a vectorized collate function (as RoBERTa, Liu et al. 2019), so
every epoch sees fresh masks. Label convention: positions that are not predicted get **-100** (the current
PyTorch/`transformers` ignore index; minibert's models ignore -1 too, the 2019 value). Next-sentence labels:
0 = IsNext (B follows A), 1 = NotNext (B is random), as in the original `BertForPreTraining`.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from minibert.assets import gutenberg_documents, strip_gutenberg_boilerplate
from minibert.data import IGNORE_INDEX, collate
from minibert.optimization import BertAdam
from minibert.runtime import dry_run_cut, eval_mode
from minibert.tokenization import SPECIAL_TOKENS, BertTokenizer
from minibert.training import Callback, StopTraining, TrainingArguments, train as train_loop

logger = logging.getLogger(__name__)

IS_NEXT, NOT_NEXT = 0, 1
INPUT_KINDS = ("[MASK]", "random token", "unchanged")  # what the model saw at a masked-LM target (section 3.1)


# ---------------------------------------------------------------------------------------------------------------
# Documents and NSP instances (Google's create_pretraining_data.py)
# ---------------------------------------------------------------------------------------------------------------
def read_documents(path: str | os.PathLike, max_documents: int | None = None) -> list[list[str]]:
    """Read text in BERT's pre-training format: one sentence a line, a blank line between documents."""
    docs: list[list[str]] = [[]]
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                if docs[-1]:
                    if max_documents is not None and len(docs) >= max_documents:
                        break
                    docs.append([])
                continue
            docs[-1].append(line)
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError(f"{path} holds no sentences; expected one sentence a line, blank lines between documents")
    return docs


def read_book_documents(path: str | os.PathLike, sentences_per_document: int = 30,
                        encoding: str = "utf-8") -> list[list[str]]:
    """A raw Gutenberg book (NLTK copy) as documents of sentences, for LM fine-tuning on a new corpus.

    Sentences come from :func:`minibert.assets.gutenberg_documents` (the splitter that built the pre-training
    corpus: licence header and footer dropped, chapter headings removed, not split after Mr., Mrs., ...), with
    the whole book read as one chapter so plays and poems without CHAPTER headings work too. Every
    `sentences_per_document` consecutive sentences form one document, so NSP's random B comes from elsewhere in
    the book. A `[Title by Author Year]` first line is dropped."""
    try:
        text = Path(path).read_text(encoding=encoding)
    except UnicodeDecodeError:  # shakespeare-caesar.txt is ISO-8859-1
        text = Path(path).read_text(encoding="latin-1")
    text = strip_gutenberg_boilerplate(text).lstrip()
    text = text.split("\n", 1)[1] if text.startswith("[") else text
    # one heading in front: a book without CHAPTER headings (a play) is one chapter, a novel keeps its own
    sentences = [s for doc in gutenberg_documents("CHAPTER 1\n" + text) for s in doc]
    docs = [sentences[i:i + sentences_per_document] for i in range(0, len(sentences), sentences_per_document)]
    if not docs:
        raise ValueError(f"{path} holds no text")
    return docs


def tokenize_documents(documents: Iterable[Sequence[str]], tokenizer: BertTokenizer) -> list[list[list[str]]]:
    """WordPiece-tokenize every sentence; drop sentences that tokenize to nothing and empty documents."""
    out = []
    for doc in documents:
        toks = [t for t in (tokenizer.tokenize(s) for s in doc) if t]
        if toks:
            out.append(toks)
    return out


@dataclass
class TrainingInstance:
    """One NSP pair: `[CLS] A [SEP] B [SEP]` as WordPiece strings, segment ids and whether B is random.

    `forced_random_next` marks chunks of a single sentence: there is no actual next segment inside the chunk,
    so Google's code always picks a random B for them (this is why the NotNext share is a bit above 50%).
    """

    tokens: list[str]
    segment_ids: list[int]
    is_random_next: bool
    forced_random_next: bool = False

    def __str__(self) -> str:
        return f"{'NotNext' if self.is_random_next else 'IsNext'}: {' '.join(self.tokens)}"


def truncate_seq_pair_at_random_ends(tokens_a: list[str], tokens_b: list[str], max_num_tokens: int,
                                     rng: random.Random) -> None:
    """Trim in place the longer of A and B, one token at a time from a random end, until they fit.

    Google's ``create_pretraining_data.py`` calls this ``truncate_seq_pair``; fine-tuning's pair truncation
    (:func:`minibert.tokenization.truncate_seq_pair`, ``run_classifier.py``'s ``_truncate_seq_pair``) always cuts
    the end instead."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        # random end: avoids a bias towards always cutting the end of sentences (Google's comment)
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def create_instances_from_document(all_documents: list[list[list[str]]], document_index: int,
                                   max_seq_length: int, short_seq_prob: float, rng: random.Random, *,
                                   tokenizer: BertTokenizer) -> list[TrainingInstance]:
    """Google's algorithm: fill a chunk of consecutive sentences up to a target length, split it at a random
    sentence boundary into A and B; half the time (always for a one-sentence chunk) replace B by a span of a
    random other document and put the unused sentences back. `short_seq_prob` of the time the target length is
    random in [2, max], so the model also sees short sequences (fine-tuning inputs are often short).
    The [CLS] and [SEP] tokens are the tokenizer's (the one that tokenized the documents)."""
    cls_token, sep_token = tokenizer.cls_token, tokenizer.sep_token
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    instances = []
    current_chunk: list[list[str]] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = rng.randint(1, len(current_chunk) - 1) if len(current_chunk) >= 2 else 1
                tokens_a = [t for seg in current_chunk[:a_end] for t in seg]
                tokens_b: list[str] = []
                forced = len(current_chunk) == 1
                if forced or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    for _ in range(10):  # with one document only, B comes from the same document
                        random_document_index = rng.randint(0, len(all_documents) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = all_documents[random_document_index]
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    i -= len(current_chunk) - a_end  # put the unused segments back, so they are not wasted
                else:
                    is_random_next = False
                    tokens_b = [t for seg in current_chunk[a_end:] for t in seg]
                truncate_seq_pair_at_random_ends(tokens_a, tokens_b, max_num_tokens, rng)
                if tokens_a and tokens_b:
                    tokens = [cls_token, *tokens_a, sep_token, *tokens_b, sep_token]
                    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                    instances.append(TrainingInstance(tokens, segment_ids, is_random_next, forced))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def create_training_instances(documents: list[list[list[str]]], max_seq_length: int = 128,
                              short_seq_prob: float = 0.1, dupe_factor: int = 1, seed: int = 12345, *,
                              tokenizer: BertTokenizer) -> list[TrainingInstance]:
    """NSP instances from documents tokenized by `tokenizer` (see `tokenize_documents`), shuffled; `dupe_factor`
    passes over the data, each with different pair boundaries. Deterministic for a given seed."""
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for A and B; use at least 5")
    if not documents:
        raise ValueError("no documents; read them with read_documents and tokenize_documents first")
    rng = random.Random(seed)
    documents = list(documents)
    rng.shuffle(documents)
    instances = []
    for _ in range(dupe_factor):
        for idx in range(len(documents)):
            instances.extend(create_instances_from_document(documents, idx, max_seq_length, short_seq_prob, rng,
                                                            tokenizer=tokenizer))
    rng.shuffle(instances)
    return instances


def split_documents(documents: list, held_out: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Split whole documents into (train, held-out) so no sentence of a held-out document is seen in training."""
    idx = list(range(len(documents)))
    random.Random(seed).shuffle(idx)
    n = max(1, int(round(len(documents) * held_out)))
    held = set(idx[:n])
    return [d for i, d in enumerate(documents) if i not in held], [d for i, d in enumerate(documents) if i in held]


# ---------------------------------------------------------------------------------------------------------------
# Dynamic masking, vectorized
# ---------------------------------------------------------------------------------------------------------------
def mask_tokens(input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, vocab_size: int, mask_token_id: int,
                generator: torch.Generator | None = None, masked_lm_prob: float = 0.15,
                max_predictions_per_seq: int | None = None, attention_mask: torch.Tensor | None = None,
                word_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose the masked-LM targets of a batch and corrupt them; returns (inputs, labels), inputs untouched.

    As Google's `create_masked_lm_predictions`: each sequence gets exactly
    `min(max_predictions_per_seq, max(1, round(masked_lm_prob * length)))` targets (length counts [CLS]/[SEP],
    not padding), drawn uniformly among tokens that are not special; each target becomes [MASK] with
    probability 0.8, a uniformly random vocabulary id with 0.1, and stays unchanged with 0.1 (section 3.1).
    Labels hold the original id at targets and IGNORE_INDEX (-100) elsewhere.
    With `word_ids` (batch, seq), whole-word masking: the pieces of one word (same id) are masked together;
    words are taken in random order while their pieces fit the budget (Google skips a word that overflows and
    tries the next; here selection stops at the first overflow, which masks at most a few tokens fewer). Word
    ids count from 0 within a row, as a tokenizer's ``word_ids()`` gives them, with -1 (its None) at special
    tokens and padding.
    """
    if input_ids.shape != special_tokens_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and special_tokens_mask "
                         f"{tuple(special_tokens_mask.shape)} must have the same (batch, seq) shape")
    ids = input_ids.cpu()
    B, S = ids.shape
    candidate = ~special_tokens_mask.cpu().bool()
    lengths = attention_mask.cpu().sum(1) if attention_mask is not None else torch.full((B,), S)
    num = torch.round(lengths.double() * masked_lm_prob).long().clamp(min=1)  # round half to even, as Python
    if max_predictions_per_seq is not None:
        num = num.clamp(max=max_predictions_per_seq)
    if word_ids is None:
        # a random rank for every candidate; the `num` lowest ranks are the targets
        scores = torch.rand(B, S, generator=generator)
        scores[~candidate] = 2.0
        ranks = scores.argsort(1).argsort(1)
        selected = candidate & (ranks < num[:, None])
    else:
        wid = word_ids.cpu().long()
        if wid.shape != ids.shape:
            raise ValueError(f"word_ids {tuple(wid.shape)} must have the (batch, seq) shape of input_ids "
                             f"{tuple(ids.shape)}")
        bad = (candidate & (wid < 0)) | (wid >= S)
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"word_ids[{row}, {col}] = {int(wid[row, col])}: a token that is not special needs a "
                             f"word id in [0, {S}) (words counted from 0 in its row); -1 marks special tokens")
        word_scores = torch.rand(B, S, generator=generator)  # one random key per word id
        scores = word_scores.gather(1, wid.clamp(min=0))  # special tokens' keys are replaced just below
        scores[~candidate] = 2.0
        order = scores.argsort(dim=1, stable=True)  # pieces of a word stay together and in order
        cum = candidate.gather(1, order).long().cumsum(1)  # targets used up to and including this token
        # each word's count at its last piece; special tokens get a slot S of their own, so word 0 is a word too
        slot = torch.where(candidate, wid, S)
        end_cum = torch.zeros(B, S + 1, dtype=torch.long).scatter_reduce(1, slot.gather(1, order), cum, "amax")
        selected = candidate & (end_cum.gather(1, slot) <= num[:, None])
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    u = torch.rand(B, S, generator=generator)
    random_ids = torch.randint(vocab_size, (B, S), generator=generator, dtype=ids.dtype)
    inputs = torch.where(selected & (u < 0.8), torch.full_like(ids, mask_token_id), ids)
    inputs = torch.where(selected & (u >= 0.9), random_ids, inputs)
    return inputs.to(input_ids.device), labels.to(input_ids.device)


class PretrainingDataset(torch.utils.data.Dataset):
    """TrainingInstances converted to ids once by the tokenizer (tensors), ready for `PretrainingCollator`."""

    def __init__(self, instances: Sequence[TrainingInstance], tokenizer: BertTokenizer) -> None:
        self.instances = list(instances)
        self.tokenizer = tokenizer
        self.items = []
        for inst in self.instances:
            self.items.append({
                "input_ids": torch.tensor(tokenizer.convert_tokens_to_ids(inst.tokens), dtype=torch.long),
                "token_type_ids": torch.tensor(inst.segment_ids, dtype=torch.long),
                "word_start": torch.tensor([not t.startswith("##") for t in inst.tokens], dtype=torch.bool),
                "next_sentence_label": NOT_NEXT if inst.is_random_next else IS_NEXT,
            })

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class PretrainingCollator:
    """The pre-training collate: :func:`minibert.data.collate` (padding with the tokenizer's [PAD]), then fresh
    masks on every call (dynamic masking), with [CLS], [SEP] and [MASK] ids from the tokenizer.

    Deterministic: two collators with the same seed, called on the same batches in the same order, return the
    same tensors. Returns input_ids, token_type_ids, attention_mask, masked_lm_labels, next_sentence_label:
    the keyword arguments of ``BertForPreTraining``.
    """

    def __init__(self, tokenizer: BertTokenizer, masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20,
                 whole_word_mask: bool = False, seed: int = 0, pad_to: int | None = None) -> None:
        if not isinstance(tokenizer, BertTokenizer):
            raise TypeError(f"PretrainingCollator takes the BertTokenizer (it knows the special tokens' ids), got "
                            f"{type(tokenizer).__name__}; pass tok, not tok.vocab")
        self.vocab_size = tokenizer.vocab_size
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = (tokenizer.pad_token_id, tokenizer.cls_token_id,
                                                               tokenizer.sep_token_id, tokenizer.mask_token_id)
        self.masked_lm_prob, self.max_predictions_per_seq = masked_lm_prob, max_predictions_per_seq
        self.whole_word_mask, self.pad_to, self.seed = whole_word_mask, pad_to, seed
        self.generator = torch.Generator().manual_seed(seed)

    def with_seed(self, seed: int) -> "PretrainingCollator":
        """A copy with a fresh generator: e.g. fixed masks for a held-out set."""
        other = copy.copy(self)
        other.seed, other.generator = seed, torch.Generator().manual_seed(seed)
        return other

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = collate([{k: v for k, v in it.items() if k != "word_start"} for it in items], self.pad_id,
                        vocab_size=self.vocab_size)
        word_start = torch.nn.utils.rnn.pad_sequence([it["word_start"] for it in items], batch_first=True,
                                                     padding_value=True)
        if self.pad_to is not None and batch["input_ids"].shape[1] < self.pad_to:
            extra = self.pad_to - batch["input_ids"].shape[1]
            for key, value in (("input_ids", self.pad_id), ("token_type_ids", 0), ("attention_mask", 0)):
                batch[key] = F.pad(batch[key], (0, extra), value=value)
            word_start = F.pad(word_start, (0, extra), value=True)
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        special = (input_ids == self.cls_id) | (input_ids == self.sep_id) | (attention_mask == 0)
        word_ids = None
        if self.whole_word_mask:
            word_ids = torch.where(special, -1, word_start.long().cumsum(1) - 1)
        batch["input_ids"], batch["masked_lm_labels"] = mask_tokens(
            input_ids, special, self.vocab_size, self.mask_id, self.generator, self.masked_lm_prob,
            self.max_predictions_per_seq, attention_mask, word_ids)
        return batch


def write_corpus_vocab(documents: list[list[list[str]]], vocab: dict[str, int], path: str | os.PathLike,
                       extra: Sequence[str] = SPECIAL_TOKENS) -> Path:
    """Write a vocab.txt holding only the WordPieces the tokenized corpus uses (plus the special tokens), in the
    original order. Greedy longest-match WordPiece then tokenizes this corpus exactly as before (every piece it
    chose is kept, every longer candidate was absent already), while a from-scratch model's output layer
    shrinks (Gutenberg: 10.7k of 30.5k): pre-training on a CPU runs about 2-3x faster."""
    used = set(extra) | {t for doc in documents for sent in doc for t in sent}
    missing = used - set(vocab)
    if missing:
        raise ValueError(f"tokens {sorted(missing)[:5]} are not in the vocab; tokenize with the same tokenizer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t + "\n" for t in sorted(used, key=vocab.__getitem__)), encoding="utf-8")
    return path


@dataclass
class PretrainingData:
    """Train and held-out datasets (split by document) and the tokenizer whose ids they hold."""

    train: PretrainingDataset
    held_out: PretrainingDataset
    tokenizer: BertTokenizer


def load_pretraining_data(source: str | os.PathLike | list[list[str]], tokenizer: BertTokenizer,
                          max_seq_length: int = 128,
                          short_seq_prob: float = 0.1, dupe_factor: int = 1, held_out: float = 0.1,
                          max_documents: int | None = None, seed: int = 12345,
                          corpus_vocab_file: str | os.PathLike | None = None) -> PretrainingData:
    """Text (a file in the pre-training format, or documents of sentences) -> NSP instances for train and
    held-out documents, converted to ids.

    With `corpus_vocab_file`, a reduced vocab (see `write_corpus_vocab`) is written there and the returned
    tokenizer uses it: for a model trained from scratch on this corpus only."""
    raw = read_documents(source, max_documents) if isinstance(source, (str, os.PathLike)) else source[:max_documents]
    docs = tokenize_documents(raw, tokenizer)
    if corpus_vocab_file is not None:
        vocab_file = write_corpus_vocab(docs, tokenizer.vocab, corpus_vocab_file)
        tokenizer = type(tokenizer)(vocab_file, do_lower_case=getattr(tokenizer, "do_lower_case", True))
    train_docs, eval_docs = split_documents(docs, held_out, seed)
    train = create_training_instances(train_docs, max_seq_length, short_seq_prob, dupe_factor, seed,
                                      tokenizer=tokenizer)
    held = create_training_instances(eval_docs, max_seq_length, short_seq_prob, 1, seed + 1, tokenizer=tokenizer)
    return PretrainingData(PretrainingDataset(train, tokenizer), PretrainingDataset(held, tokenizer), tokenizer)


# ---------------------------------------------------------------------------------------------------------------
# Metrics, baseline and a small pre-training loop (used by notebooks 07 and 08 and the benchmark)
# ---------------------------------------------------------------------------------------------------------------
def pretraining_losses(prediction_scores: torch.Tensor, seq_relationship_score: torch.Tensor,
                       masked_lm_labels: torch.Tensor, next_sentence_label: torch.Tensor) -> dict[str, torch.Tensor]:
    """MLM and NSP cross-entropies and accuracies (labels < 0 ignored). `prediction_scores` is (batch, seq, V),
    or only the targets' rows (n, V) in row-major order (what BertForPreTraining computes with labels); the
    labels are (batch, seq) either way, or (n,) already gathered."""
    V = prediction_scores.shape[-1]
    labels = masked_lm_labels.reshape(-1)
    scores = prediction_scores.reshape(-1, V)
    target = labels >= 0
    if scores.shape[0] == labels.numel():  # a row for every position: keep the predicted ones
        scores = scores[target]
    labels = labels[target]
    mlm = F.cross_entropy(scores.float(), labels) if labels.numel() else scores.sum() * 0.0
    nsp = F.cross_entropy(seq_relationship_score.float(), next_sentence_label)
    return {"loss": mlm + nsp, "mlm_loss": mlm, "nsp_loss": nsp,
            "mlm_correct": (scores.argmax(-1) == labels).sum(), "mlm_count": torch.tensor(labels.numel()),
            "nsp_correct": (seq_relationship_score.argmax(-1) == next_sentence_label).sum(),
            "nsp_count": torch.tensor(next_sentence_label.numel())}


def _to(batch: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


class PretrainingStats:
    """MLM and NSP losses and accuracies of a ``BertForPreTraining``'s forward passes, read off its two heads
    while the model computes its own loss (called with labels it returns the loss only, and its vocabulary
    scores exist only at the masked positions): no second forward pass, no copy of the loss.

    Use as a context manager around the forward passes; ``pop()`` returns the totals since the last pop. With
    ``mask_token_id``, the MLM hits are also counted by what the model saw at each target (see
    :func:`mlm_accuracy_by_input`).
    """

    def __init__(self, model: torch.nn.Module, mask_token_id: int | None = None) -> None:
        heads = getattr(model, "cls", None)
        if not (hasattr(heads, "predictions") and hasattr(heads, "seq_relationship")):
            raise TypeError(f"{type(model).__name__} has no pre-training heads (cls.predictions and "
                            "cls.seq_relationship); pre-train a BertForPreTraining")
        self.mask_token_id = mask_token_id
        self._scores: list[torch.Tensor] = []
        self._nsp: list[torch.Tensor] = []
        self._totals = self._zeros()
        self._handles = [
            heads.predictions.register_forward_hook(lambda m, i, out: self._scores.append(out.detach())),
            heads.seq_relationship.register_forward_hook(lambda m, i, out: self._nsp.append(out.detach())),
            model.register_forward_hook(self._count, with_kwargs=True),
        ]

    @staticmethod
    def _zeros() -> dict[str, float]:
        by_input = [f"{kind}_{what}" for kind in INPUT_KINDS for what in ("correct", "count")]
        return dict.fromkeys(("mlm_loss", "nsp_loss", "mlm_correct", "mlm_count", "nsp_correct", "nsp_count",
                              *by_input), 0.0)

    def _count(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        scores, nsp, self._scores, self._nsp = self._scores, self._nsp, [], []
        labels, next_label = kwargs.get("masked_lm_labels"), kwargs.get("next_sentence_label")
        if labels is None or next_label is None or len(scores) != 1 or len(nsp) != 1:
            return  # called without labels, or not as BertForPreTraining computes its loss
        r = pretraining_losses(scores[0], nsp[0], labels, next_label)
        for key in ("mlm", "nsp"):
            n = r[f"{key}_count"].item()
            self._totals[f"{key}_loss"] += r[f"{key}_loss"].item() * n
            self._totals[f"{key}_correct"] += r[f"{key}_correct"].item()
            self._totals[f"{key}_count"] += n
        if self.mask_token_id is not None:
            self._count_by_input(scores[0], labels, kwargs["input_ids"])

    def _count_by_input(self, scores: torch.Tensor, labels: torch.Tensor, input_ids: torch.Tensor) -> None:
        labels = labels.reshape(-1)
        target = labels >= 0
        rows = scores.reshape(-1, scores.shape[-1])
        rows = rows[target] if rows.shape[0] == labels.numel() else rows  # else already the targets' rows
        shown, labels = input_ids.reshape(-1)[target], labels[target]
        kind = torch.where(shown == self.mask_token_id, 0, torch.where(shown == labels, 2, 1))
        hit = (rows.argmax(-1) == labels).long()
        correct, count = torch.bincount(kind, hit, minlength=3).tolist(), torch.bincount(kind, minlength=3).tolist()
        for i, name in enumerate(INPUT_KINDS):
            self._totals[f"{name}_correct"] += correct[i]
            self._totals[f"{name}_count"] += count[i]

    def pop(self) -> dict[str, float]:
        """Totals since the last pop: summed losses, correct predictions and counts for MLM and NSP."""
        totals, self._totals = self._totals, self._zeros()
        return totals

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __enter__(self) -> "PretrainingStats":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fixed_batches(dataset: PretrainingDataset, collator: PretrainingCollator, batch_size: int = 64,
                  seed: int = 1234) -> list[dict]:
    """Batches with masks fixed once (a copy of the collator with its own seed): held-out sets stay comparable."""
    col = collator.with_seed(seed)
    return [col([dataset[j] for j in range(i, min(i + batch_size, len(dataset)))])
            for i in range(0, len(dataset), batch_size)]


def _held_out_totals(model: torch.nn.Module, batches: list[dict], device: torch.device | str | None,
                     mask_token_id: int | None = None) -> dict[str, float]:
    """The forward pass of every held-out metric: the model computes its own loss on each batch (in eval mode,
    without gradients) and :class:`PretrainingStats` reads the totals off its heads."""
    device = device if device is not None else next(model.parameters()).device
    with eval_mode(model), torch.no_grad(), PretrainingStats(model, mask_token_id) as stats:
        for batch in dry_run_cut(batches, 1, "pre-training evaluation"):
            model(**_to(batch, device))
        return stats.pop()


def evaluate_pretraining(model: torch.nn.Module, batches: list[dict], device: torch.device | str | None = None
                         ) -> dict[str, float]:
    """Held-out MLM loss, accuracy and perplexity (exp of the mean loss per masked token) and NSP accuracy.

    The model computes its own loss on each batch (``model(**batch)``); the metrics are read off its heads."""
    tot = _held_out_totals(model, batches, device)
    mlm_loss = tot["mlm_loss"] / max(tot["mlm_count"], 1)
    return {"mlm_loss": mlm_loss, "perplexity": math.exp(mlm_loss),
            "mlm_accuracy": tot["mlm_correct"] / max(tot["mlm_count"], 1),
            "nsp_loss": tot["nsp_loss"] / max(tot["nsp_count"], 1),
            "nsp_accuracy": tot["nsp_correct"] / max(tot["nsp_count"], 1), "masked_tokens": int(tot["mlm_count"])}


def mlm_accuracy_by_input(model: torch.nn.Module, batches: list[dict], mask_token_id: int,
                          device: torch.device | str | None = None) -> dict[str, tuple[float, int]]:
    """Held-out MLM accuracy split by what the model saw at each target: ``[MASK]`` (80%), a random token (10%)
    or the token itself (10%, section 3.1), as (accuracy, count). The overall accuracy counts all three, and the
    unchanged 10% only need a copy of the input: a model that ignores the context still scores them, so the
    ``[MASK]`` column is the one that shows whether it reads the context. Same forward pass as
    :func:`evaluate_pretraining`."""
    tot = _held_out_totals(model, batches, device, mask_token_id)
    return {name: (tot[f"{name}_correct"] / tot[f"{name}_count"] if tot[f"{name}_count"] else float("nan"),
                   int(tot[f"{name}_count"])) for name in INPUT_KINDS}


def unigram_baseline(train: PretrainingDataset, batches: list[dict], vocab: dict[str, int] | None = None
                     ) -> dict[str, float]:
    """The no-context baseline: predict every masked token from training-set token frequencies (add-one).

    Accuracy = always guessing the most frequent token; perplexity = exp of the unigram cross-entropy.
    Special tokens are never targets, so they are left out of the counts. ``vocab`` defaults to the dataset
    tokenizer's (only its size is used)."""
    tok = train.tokenizer
    size = len(vocab) if vocab is not None else tok.vocab_size
    ids = torch.cat([it["input_ids"] for it in train.items])
    counts = torch.bincount(ids, minlength=size).double() + 1.0
    counts[[tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id]] = 0.0
    logp = (counts / counts.sum()).log()
    labels = torch.cat([b["masked_lm_labels"].reshape(-1) for b in batches])
    labels = labels[labels >= 0]
    ce = -logp[labels].mean().item()
    return {"mlm_accuracy": (labels == int(counts.argmax())).double().mean().item(), "perplexity": math.exp(ce),
            "mlm_loss": ce}


@dataclass
class PretrainHistory:
    """What :func:`pretrain` returns: the run's ``log_history`` (training records with the training batch's MLM /
    NSP accuracy, held-out evaluations as ``eval_<metric>``; all phases of a multi-phase run) and its seconds,
    with the curves read off it by name."""

    log_history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def _curve(self, key: str) -> list[float]:
        return [r[key] for r in self.log_history if "loss" in r]

    @property
    def step(self) -> list[int]:
        return [int(s) for s in self._curve("step")]

    @property
    def loss(self) -> list[float]:
        return self._curve("loss")

    @property
    def lr(self) -> list[float]:
        return self._curve("lr")

    @property
    def mlm_accuracy(self) -> list[float]:
        return self._curve("mlm_accuracy")

    @property
    def nsp_accuracy(self) -> list[float]:
        return self._curve("nsp_accuracy")

    @property
    def evals(self) -> list[tuple[int, dict[str, float]]]:
        """(step, held-out metrics) of every evaluation, the metrics named as :func:`evaluate_pretraining` does."""
        return [(int(r["step"]), {k[len("eval_"):]: v for k, v in r.items() if k.startswith("eval_")})
                for r in self.log_history if any(k.startswith("eval_") for k in r)]


def pretrain(model: torch.nn.Module, train: PretrainingDataset, collator: PretrainingCollator,
             optimizer: BertAdam, num_steps: int, batch_size: int = 32, eval_batches: list[dict] | None = None,
             eval_every: int = 0, max_seconds: float | None = None, device: torch.device | str | None = None,
             callbacks: Iterable[Callback] = (), seed: int = 0, precision: str = "auto",
             args: TrainingArguments | None = None, history: PretrainHistory | None = None) -> PretrainHistory:
    """Train with MLM + NSP for `num_steps` optimizer steps, cycling over `train`: :func:`minibert.training.train`
    (the one loop: mixed precision, accumulation, checkpoints, DDP) with `collator` as its collate.

    Loss = MLM cross-entropy + NSP cross-entropy, computed by the model (BertForPreTraining). Each logged update's
    record in ``log_history`` also holds the MLM and NSP accuracy of its batch; held-out metrics
    (:func:`evaluate_pretraining` on `eval_batches`) are logged every `eval_every` steps and at the end.
    `callbacks` are train()'s (e.g. a live plot of the log). `max_seconds` stops early (reported, so a busy
    machine shows fewer steps, not a different curve). `args` overrides the TrainingArguments built from the other
    parameters (e.g. gradient accumulation, logging_steps). `history` continues the log of an earlier call, e.g.
    BERT's phases of short then long sequences (appendix A.2), with one optimizer or a new one per phase: its
    steps count on from the earlier call's last step.
    """
    if len(train) == 0:
        raise ValueError("empty training set: check max_documents / the data path")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if args is None:
        epochs = math.ceil(num_steps / math.ceil(len(train) / batch_size))
        args = TrainingArguments(num_train_epochs=epochs, max_steps=num_steps, train_batch_size=batch_size,
                                 seed=seed, device=None if device is None else str(device), precision=precision,
                                 progress=False)
    hist = PretrainHistory() if history is None else history
    earlier_seconds, start = hist.seconds, time.perf_counter()
    batches_per_epoch = math.ceil(len(train) / args.train_batch_size)
    evaluated_at = None

    def held_out(state) -> None:
        nonlocal evaluated_at
        evaluated_at = state.step_offset + state.global_step
        metrics = evaluate_pretraining(model, eval_batches)
        epoch = state.epoch + state.step_in_epoch / batches_per_epoch
        state.log_history.append({"step": evaluated_at, "epoch": epoch, **{f"eval_{k}": v for k, v in metrics.items()}})
        stats.pop()  # the held-out forward passes went through the training hooks too: not training batches

    def on_event(event: str, state) -> None:
        step = state.step_offset + state.global_step
        if event == "step":
            t = stats.pop()  # this update's batch
            record = state.log_history[-1] if state.log_history else {}
            if record.get("step") == step and "loss" in record:  # logged at this update (every logging_steps)
                record["mlm_accuracy"] = t["mlm_correct"] / max(t["mlm_count"], 1)
                record["nsp_accuracy"] = t["nsp_correct"] / max(t["nsp_count"], 1)
            if eval_batches is not None and eval_every and step % eval_every == 0:
                held_out(state)
            hist.seconds = earlier_seconds + time.perf_counter() - start
            if max_seconds is not None and hist.seconds - earlier_seconds > max_seconds \
                    and state.global_step < num_steps:
                raise StopTraining(f"time budget of {max_seconds:.0f} s spent")
        elif event == "end":
            if eval_batches is not None and evaluated_at != step:  # the final model, however the run ended
                held_out(state)
            hist.seconds = earlier_seconds + time.perf_counter() - start

    with PretrainingStats(model) as stats:
        train_loop(model, train.items, args, collate_fn=collator, metrics_fn=None, optimizer=optimizer,
                   callbacks=[on_event, *callbacks], log_history=hist.log_history)
    return hist
