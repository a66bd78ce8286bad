"""Small computations the notebooks show but the library does not need: WordPiece statistics (01), an HTML
view of a masked pair (05), per-tensor vs global gradient clipping (06), a measured GPU peak that cleans up
after itself (16)."""
from __future__ import annotations

import collections
import gc
import html
from typing import Iterable, Sequence

import torch

from minibert.heads import BertForSequenceClassification
from minibert.modeling import BertConfig
from minibert.optimization import BertAdam
from minibert.tokenization import BertTokenizer


def wordpiece_stats(tokenizer: BertTokenizer, texts: Iterable[str]) -> dict:
    """Pieces per basic word, share of [UNK] pieces and the most split words over some texts."""
    per_word: collections.Counter[int] = collections.Counter()
    split_words: collections.Counter[str] = collections.Counter()
    pieces_total = unk = 0
    for text in texts:
        for word in tokenizer.basic_tokenizer.tokenize(text):
            pieces = tokenizer.wordpiece_tokenizer.tokenize_word(word)
            per_word[len(pieces)] += 1
            pieces_total += len(pieces)
            unk += pieces == [tokenizer.unk_token]
            if len(pieces) > 1:
                split_words[" ".join(pieces)] += 1
    words = sum(per_word.values())
    return {"words": words, "pieces": pieces_total, "pieces_per_word": per_word,
            "mean_pieces_per_word": pieces_total / max(words, 1), "unk_share": unk / max(pieces_total, 1),
            "most_split": split_words}


def masked_html(input_tokens: Sequence[str], label_tokens: Sequence[str | None], segment_ids: Sequence[int],
                is_random_next: bool | None = None) -> str:
    """HTML of one masked pair: targets coloured (red [MASK], orange random, green unchanged), label beside."""
    colours = {"mask": "#f8b4b4", "random": "#fcd9a6", "keep": "#b9e6b9"}
    parts = []
    for tok, lab, seg in zip(input_tokens, label_tokens, segment_ids):
        if tok == "[PAD]":
            break
        style = "border-bottom:2px solid #88f;" if seg == 1 else ""
        if lab is None:
            parts.append(f'<span style="{style}">{html.escape(tok)}</span>')
            continue
        kind = "mask" if tok == "[MASK]" else ("keep" if tok == lab else "random")
        parts.append(f'<span style="background:{colours[kind]};{style}padding:0 2px" title="{kind}">'
                     f'{html.escape(tok)}<sub>→{html.escape(lab)}</sub></span>')
    head = "" if is_random_next is None else f"<b>{'NotNext' if is_random_next else 'IsNext'}</b> "
    return f'<div style="font-family:monospace;line-height:1.9">{head}{" ".join(parts)}</div>'


def global_vs_per_tensor_clipping(grads: list[torch.Tensor], max_norm: float = 1.0
                                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Clip a list of gradients both ways: (per tensor, as BertAdam; by global norm, as clip_grad_norm_(model))."""
    per = []
    for gr in grads:
        coef = max_norm / (gr.norm(2) + 1e-6)
        per.append(gr * coef if coef < 1 else gr.clone())
    total = torch.linalg.vector_norm(torch.stack([gr.norm(2) for gr in grads]), 2)
    coef = max_norm / (total + 1e-6)
    glob = [gr * coef if coef < 1 else gr.clone() for gr in grads]
    return per, glob


def random_batch(config: BertConfig, batch_size: int, seq_len: int, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A labelled batch of random ids for ``BertForSequenceClassification``, its first row half padding."""
    ids = torch.randint(1, config.vocab_size, (batch_size, seq_len), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, seq_len // 2:] = 0
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask,
             "labels": torch.zeros(batch_size, dtype=torch.long)}
    return {k: v.to(device) for k, v in batch.items()}


def measured_peak(config: BertConfig, batch_size: int, seq_len: int, precision: str = "fp32",
                  attention: str = "sdpa", steps: int = 3) -> int | None:
    """``torch.cuda.max_memory_allocated`` over ``steps`` real training steps (forward, backward, BertAdam) of
    ``BertForSequenceClassification``, or None when a step runs out of memory. The model, optimizer and batch
    are freed and the cache emptied either way, so a failed measurement leaves the GPU as it found it."""
    if not torch.cuda.is_available():
        raise RuntimeError("measured_peak needs a CUDA GPU; on a CPU, memory.count_saved_bytes counts the "
                           "activations instead")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    model = optimizer = batch = loss = None
    try:
        model = BertForSequenceClassification(config).cuda().train().set_attn_implementation(attention)
        optimizer = BertAdam(model.parameters(), lr=1e-5, warmup=0.1, t_total=1000)
        batch = random_batch(config, batch_size, seq_len, "cuda")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(**batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        model = optimizer = batch = loss = None  # noqa: F841 - drop the references before emptying the cache
        gc.collect()
        torch.cuda.empty_cache()
