"""LLM configs from `specs/models/*.json`: the shapes a planner or serving engine needs.

    >>> model = load_model_config("llama-3.1-8b")
    >>> model.kv_bytes_per_token  # 2 (K, V) * 32 layers * 8 KV heads * 128 * 2 bytes
    131072
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from mlc.compiler.errors import MlcError


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer's public config; bytes_per_param 2 for bf16/fp16 weights."""

    name: str
    full_name: str
    hf_repo: str
    params: int
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    bytes_per_param: int
    source: str

    @property
    def weight_bytes(self) -> int:
        return self.params * self.bytes_per_param

    @property
    def embedding_bytes(self) -> int:
        """One vocab x hidden matrix (input embedding or the untied LM head)."""
        return self.vocab * self.hidden * self.bytes_per_param

    @property
    def layer_bytes(self) -> float:
        """Mean bytes of one transformer layer: weights less embedding and LM head."""
        return (self.weight_bytes - 2 * self.embedding_bytes) / self.layers

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of one token over all layers, 2-byte cache."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2


def _models_dir():
    return resources.files("mlc.specs").joinpath("models")


def list_models() -> list[str]:
    """Names of the bundled model configs, sorted."""
    return sorted(entry.name.removesuffix(".json") for entry in _models_dir().iterdir()
                  if entry.name.endswith(".json"))


def load_model_config(name: str) -> ModelConfig:
    """A bundled config by name (`llama-3.1-8b`, `qwen2.5-32b`, ...); MlcError lists known ones."""
    key = str(name).strip().lower()
    source = _models_dir().joinpath(f"{key}.json")
    if not key or not source.is_file():
        raise MlcError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    doc = json.loads(source.read_text())
    return ModelConfig(**doc)
