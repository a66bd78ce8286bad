"""The BERT encoder (Devlin et al. 2019, section 3; Vaswani et al. 2017, section 3.2), top to bottom.

Parameter names and nesting follow Google's TensorFlow checkpoint as Hugging Face spells it
(``embeddings.word_embeddings``, ``encoder.layer.N.attention.self.query``, ``pooler.dense``), so real
weights load by name. Self-attention has two paths that give the same numbers: the explicit math, which
returns the attention probabilities (for heat maps and bertviz), and PyTorch's fused
``scaled_dot_product_attention`` (the default whenever the probabilities are not asked for).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

# Activations by the names BERT configs use. "gelu" is the exact erf form BERT was trained with (paper 3.1,
# Hendrycks & Gimpel 2016); "gelu_new" is the tanh approximation of GPT-2.
ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}

ATTN_IMPLEMENTATIONS = ("sdpa", "explicit")


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of a BERT encoder, with the field names of Google's ``bert_config.json``.

    Defaults are BERT-Base (L=12, H=768, A=12, 110M parameters; paper section 3). Frozen: derive a variant
    with ``dataclasses.replace(config, num_hidden_layers=3)``.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive int, got {value!r}; "
                                 f"set {name}=<a whole number >= 1>")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}: each head gets hidden_size / num_attention_heads dimensions; "
                f"pick num_attention_heads among {_divisors(self.hidden_size)} or change hidden_size")
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"unknown hidden_act={self.hidden_act!r}; use one of {sorted(ACT2FN)} "
                             "(BERT uses 'gelu', the exact erf form)")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig.{name} must be a probability in [0, 1), got {value!r}")
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range < 0:
            raise ValueError(f"initializer_range must be >= 0 (BERT uses 0.02), got {self.initializer_range!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be > 0 (BERT uses 1e-12), got {self.layer_norm_eps!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BertConfig":
        """Keep the BERT fields of a Google ``bert_config.json`` or an HF ``config.json``; ignore the rest."""
        fields = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(k for k in values if k not in fields)
        if ignored:
            logger.debug("BertConfig ignores keys %s", ignored)
        return cls(**{k: v for k, v in values.items() if k in fields})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        """Read a Google ``bert_config.json`` or a Hugging Face ``config.json`` (unknown keys are ignored)."""
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object of config fields, got {type(values).__name__}")
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike, **extra: Any) -> None:
        """Write the config as JSON; ``extra`` keys (e.g. ``model_type``) are added for other libraries."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({**extra, **self.to_dict()}, f, indent=2, sort_keys=True)
            f.write("\n")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, min(n, 64) + 1) if n % d == 0]


# ----------------------------------------------------------------------------------------------------------
# Input checks: cheap (one min/max reduction per tensor) and before any embedding lookup, so a bad id is a
# readable ValueError instead of a CUDA device-side assert.
# ----------------------------------------------------------------------------------------------------------

def _is_compiling() -> bool:
    """True while torch.compile traces (value checks would break the graph); False on torch < 2.3."""
    fn = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(fn()) if fn is not None else False


def _minmax(t: torch.Tensor) -> tuple[float, float]:
    lo, hi = torch.aminmax(t.detach())
    return lo.item(), hi.item()


def check_inputs(config: BertConfig, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                 attention_mask: torch.Tensor | None) -> bool:
    """Raise ValueError naming the problem; return True when the mask hides nothing (so it can be skipped)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a (batch, seq) tensor of token ids, got {shape}; "
                         "for one sentence use ids.unsqueeze(0)")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}; use torch.long")
    batch, seq = input_ids.shape
    if seq > config.max_position_embeddings:
        raise ValueError(f"sequence length {seq} exceeds max_position_embeddings="
                         f"{config.max_position_embeddings}; truncate with max_seq_length<="
                         f"{config.max_position_embeddings}")
    if input_ids.numel() and not _is_compiling():
        lo, hi = _minmax(input_ids)
        if lo < 0 or hi >= config.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"input_ids contain {int(bad)}, outside the vocabulary [0, {config.vocab_size}); "
                             "was the text tokenized with this checkpoint's vocab.txt?")
    if token_type_ids is not None:
        if tuple(token_type_ids.shape) != (batch, seq):
            raise ValueError(f"token_type_ids has shape {tuple(token_type_ids.shape)}, expected {(batch, seq)} "
                             "like input_ids")
        if token_type_ids.numel() and not _is_compiling():
            lo, hi = _minmax(token_type_ids)
            if lo < 0 or hi >= config.type_vocab_size:
                raise ValueError(f"token_type_ids contain {int(hi if hi >= config.type_vocab_size else lo)}, "
                                 f"outside [0, type_vocab_size={config.type_vocab_size}); segment A is 0, B is 1")
    if attention_mask is None:
        return True
    if tuple(attention_mask.shape) != (batch, seq):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(batch, seq)} "
                         "like input_ids (1 = real token, 0 = padding)")
    if not attention_mask.numel() or _is_compiling():
        return False
    lo, hi = _minmax(attention_mask.to(torch.float32) if attention_mask.dtype == torch.bool else attention_mask)
    if lo < 0 or hi > 1:
        raise ValueError(f"attention_mask values must be 0 (padding) or 1 (token), found {lo if lo < 0 else hi}")
    return lo == 1


def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, seq) of 1/0 -> (batch, 1, 1, seq) additive mask: 0 where a key may be attended, very negative
    where it is padding, broadcast over heads and query positions (added to the scores before softmax)."""
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


# ----------------------------------------------------------------------------------------------------------
# Modules, smallest first, in the order the data flows
# ----------------------------------------------------------------------------------------------------------

def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       dropout: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d) + mask) v, written out (Vaswani et al. eq. 1) on (batch, heads, seq, head_dim).

    ``attention_mask`` is additive, (batch, 1, 1, seq) or None; ``dropout`` drops whole attention links, as
    the original does. Returns the context (batch, heads, seq, head_dim) and the probabilities
    (batch, heads, seq, seq), before dropout.
    """
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))  # (batch, heads, seq, seq)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = scores.softmax(dim=-1)
    return (dropout(probs) if dropout is not None else probs) @ v, probs


class BertEmbeddings(nn.Module):
    """Token + position + segment embeddings, summed, then LayerNorm and dropout (paper figure 2)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # TF name, loads by name
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        seq = input_ids.size(1)
        positions = torch.arange(seq, device=input_ids.device)  # learned absolute positions 0..seq-1
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)  # (batch, seq, hidden)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]  # everything is segment A
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, softmax(Q K^T / sqrt(d) + mask) V (Vaswani et al. 3.2.1).

    ``attn_implementation`` picks the path: "sdpa" (fused ``F.scaled_dot_product_attention``, the default)
    or "explicit" (the formula written out). Asking for probabilities always takes the explicit path, and so does
    training on a CPU with attention dropout (faster there, same distribution of results).
    """

    def __init__(self, config: BertConfig, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.attn_implementation = attn_implementation

    @property
    def attn_implementation(self) -> str:
        return self._attn_implementation

    @attn_implementation.setter
    def attn_implementation(self, value: str) -> None:
        if value not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {value!r}")
        self._attn_implementation = value

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, hidden) -> (batch, heads, seq, head_dim)."""
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (batch, seq, hidden); attention_mask additive (batch, 1, 1, seq) or None.
        Returns the context (batch, seq, hidden) and the probabilities (batch, heads, seq, seq) or None."""
        # q, k, v = query(x), key(x), value(x) as one matmul against the three weights stacked: same numbers,
        # one bigger GEMM (about 5% faster on a CPU); the parameters keep their checkpoint names.
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        q, k, v = (self.split_heads(t) for t in F.linear(hidden_states, weight, bias).chunk(3, dim=-1))
        # PyTorch's fused CPU kernel has no dropout; its fallback is slower than the formula, so training on a
        # CPU with attention dropout takes the explicit path (on a GPU the fused kernels do dropout themselves).
        cpu_dropout = self.training and self.dropout.p > 0 and not hidden_states.is_cuda
        if output_attentions or self._attn_implementation == "explicit" or cpu_dropout:
            context, probs = explicit_attention(q, k, v, attention_mask, self.dropout)
        else:
            probs = None
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attention_mask,
                dropout_p=self.dropout.p if self.training else 0.0)
        batch, _, seq, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, seq, -1)  # merge heads: (batch, seq, hidden)
        return context, (probs if output_attentions else None)


class BertSelfOutput(nn.Module):
    """Project the heads back, dropout, add the residual, LayerNorm (post-LN, Vaswani et al. 5.4)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.self = BertSelfAttention(config, attn_implementation)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.self(hidden_states, attention_mask, output_attentions)
        return self.output(context, hidden_states), probs


class BertIntermediate(nn.Module):
    """First half of the position-wise feed-forward network: hidden -> 4*hidden, GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(nn.Module):
    """Second half of the feed-forward network: 4*hidden -> hidden, dropout, residual, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertLayer(nn.Module):
    """One transformer encoder block: self-attention sublayer, then feed-forward sublayer."""

    def __init__(self, config: BertConfig, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.attention = BertAttention(config, attn_implementation)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, probs = self.attention(hidden_states, attention_mask, output_attentions)
        return self.output(self.intermediate(attention_output), attention_output), probs


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, attn_implementation)
                                   for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_all_encoded_layers: bool = True, output_attentions: bool = False,
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns the output of every layer (or only the last, in a one-item list) and the probabilities."""
        encoded_layers, attentions = [], []
        for layer in self.layer:
            hidden_states, probs = layer(hidden_states, attention_mask, output_attentions)
            if output_all_encoded_layers:
                encoded_layers.append(hidden_states)
            if output_attentions:
                attentions.append(probs)
        if not output_all_encoded_layers:
            encoded_layers.append(hidden_states)
        return encoded_layers, attentions


class BertPooler(nn.Module):
    """Sentence summary for classification: dense + tanh on the [CLS] token's final state (paper 3.2)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


def init_bert_weights(module: nn.Module, initializer_range: float) -> None:
    """The original initialization: weights ~ N(0, initializer_range), biases 0, LayerNorm gain 1 and bias 0
    (a truncated normal in TF; plain normal in the 2019 PyTorch port, which we follow)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=initializer_range)
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


class BertPreTrainedModel(nn.Module):
    """Base of every minibert model: holds the config, initializes like the original, loads and saves."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a minibert BertConfig, got {type(config).__name__}; build one with "
                            "BertConfig(...) or BertConfig.from_json_file(path)")
        self.config = config

    def init_weights(self) -> None:
        self.apply(lambda m: init_bert_weights(m, self.config.initializer_range))

    def set_attn_implementation(self, attn_implementation: str) -> "BertPreTrainedModel":
        """Switch every self-attention to "sdpa" (fused, fast) or "explicit" (the written-out formula)."""
        for module in self.modules():
            if isinstance(module, BertSelfAttention):
                module.attn_implementation = attn_implementation
        return self

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, **kwargs: Any):
        """Load a checkpoint folder, the packaged all-MiniLM-L6-v2 (None) or a hub name; see checkpoints.py."""
        from .checkpoints import load_pretrained
        return load_pretrained(cls, name_or_path, **kwargs)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``config.json`` + ``model.safetensors`` (loadable by minibert and by transformers)."""
        from .checkpoints import save_pretrained
        save_pretrained(self, folder)


class BertModel(BertPreTrainedModel):
    """The bare encoder: embeddings -> N transformer layers -> pooler.

    ``forward`` returns ``(encoded_layers, pooled_output)`` as the 2019 library did: ``encoded_layers`` is a
    list with one (batch, seq, hidden) tensor per layer, or only the last tensor when
    ``output_all_encoded_layers=False``. With ``output_attentions=True`` a third item holds, per layer, the
    attention probabilities (batch, heads, seq, seq), the format bertviz takes.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True,
                 attn_implementation: str = "sdpa") -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config, attn_implementation)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_all_encoded_layers: bool = True,
                output_attentions: bool = False):
        mask_is_all_ones = check_inputs(self.config, input_ids, token_type_ids, attention_mask)
        embedding_output = self.embeddings(input_ids, token_type_ids)
        # A mask that hides nothing is dropped: the result is the same and SDPA can use its fastest kernel.
        mask = None if mask_is_all_ones else extended_attention_mask(attention_mask, embedding_output.dtype)
        encoded_layers, attentions = self.encoder(embedding_output, mask, output_all_encoded_layers,
                                                  output_attentions)
        pooled_output = self.pooler(encoded_layers[-1]) if self.pooler is not None else None
        if not output_all_encoded_layers:
            encoded_layers = encoded_layers[-1]
        if output_attentions:
            return encoded_layers, pooled_output, tuple(attentions)
        return encoded_layers, pooled_output


def parameter_count_by_block(model: BertModel) -> dict[str, int]:
    """Parameters of each block of a BertModel, in data-flow order: the embedding tables, each layer's attention
    and feed-forward halves, the pooler (a tied matrix counts once)."""
    counts = {f"embeddings.{name}": sum(p.numel() for p in m.parameters())
              for name, m in model.embeddings.named_children() if any(True for _ in m.parameters())}
    for i, layer in enumerate(model.encoder.layer):
        counts[f"layer {i} attention"] = sum(p.numel() for p in layer.attention.parameters())
        counts[f"layer {i} feed-forward"] = sum(p.numel() for m in (layer.intermediate, layer.output)
                                                for p in m.parameters())
    if model.pooler is not None:
        counts["pooler"] = sum(p.numel() for p in model.pooler.parameters())
    return counts


# The 2019 library exported the task models from modeling.py too; they live in heads.py.
from .heads import (  # noqa: E402
    BertForMaskedLM, BertForMultipleChoice, BertForNextSentencePrediction, BertForPreTraining,
    BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification,
)
