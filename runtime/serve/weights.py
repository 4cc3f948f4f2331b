"""Base weights of the serving model in safetensors with Hugging Face Llama tensor names
(`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, ..., `lm_head.weight`),
so a checkpoint of a Llama-architecture model with a matching config loads unchanged."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mlc.compiler.errors import MlcError

from .model import LlamaModel

_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names; ints or bools are not weights


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

    Ensures: the header is checked before any tensor is read, and every tensor the model needs
    is present with its exact shape, a floating dtype and only finite values, else MlcError
    naming the file and the first bad tensors (and nothing is copied); extra tensors (rotary
    tables, ...) are ignored; LoRA adapters are left untouched."""
    targets = hf_tensors(model)
    try:
        with safe_open(str(path), framework="pt") as archive:
            _check_header(archive, targets, path, model.config.name)
            # cast first: a float64 value beyond float32's range becomes inf, caught below
            loaded = {name: archive.get_tensor(name).to(torch.float32) for name in targets}
    except (OSError, SafetensorError) as err:
        raise MlcError(f"{path}: cannot read safetensors weights "
                       f"({getattr(err, 'strerror', None) or err})") from None
    for name, tensor in loaded.items():
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise MlcError(f"{path}: tensor {name} holds {bad} NaN or infinite value(s) "
                           "(as float32); these weights cannot serve")
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(loaded[name])
    return model


def _check_header(archive, targets: dict[str, torch.Tensor], path: Path, config: str) -> None:
    """Names, shapes and dtypes from the header alone (no tensor data read yet)."""
    present = set(archive.keys())
    missing = [name for name in targets if name not in present]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                           else "")
        raise MlcError(f"{path}: missing tensor(s) {shown} for {config}; is this a "
                       "checkpoint of the same Llama config?")
    for name, target in targets.items():
        info = archive.get_slice(name)
        shape, dtype = tuple(info.get_shape()), info.get_dtype()
        if shape != tuple(target.shape):
            raise MlcError(f"{path}: tensor {name} has shape {shape}, {config} needs "
                           f"{tuple(target.shape)}")
        if dtype not in FLOAT_DTYPES:
            raise MlcError(f"{path}: tensor {name} has dtype {dtype}; weights must be one of "
                           f"{', '.join(FLOAT_DTYPES)}")
