"""Co-tuning: train a model's float weights and its GMM quantizers together on the task loss.

`cotune` requires a typed Graph, the layers to quantize, one GMMQuantizer per layer and data
(labels, a callable's loss, or --distill inputs). It ensures a new Graph with the tuned float
weights (the quantizers are tuned in place); the model runs on soft weights while training,
as in DGMS, and the caller takes hard weights afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph
from mlc.runtime.torch_executor import TorchGraphModule

from .data import LABELS, QuantData
from .gmm import GMMQuantizer
from .select import Layer


@dataclass(frozen=True)
class TuneOptions:
    epochs: int = 3
    lr: float = 1e-3  # GMM parameters; float weights train at lr * weight_lr_scale
    weight_lr_scale: float = 0.1
    distill: bool = False  # match the fp32 model's outputs instead of a task loss
    seed: int = 0


class _SoftWeight(torch.nn.Module):
    """weight -> the quantizer's soft (differentiable) weight, as a TorchGraphModule transform."""

    def __init__(self, quantizer: GMMQuantizer):
        super().__init__()
        self.quantizer = quantizer

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.quantizer.soft_weight(weight)


def with_weights(graph: Graph, weights: dict[str, np.ndarray]) -> Graph:
    """The same graph with some weights replaced (same names, shapes and dtypes)."""
    merged = {**graph.weights, **weights}
    return Graph.build(graph.name, graph.inputs, graph.nodes, graph.outputs, merged)


def _float_outputs(outputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [t for t in outputs.values() if t.is_floating_point()]


def _loss_for(data: QuantData, distill: bool) -> Callable:
    """loss(outputs, batch, teacher_outputs) for the data's kind."""
    if data.loss_fn is not None and not distill:
        return lambda outputs, batch, teacher: data.loss_fn(outputs, batch)
    if distill:
        def distill_loss(outputs, batch, teacher):
            terms = [torch.mean((o - t) ** 2) / (torch.var(t) + 1e-12)
                     for o, t in zip(_float_outputs(outputs), teacher)]
            return sum(terms) / len(terms)
        return distill_loss
    if data.labels:
        def classification_loss(outputs, batch, teacher):
            logits = next(iter(outputs.values()))
            if logits.ndim != 2:
                raise MlcError(f"labels need a [batch, classes] output; the first output has "
                               f"shape {tuple(logits.shape)}")
            return torch.nn.functional.cross_entropy(logits, torch.as_tensor(batch[LABELS]))
        return classification_loss
    raise MlcError(f"--data {data.source}: no labels and no loss; add --distill to match the "
                   "fp32 model's outputs")


def cotune(graph: Graph, layers: list[Layer], quantizers: dict[str, GMMQuantizer],
           data: QuantData, options: TuneOptions = TuneOptions(),
           progress: Callable | None = None) -> tuple[Graph, list[float]]:
    """Train weights and quantizers on soft weights; returns (tuned graph, mean loss per epoch)."""
    torch.manual_seed(options.seed)
    loss_of = _loss_for(data, options.distill)
    # Soft weights of values owned by one component carry the others' e^(-1/tau)-small shares:
    # denormal floats, which slow CPU matmuls ~5x on MiniLM. Flush them for the training loop.
    flushed = torch.set_flush_denormal(True)
    try:
        return _train(graph, layers, quantizers, data, options, progress, loss_of)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _train(graph, layers, quantizers, data, options, progress, loss_of):
    module = TorchGraphModule(graph)
    teacher = None
    if options.distill:
        with torch.no_grad():
            teacher = [[t.clone() for t in _float_outputs(module(**_inputs(batch, graph)))]
                       for batch in data.batches]
    for layer in layers:
        module.set_weight_transform(layer.weight, _SoftWeight(quantizers[layer.weight]))
    weights = [p for p in module.weight_tensors().values() if isinstance(p, torch.nn.Parameter)]
    gmm_params = [p for q in quantizers.values() for p in q.parameters()]
    optimizer = torch.optim.Adam([
        {"params": weights, "lr": options.lr * options.weight_lr_scale},
        {"params": gmm_params, "lr": options.lr}])
    full = [k for k, count in enumerate(data.counts)
            if count == len(next(iter(data.batches[k].values())))]
    if not full:
        raise MlcError(f"--data {data.source}: {data.samples} sample(s), fewer than the model's "
                       f"batch of {len(next(iter(data.batches[0].values())))}; co-tuning needs "
                       "at least one full batch")
    order_rng = np.random.default_rng(options.seed)
    history = []
    for epoch in range(options.epochs):
        start, losses = time.perf_counter(), []
        for k in order_rng.permutation(full):
            batch = data.batches[k]
            outputs = module(**_inputs(batch, graph))
            loss = loss_of(outputs, batch, None if teacher is None else teacher[k])
            losses.append(float(loss.detach()))
            if not np.isfinite(losses[-1]):
                raise MlcError(_diverged(f"the loss is {losses[-1]} at epoch {epoch + 1}, "
                                         f"batch {len(losses)}", options))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if progress:
            progress(f"epoch {epoch + 1}/{options.epochs}: loss {history[-1]:.4g} "
                     f"({time.perf_counter() - start:.1f} s)")
    tuned = {name: p.detach().cpu().numpy().astype(graph.weights[name].dtype)
             for name, p in module.weight_tensors().items() if isinstance(p, torch.nn.Parameter)}
    broken = [name for name, array in tuned.items() if not np.isfinite(array).all()]
    if broken:
        raise MlcError(_diverged(f"weight {broken[0]!r} holds NaN or infinity after training",
                                 options))
    return with_weights(graph, tuned), history


def _diverged(what: str, options: TuneOptions) -> str:
    return (f"co-tuning diverged: {what}; lower the learning rate (--lr, now {options.lr:g}) "
            "or raise the temperature (--tau)")


def _inputs(batch: dict, graph: Graph) -> dict:
    return {name: batch[name] for name in graph.inputs}
