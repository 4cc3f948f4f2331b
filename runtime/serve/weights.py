"""Base weights of the serving model in safetensors with Hugging Face Llama tensor names
(`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, ..., `lm_head.weight`),
so a checkpoint of a Llama-architecture model with a matching config loads unchanged."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mlc.compiler.errors import MlcError

from .model import LlamaModel

_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def hf_tensors(model: LlamaModel) -> dict[str, torch.Tensor]:
    """The model's base (non-LoRA) tensors under their Hugging Face Llama names."""
    tensors = {"model.embed_tokens.weight": model.embed_tokens,
               "model.norm.weight": model.norm.weight, "lm_head.weight": model.lm_head}
    for i, layer in enumerate(model.layers):
        prefix = f"model.layers.{i}"
        for name in _ATTENTION:
            tensors[f"{prefix}.self_attn.{name}.weight"] = getattr(layer, name).weight
        for name in _MLP:
            tensors[f"{prefix}.mlp.{name}.weight"] = getattr(layer, name).weight
        tensors[f"{prefix}.input_layernorm.weight"] = layer.input_layernorm.weight
        tensors[f"{prefix}.post_attention_layernorm.weight"] = \
            layer.post_attention_layernorm.weight
    return tensors


def save_weights(model: LlamaModel, path: Path) -> None:
    """Write the base weights (float32) to a safetensors file."""
    save_file({name: t.detach().contiguous() for name, t in hf_tensors(model).items()},
              str(path))


def load_weights(model: LlamaModel, path: Path) -> LlamaModel:
    """Copy base weights from a safetensors file into `model` (cast to float32).

    Ensures: every tensor the model needs was present with its exact shape, else MlcError
    naming the first missing or mis-shaped ones; LoRA adapters are left untouched."""
    try:
        loaded = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise MlcError(f"{path}: cannot read safetensors weights ({err})") from None
    targets = hf_tensors(model)
    missing = [name for name in targets if name not in loaded]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                           else "")
        raise MlcError(f"{path}: missing tensor(s) {shown} for {model.config.name}; is this a "
                       "checkpoint of the same Llama config?")
    for name, target in targets.items():
        if tuple(loaded[name].shape) != tuple(target.shape):
            raise MlcError(f"{path}: tensor {name} has shape {tuple(loaded[name].shape)}, "
                           f"{model.config.name} needs {tuple(target.shape)}")
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(loaded[name].to(torch.float32))
    return model
