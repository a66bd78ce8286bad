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
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from minibert.assets import strip_gutenberg_boilerplate

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of positions that are not predicted (cross_entropy's default ignore_index)
IS_NEXT, NOT_NEXT = 0, 1


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


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[\"'`]*[A-Z])")


def read_book_documents(path: str | os.PathLike, sentences_per_document: int = 30,
                        encoding: str = "utf-8") -> list[list[str]]:
    """A raw Gutenberg book (NLTK copy) as documents of sentences, for LM fine-tuning on a new corpus.

    Drops the Project Gutenberg header and footer and a `[Title by Author Year]` first line, joins each
    paragraph's lines, splits sentences with a simple regex (end punctuation, space, capital) and groups
    every `sentences_per_document` consecutive sentences into one document, so NSP's random B comes from
    elsewhere in the book."""
    try:
        text = Path(path).read_text(encoding=encoding)
    except UnicodeDecodeError:  # shakespeare-caesar.txt is ISO-8859-1
        text = Path(path).read_text(encoding="latin-1")
    lines = strip_gutenberg_boilerplate(text).split("\n")
    if lines and lines[0].startswith("["):
        lines = lines[1:]
    paragraphs = " ".join(l.strip() if l.strip() else "\n" for l in lines).split("\n")
    sentences = [s.strip() for p in paragraphs for s in _SENTENCE_END.split(" ".join(p.split())) if s.strip()]
    docs = [sentences[i:i + sentences_per_document] for i in range(0, len(sentences), sentences_per_document)]
    if not docs:
        raise ValueError(f"{path} holds no text")
    return docs


def tokenize_documents(documents: Iterable[Sequence[str]], tokenizer: Any) -> list[list[list[str]]]:
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


def truncate_seq_pair(tokens_a: list[str], tokens_b: list[str], max_num_tokens: int, rng: random.Random) -> None:
    """Trim in place the longer of A and B, one token at a time from a random end, until they fit."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        # random end: avoids a bias towards always cutting the end of sentences (Google's comment)
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def create_instances_from_document(all_documents: list[list[list[str]]], document_index: int,
                                   max_seq_length: int, short_seq_prob: float, rng: random.Random
                                   ) -> list[TrainingInstance]:
    """Google's algorithm: fill a chunk of consecutive sentences up to a target length, split it at a random
    sentence boundary into A and B; half the time (always for a one-sentence chunk) replace B by a span of a
    random other document and put the unused sentences back. `short_seq_prob` of the time the target length is
    random in [2, max], so the model also sees short sequences (fine-tuning inputs are often short)."""
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
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                if tokens_a and tokens_b:
                    tokens = ["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"]
                    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                    instances.append(TrainingInstance(tokens, segment_ids, is_random_next, forced))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def create_training_instances(documents: list[list[list[str]]], max_seq_length: int = 128,
                              short_seq_prob: float = 0.1, dupe_factor: int = 1, seed: int = 12345
                              ) -> list[TrainingInstance]:
    """NSP instances from tokenized documents (see `tokenize_documents`), shuffled; `dupe_factor` passes over
    the data, each with different pair boundaries. Deterministic for a given seed."""
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
            instances.extend(create_instances_from_document(documents, idx, max_seq_length, short_seq_prob, rng))
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
    tries the next; here selection stops at the first overflow, which masks at most a few tokens fewer).
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
        wid = word_ids.cpu().long().clamp(min=0)
        word_scores = torch.rand(B, S, generator=generator)  # one random key per word id
        scores = word_scores.gather(1, wid)
        scores[~candidate] = 2.0
        order = scores.argsort(dim=1, stable=True)  # pieces of a word stay together and in order
        cum = candidate.gather(1, order).long().cumsum(1)  # targets used up to and including this token
        end_cum = torch.zeros(B, S, dtype=torch.long).scatter_reduce(1, wid.gather(1, order), cum, "amax")
        selected = candidate & (end_cum.gather(1, wid) <= num[:, None])
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    u = torch.rand(B, S, generator=generator)
    random_ids = torch.randint(vocab_size, (B, S), generator=generator, dtype=ids.dtype)
    inputs = torch.where(selected & (u < 0.8), torch.full_like(ids, mask_token_id), ids)
    inputs = torch.where(selected & (u >= 0.9), random_ids, inputs)
    return inputs.to(input_ids.device), labels.to(input_ids.device)


class PretrainingDataset(torch.utils.data.Dataset):
    """TrainingInstances converted to ids once (tensors), ready for `PretrainingCollator`."""

    def __init__(self, instances: Sequence[TrainingInstance], tokenizer: Any) -> None:
        self.instances = list(instances)
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
    """Pads a list of dataset items and masks them afresh on every call (dynamic masking).

    Deterministic: two collators with the same seed, called on the same batches in the same order, return the
    same tensors. Returns input_ids, token_type_ids, attention_mask, masked_lm_labels, next_sentence_label.
    """

    def __init__(self, vocab: dict[str, int], masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20,
                 whole_word_mask: bool = False, seed: int = 0, pad_to: int | None = None) -> None:
        for tok in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"):
            if tok not in vocab:
                raise ValueError(f"vocab has no {tok} token; pass tokenizer.vocab of a BERT WordPiece vocab")
        self.vocab_size = len(vocab)
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = (vocab[t] for t in ("[PAD]", "[CLS]", "[SEP]",
                                                                                   "[MASK]"))
        self.masked_lm_prob, self.max_predictions_per_seq = masked_lm_prob, max_predictions_per_seq
        self.whole_word_mask, self.pad_to, self.seed = whole_word_mask, pad_to, seed
        self.generator = torch.Generator().manual_seed(seed)

    def with_seed(self, seed: int) -> "PretrainingCollator":
        """A copy with a fresh generator: e.g. fixed masks for a held-out set."""
        other = copy.copy(self)
        other.seed, other.generator = seed, torch.Generator().manual_seed(seed)
        return other

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        pad = torch.nn.utils.rnn.pad_sequence
        input_ids = pad([it["input_ids"] for it in items], batch_first=True, padding_value=self.pad_id)
        token_type_ids = pad([it["token_type_ids"] for it in items], batch_first=True)
        word_start = pad([it["word_start"] for it in items], batch_first=True, padding_value=True)
        if self.pad_to is not None and input_ids.shape[1] < self.pad_to:
            extra = self.pad_to - input_ids.shape[1]
            input_ids = F.pad(input_ids, (0, extra), value=self.pad_id)
            token_type_ids = F.pad(token_type_ids, (0, extra))
            word_start = F.pad(word_start, (0, extra), value=True)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        special = (input_ids == self.cls_id) | (input_ids == self.sep_id) | (attention_mask == 0)
        word_ids = None
        if self.whole_word_mask:
            word_ids = torch.where(special, -1, word_start.long().cumsum(1) - 1)
        inputs, labels = mask_tokens(input_ids, special, self.vocab_size, self.mask_id, self.generator,
                                     self.masked_lm_prob, self.max_predictions_per_seq, attention_mask, word_ids)
        return {"input_ids": inputs, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
                "masked_lm_labels": labels,
                "next_sentence_label": torch.tensor([it["next_sentence_label"] for it in items])}


def write_corpus_vocab(documents: list[list[list[str]]], vocab: dict[str, int], path: str | os.PathLike,
                       extra: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")) -> Path:
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
    tokenizer: Any


def load_pretraining_data(source: str | os.PathLike | list[list[str]], tokenizer: Any, max_seq_length: int = 128,
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
    train = create_training_instances(train_docs, max_seq_length, short_seq_prob, dupe_factor, seed)
    held = create_training_instances(eval_docs, max_seq_length, short_seq_prob, 1, seed + 1)
    return PretrainingData(PretrainingDataset(train, tokenizer), PretrainingDataset(held, tokenizer), tokenizer)


# ---------------------------------------------------------------------------------------------------------------
# Metrics, baseline and a small pre-training loop (used by notebooks 07 and 08 and the benchmark)
# ---------------------------------------------------------------------------------------------------------------
def pretraining_losses(prediction_scores: torch.Tensor, seq_relationship_score: torch.Tensor,
                       masked_lm_labels: torch.Tensor, next_sentence_label: torch.Tensor) -> dict[str, torch.Tensor]:
    """MLM and NSP cross-entropies and accuracies (labels < 0 ignored). `prediction_scores` is (batch, seq, V)
    with labels (batch, seq), or already gathered at the targets: (n, V) with labels (n,)."""
    V = prediction_scores.shape[-1]
    labels = masked_lm_labels.reshape(-1)
    scores = prediction_scores.reshape(-1, V)
    target = labels >= 0
    if not target.all():  # full (batch, seq, V) scores: keep the predicted positions
        scores, labels = scores[target], labels[target]
    mlm = F.cross_entropy(scores.float(), labels) if labels.numel() else scores.sum() * 0.0
    nsp = F.cross_entropy(seq_relationship_score.float(), next_sentence_label)
    return {"loss": mlm + nsp, "mlm_loss": mlm, "nsp_loss": nsp,
            "mlm_correct": (scores.argmax(-1) == labels).sum(), "mlm_count": torch.tensor(labels.numel()),
            "nsp_correct": (seq_relationship_score.argmax(-1) == next_sentence_label).sum(),
            "nsp_count": torch.tensor(next_sentence_label.numel())}


def _to(batch: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _forward(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(MLM scores at the targets (n, V), their labels (n,), NSP scores (batch, 2)).

    Like Google's `gather_indexes`, the vocabulary decoder runs only on the ~15% of positions that are
    predicted: with a 30522-word vocab and a small encoder it is most of the compute."""
    labels = batch["masked_lm_labels"]
    target = labels >= 0
    bert, heads = getattr(model, "bert", None), getattr(model, "cls", None)
    if bert is not None and hasattr(heads, "predictions") and hasattr(heads, "seq_relationship"):
        seq, pooled = bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                           output_all_encoded_layers=False)
        return heads.predictions(seq[target]), labels[target], heads.seq_relationship(pooled)
    scores, nsp = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])[:2]
    return scores[target], labels[target], nsp


def fixed_batches(dataset: PretrainingDataset, collator: PretrainingCollator, batch_size: int = 64,
                  seed: int = 1234) -> list[dict]:
    """Batches with masks fixed once (a copy of the collator with its own seed): held-out sets stay comparable."""
    col = collator.with_seed(seed)
    return [col([dataset[j] for j in range(i, min(i + batch_size, len(dataset)))])
            for i in range(0, len(dataset), batch_size)]


@torch.no_grad()
def evaluate_pretraining(model: torch.nn.Module, batches: list[dict], device: torch.device | str = "cpu"
                         ) -> dict[str, float]:
    """Held-out MLM loss, accuracy and perplexity (exp of the mean loss per masked token) and NSP accuracy."""
    was_training = model.training
    model.eval()
    tot = {"mlm_loss": 0.0, "nsp_loss": 0.0, "mlm_correct": 0, "mlm_count": 0, "nsp_correct": 0, "nsp_count": 0}
    for batch in batches:
        batch = _to(batch, device)
        mlm_scores, mlm_labels, nsp_scores = _forward(model, batch)
        r = pretraining_losses(mlm_scores, nsp_scores, mlm_labels, batch["next_sentence_label"])
        tot["mlm_loss"] += r["mlm_loss"].item() * r["mlm_count"].item()
        tot["nsp_loss"] += r["nsp_loss"].item() * r["nsp_count"].item()
        for k in ("mlm_correct", "mlm_count", "nsp_correct", "nsp_count"):
            tot[k] += r[k].item()
    model.train(was_training)
    mlm_loss = tot["mlm_loss"] / max(tot["mlm_count"], 1)
    return {"mlm_loss": mlm_loss, "perplexity": math.exp(mlm_loss),
            "mlm_accuracy": tot["mlm_correct"] / max(tot["mlm_count"], 1),
            "nsp_loss": tot["nsp_loss"] / max(tot["nsp_count"], 1),
            "nsp_accuracy": tot["nsp_correct"] / max(tot["nsp_count"], 1), "masked_tokens": tot["mlm_count"]}


def unigram_baseline(train: PretrainingDataset, batches: list[dict], vocab: dict[str, int]) -> dict[str, float]:
    """The no-context baseline: predict every masked token from training-set token frequencies (add-one).

    Accuracy = always guessing the most frequent token; perplexity = exp of the unigram cross-entropy.
    Special tokens are never targets, so they are left out of the counts."""
    ids = torch.cat([it["input_ids"] for it in train.items])
    counts = torch.bincount(ids, minlength=len(vocab)).double() + 1.0
    for tok in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"):
        counts[vocab[tok]] = 0.0
    logp = (counts / counts.sum()).log()
    labels = torch.cat([b["masked_lm_labels"].reshape(-1) for b in batches])
    labels = labels[labels >= 0]
    ce = -logp[labels].mean().item()
    return {"mlm_accuracy": (labels == int(counts.argmax())).double().mean().item(), "perplexity": math.exp(ce),
            "mlm_loss": ce}


@dataclass
class PretrainHistory:
    """Per-step training curves and the held-out evaluations (step, metrics)."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    mlm_accuracy: list[float] = field(default_factory=list)
    nsp_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    evals: list[tuple[int, dict]] = field(default_factory=list)
    seconds: float = 0.0


def pretrain(model: torch.nn.Module, train: PretrainingDataset, collator: PretrainingCollator,
             optimizer: torch.optim.Optimizer, num_steps: int, batch_size: int = 32,
             eval_batches: list[dict] | None = None, eval_every: int = 0, max_seconds: float | None = None,
             device: torch.device | str = "cpu", callback: Callable[[PretrainHistory], None] | None = None,
             callback_every: int = 10, seed: int = 0) -> PretrainHistory:
    """Train with MLM + NSP for `num_steps` optimizer steps (or until `max_seconds`), cycling over `train`.

    Loss = MLM cross-entropy + NSP cross-entropy (the sum, as BertForPreTraining). `callback(history)` runs
    every `callback_every` steps (e.g. a live plot); held-out metrics every `eval_every` steps and at the end.
    """
    if len(train) == 0:
        raise ValueError("empty training set: check max_documents / the data path")
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=collator,
                                         generator=torch.Generator().manual_seed(seed),
                                         drop_last=len(train) > batch_size)
    hist = PretrainHistory()
    model.to(device).train()
    start = time.perf_counter()
    step = 0
    while step < num_steps:
        for batch in loader:
            batch = _to(batch, device)
            mlm_scores, mlm_labels, nsp_scores = _forward(model, batch)
            r = pretraining_losses(mlm_scores, nsp_scores, mlm_labels, batch["next_sentence_label"])
            optimizer.zero_grad(set_to_none=True)
            r["loss"].backward()
            lr = optimizer.get_lr()[0] if hasattr(optimizer, "get_lr") else optimizer.param_groups[0]["lr"]
            optimizer.step()
            step += 1
            hist.step.append(step)
            hist.loss.append(r["loss"].item())
            hist.mlm_accuracy.append(r["mlm_correct"].item() / max(r["mlm_count"].item(), 1))
            hist.nsp_accuracy.append(r["nsp_correct"].item() / r["nsp_count"].item())
            hist.lr.append(float(lr))
            out_of_time = max_seconds is not None and time.perf_counter() - start > max_seconds
            done = step >= num_steps or out_of_time
            if eval_batches is not None and ((eval_every and step % eval_every == 0) or done):
                hist.evals.append((step, evaluate_pretraining(model, eval_batches, device)))
            hist.seconds = time.perf_counter() - start
            if callback is not None and (step % callback_every == 0 or done):
                callback(hist)
            if done:
                if out_of_time:
                    logger.info("stopped at step %d of %d: time budget %.0f s spent", step, num_steps, max_seconds)
                return hist
    return hist
