"""The BERT encoder (Devlin et al. 2019, section 3; Vaswani et al. 2017, section 3.2), top to bottom.

Parameter names and nesting follow Google's TensorFlow checkpoint as Hugging Face spells it
(``embeddings.word_embeddings``, ``encoder.layer.N.attention.self.query``, ``pooler.dense``), so real
weights load by name (``checkpoints``, one layer below). Self-attention is one of the functions in
``ATTENTION_FUNCTIONS``, picked once when the model is built: "sdpa" (PyTorch's fused
``scaled_dot_product_attention``, the default) or "explicit" (the formula written out, which also returns the
probabilities for heat maps and bertviz). ``model.attn_implementation`` says which one runs; a call with
``output_attentions=True`` runs the explicit one, since only it has the probabilities.

Input checks (the rules are in ``minibert.inputs``): every forward checks shapes and dtypes (free) and, while
``model.check_inputs`` is True (the default), the values of ids, segment ids and mask (one host sync): a bad id
is a readable ValueError instead of an index error or a CUDA device-side assert. A training loop whose collate
has already checked its batches turns the value checks off after the first batch with
``model.check_inputs = False`` (it reaches every minibert model inside, the task heads' label checks included)
and back on when it is done.

Gradient checkpointing: ``model.bert.encoder.gradient_checkpointing = True`` recomputes each layer's
activations in the backward pass instead of keeping them (less memory, about a third more compute).
"""
from __future__ import annotations

import inspect
import logging
import math
import os
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from minibert import checkpoints
# 0.6.2 exported these names from modeling; kept importable from here
from minibert.assets import CONFIG_NAME, HUB_URL, PRETRAINED_NAMES, WEIGHTS_NAME  # noqa: F401
from minibert.config import ACT2FN, BertConfig
from minibert.inputs import check_model_inputs

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# Modules, smallest first, in the order the data flows
# ----------------------------------------------------------------------------------------------------------

def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact erf GELU BERT was trained with, x * Phi(x) (0.6.2's ``modeling.gelu``)."""
    return F.gelu(x)


class BertLayerNorm(nn.LayerNorm):
    """0.6.2's name for LayerNorm with TF's epsilon: ``BertLayerNorm(hidden_size, eps=1e-12)``."""

    def __init__(self, hidden_size: int, eps: float = 1e-12) -> None:
        super().__init__(hidden_size, eps=eps)


class BertEmbeddings(nn.Module):
    """Token + position + segment embeddings, summed, then LayerNorm and dropout (paper figure 2)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)  # [PAD]'s row gets no gradient
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


# Attention functions: q, k, v (batch, heads, seq, head_dim), an additive mask (batch, 1, 1, seq) or None and
# the dropout probability -> (context (batch, heads, seq, head_dim), probabilities or None)

def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d) + mask) v, written out (Vaswani et al. eq. 1). Dropout drops whole attention
    links, as the original does; the probabilities are returned before dropout (batch, heads, seq, seq)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))  # (batch, heads, seq, seq)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = scores.softmax(dim=-1)
    dropped = F.dropout(probs, dropout_p) if dropout_p > 0 else probs
    return dropped @ v, probs


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   dropout_p: float = 0.0) -> tuple[torch.Tensor, None]:
    """The same formula through PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient
    kernels on a GPU, a fused C++ kernel on a CPU, dropout included); it never builds the probabilities."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=dropout_p), None


AttentionFunction = Callable[..., "tuple[torch.Tensor, torch.Tensor | None]"]
ATTENTION_FUNCTIONS: dict[str, AttentionFunction] = {"sdpa": sdpa_attention, "explicit": explicit_attention}
ATTN_IMPLEMENTATIONS = tuple(ATTENTION_FUNCTIONS)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, softmax(Q K^T / sqrt(d) + mask) V (Vaswani et al. 3.2.1).

    ``attn_implementation`` names the function from ``ATTENTION_FUNCTIONS`` that runs: "sdpa" (fused, the
    default) or "explicit" (the formula written out). A call that asks for the probabilities runs the explicit
    one, the only one that has them.
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
        if value not in ATTENTION_FUNCTIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {value!r}")
        self._attn_implementation = value
        self.attention_function: AttentionFunction = ATTENTION_FUNCTIONS[value]

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
        attend = explicit_attention if output_attentions else self.attention_function
        context, probs = attend(q, k, v, attention_mask, self.dropout.p if self.training else 0.0)
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
    """The stack of ``num_hidden_layers`` BertLayers.

    ``gradient_checkpointing`` (default False): when True and training with gradients, each layer runs under
    ``torch.utils.checkpoint`` (non-reentrant): its activations are recomputed in the backward pass instead of
    kept, with the same dropout masks (the RNG state is replayed), so the gradients are those without it.
    """

    gradient_checkpointing: bool = False

    def __init__(self, config: BertConfig, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, attn_implementation)
                                   for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_all_encoded_layers: bool = True, output_attentions: bool = False,
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns the output of every layer (or only the last, in a one-item list) and the probabilities."""
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        encoded_layers, attentions = [], []
        for layer in self.layer:
            if recompute:
                hidden_states, probs = torch.utils.checkpoint.checkpoint(
                    layer, hidden_states, attention_mask, output_attentions, use_reentrant=False)
            else:
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
    """Base of every minibert model: holds the config, initializes like the original, loads and saves.

    A task model declares its heads in ``checkpoint_heads``: the prefix of each head's weights in a checkpoint
    and what the head is (``{"classifier.": "classifier"}``). Loading a checkpoint that lacks them warns that
    the head starts from random values; a checkpoint's weights for another model's head (any class's
    ``checkpoint_heads``, see :func:`known_checkpoint_heads`) are skipped.
    """

    checkpoint_heads: ClassVar[dict[str, str]] = {}

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a minibert BertConfig, got {type(config).__name__}; build one with "
                            "BertConfig(...) or BertConfig.from_json_file(path)")
        self.config = config
        self._check_inputs = True

    @property
    def check_inputs(self) -> bool:
        """Whether forward checks the values of its inputs and labels (one host sync each; shapes always)."""
        return self._check_inputs

    @check_inputs.setter
    def check_inputs(self, enabled: bool) -> None:
        for module in self.modules():  # the task model and the BertModel inside it
            if isinstance(module, BertPreTrainedModel):
                module._check_inputs = bool(enabled)

    @property
    def attn_implementation(self) -> str:
        """The attention function that runs ("sdpa" or "explicit"; both names, comma-separated, if mixed)."""
        names = {m.attn_implementation for m in self.modules() if isinstance(m, BertSelfAttention)}
        return ",".join(sorted(names))

    def init_weights(self) -> None:
        self.apply(lambda m: init_bert_weights(m, self.config.initializer_range))

    def init_bert_weights(self, module: nn.Module) -> None:
        """Initialize one module as BERT does: 2019 custom heads call ``self.apply(self.init_bert_weights)``."""
        init_bert_weights(module, self.config.initializer_range)

    def set_attn_implementation(self, attn_implementation: str) -> "BertPreTrainedModel":
        """Switch every self-attention to "sdpa" (fused, fast) or "explicit" (the written-out formula)."""
        for module in self.modules():
            if isinstance(module, BertSelfAttention):
                module.attn_implementation = attn_implementation
        return self

    @classmethod
    def config_kwargs(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments a saved config.json implies: ``num_labels`` (from ``id2label``) for the models
        that take it."""
        if "num_labels" not in inspect.signature(cls.__init__).parameters:
            return {}
        if "id2label" in raw:
            return {"num_labels": len(raw["id2label"])}
        if "num_labels" in raw:
            return {"num_labels": int(raw["num_labels"])}
        return {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, *inputs: Any, strict: bool = True,
                        config: BertConfig | None = None, attn_implementation: str = "sdpa",
                        state_dict: dict[str, torch.Tensor] | None = None, cache_dir: str | os.PathLike | None = None,
                        from_tf: bool = False, **model_kwargs: Any):
        """Build this model from a checkpoint: None (the packaged all-MiniLM-L6-v2), a folder, a hub name, or a
        2019 ``.tar.gz`` archive (``bert_config.json`` + ``pytorch_model.bin``).

        ``inputs`` and ``model_kwargs`` go to the constructor (e.g. ``num_labels=3``; by default read from
        config.json); ``config`` overrides the folder's config (e.g. to change dropout); ``attn_implementation``
        is "sdpa" (fused, default) or "explicit". As in 2019, ``state_dict`` replaces the file's weights and
        ``cache_dir`` is where a hub name is downloaded. Heads the checkpoint lacks start from random values (a
        WARNING says so); see ``checkpoints.load_state_dict_into``. Returned in eval mode, like transformers'.
        """
        if from_tf:
            raise ValueError("from_tf=True: minibert reads PyTorch weights (model.safetensors or pytorch_model.bin), "
                             "not a TensorFlow checkpoint; convert it once with transformers: "
                             "BertForPreTraining.from_pretrained(path, from_tf=True).save_pretrained(folder)")
        with checkpoints.checkpoint_folder(name_or_path, cache_dir) as folder:
            file_config, raw = checkpoints.read_config(folder)
            if not inputs:  # positional constructor arguments (2019's *inputs) replace what config.json implies
                for key, value in cls.config_kwargs(raw).items():
                    model_kwargs.setdefault(key, value)
            model = cls(config or file_config, *inputs, **model_kwargs)
            if state_dict is None:
                weights = checkpoints.find_weights(folder)
                state_dict, source = checkpoints.read_state_dict(weights), str(weights)
            else:
                source = "state_dict passed to from_pretrained"
            checkpoints.load_state_dict_into(model, state_dict, strict=strict, source=source,
                                             known_heads=known_checkpoint_heads())
        return model.set_attn_implementation(attn_implementation).eval()

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``config.json`` + ``model.safetensors`` (loadable by minibert and by transformers)."""
        checkpoints.save_pretrained(self, folder)


def known_checkpoint_heads() -> set[str]:
    """The checkpoint prefixes of every model class's heads, read from the subclasses of BertPreTrainedModel
    when asked: weights a checkpoint holds for another model's head are then skipped instead of refused."""
    prefixes: set[str] = set()
    classes = [BertPreTrainedModel]
    while classes:
        cls = classes.pop()
        prefixes.update(cls.checkpoint_heads)
        classes.extend(cls.__subclasses__())
    return prefixes


def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, seq) of 1/0 -> (batch, 1, 1, seq) additive mask: 0 where a key may be attended, very negative
    where it is padding, broadcast over heads and query positions (added to the scores before softmax)."""
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


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
        mask_is_all_ones = check_model_inputs(self.config, input_ids, token_type_ids, attention_mask,
                                              self._check_inputs)
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


# pytorch-pretrained-bert 0.6.2's modeling names: the file names, and its released models (where they are now;
# the 2019 S3 archives are gone). gelu and BertLayerNorm are with the modules above.
BERT_CONFIG_NAME = "bert_config.json"
PRETRAINED_MODEL_ARCHIVE_MAP = {name: f"{HUB_URL}/{name}" for name in PRETRAINED_NAMES}
