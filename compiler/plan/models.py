"""LLM configs from `specs/models/*.json`: the shapes a planner or serving engine needs.

    >>> model = load_model_config("llama-3.1-8b")
    >>> model.kv_bytes_per_token  # 2 (K, V) * 32 layers * 8 KV heads * 128 * 2 bytes
    131072
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources

from mlc.compiler.errors import MlcError
from mlc.compiler.safe_io import check_number, read_json

# whole-number fields and their upper bounds (far beyond any published model)
_COUNTS = {"params": 10**14, "layers": 10_000, "hidden": 1 << 20, "heads": 1 << 14,
           "kv_heads": 1 << 14, "head_dim": 1 << 14, "ffn": 1 << 22, "vocab": 1 << 24,
           "bytes_per_param": 8}


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
    if key not in list_models():  # also keeps a name like ../hardware/h100 out of other folders
        raise MlcError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    source = _models_dir().joinpath(f"{key}.json")
    return model_from_dict(read_json(source, "model config (JSON)"), str(source))


def model_from_dict(doc: dict, where: str = "<dict>") -> ModelConfig:
    """Check a model config document field by field (names, types, whole positive numbers,
    heads divisible by KV heads) and build a ModelConfig; MlcError names file and field."""
    if not isinstance(doc, dict):
        raise MlcError(f"{where}: a model config must be a JSON object")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    missing, unknown = sorted(fields - set(doc)), sorted(set(doc) - fields)
    if missing or unknown:
        raise MlcError(f"{where}: model config " + "; ".join(
            ([f"lacks field(s) {', '.join(missing)}"] if missing else [])
            + ([f"has unknown field(s) {', '.join(unknown)}"] if unknown else [])))
    checked = {}
    for key, value in doc.items():
        if key in _COUNTS:
            checked[key] = check_number(value, f"{where}: {key}", low=1, high=_COUNTS[key],
                                        integer=True)
        elif not isinstance(value, str):
            raise MlcError(f"{where}: {key} must be a string, got {value!r}")
        else:
            checked[key] = value
    if checked["heads"] % checked["kv_heads"]:
        raise MlcError(f"{where}: {checked['heads']} attention heads are not a multiple of "
                       f"{checked['kv_heads']} KV heads")
    return ModelConfig(**checked)
