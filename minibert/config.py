"""BertConfig: the hyperparameters of a BERT encoder, the bottom layer of minibert (everything else builds on it).

Field names are those of Google's ``bert_config.json`` (Devlin et al. 2019, section 3), so the released config
files and Hugging Face ``config.json`` files read directly; the values are validated when the config is built,
with messages that say what to change.
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
    pad_token_id: int = 0  # the [PAD] id: its word embedding gets no gradient (Hugging Face config.json's key)
    # pytorch-pretrained-bert's first argument: an int (the vocab size) or the path of a bert_config.json
    vocab_size_or_config_json_file: dataclasses.InitVar[int | str | os.PathLike | None] = None

    def __post_init__(self, vocab_size_or_config_json_file: int | str | os.PathLike | None = None) -> None:
        source = vocab_size_or_config_json_file
        if source is None and isinstance(self.vocab_size, (str, os.PathLike)):
            source = self.vocab_size  # BertConfig("bert_config.json"), as 2019 scripts wrote it
        if isinstance(source, (str, os.PathLike)):
            if not os.path.isfile(source):
                raise ValueError(f"BertConfig.vocab_size must be a positive int or, as in 2019, the path of a "
                                 f"config JSON file; got {source!r}, which is not a file")
            loaded = type(self).from_json_file(source)
            for f in dataclasses.fields(self):
                object.__setattr__(self, f.name, getattr(loaded, f.name))
            return
        if source is not None:
            object.__setattr__(self, "vocab_size", source)
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
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACT2FN:
            raise ValueError(f"unknown hidden_act={self.hidden_act!r}; use one of {sorted(ACT2FN)} "
                             "(BERT uses 'gelu', the exact erf form)")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig.{name} must be a probability in [0, 1), got {value!r}")
        if not isinstance(self.initializer_range, (int, float)) or not 0 <= self.initializer_range < math.inf:
            raise ValueError(f"initializer_range must be >= 0 and finite (BERT uses 0.02), got "
                             f"{self.initializer_range!r}")
        pad = self.pad_token_id
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.vocab_size:
            raise ValueError(f"pad_token_id must be the [PAD] token's id, an int in [0, vocab_size={self.vocab_size}), "
                             f"got {pad!r}; bert-base vocabularies have [PAD] at 0 (tokenizer.pad_token_id)")
        if not isinstance(self.layer_norm_eps, (int, float)) or not 0 < self.layer_norm_eps < math.inf:
            raise ValueError(f"layer_norm_eps must be > 0 and finite (BERT uses 1e-12), got "
                             f"{self.layer_norm_eps!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BertConfig":
        """Keep the BERT fields of a Google ``bert_config.json`` or an HF ``config.json``; ignore the rest (and a
        ``pad_token_id`` of null, which some config.json files write: [PAD] is then id 0)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(k for k in values if k not in fields)
        if ignored:
            logger.debug("BertConfig ignores keys %s", ignored)
        return cls(**{k: v for k, v in values.items() if k in fields and not (k == "pad_token_id" and v is None)})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        """Read a Google ``bert_config.json`` or a Hugging Face ``config.json`` (unknown keys are ignored);
        every error names the file."""
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a JSON config ({err}); a BERT config is one JSON object such as "
                             '{"hidden_size": 768, ...}: download it again or fix it') from None
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object of config fields, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from None

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
