"""`mlc quantize` as passes: pick layers, quantize them (DGMS, RTN or k-means), pack them.

`apply_packed` requires a typed Graph and packed weights for some of its weights; it ensures a
Graph where each of those weights is a uint8 bitstream plus a codebook feeding one
CodebookDequantize node that recreates the value under the weight's old name, so every
consumer is unchanged. `quantize_model` runs the whole job and measures each method against
the fp32 model on the same inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from mlc.compiler.ir.graph import Graph, Node
from mlc.runtime import random_inputs, run

from .baselines import Quantized, gmm_quantized, kmeans_sharing, round_to_nearest
from .codebook import PackedWeight
from .cotune import TuneOptions, cotune
from .data import LABELS, QuantData
from .gmm import GMMQuantizer
from .select import Layer, select_layers

METHODS = ("gmm", "rtn", "kmeans")
# Soft weights of big tensors come from a 16384-point table (relative error ~3e-4 on trained
# layers, ~30x faster than exact per-value evaluation; see GMMQuantizer._interpolated).
SOFT_WEIGHT_GRID = 16384


@dataclass(frozen=True)
class QuantizeOptions:
    method: str = "gmm"
    bits: int = 4
    skip: tuple[str, ...] = ()
    layer_bits: dict = field(default_factory=dict)
    tau: float = 0.01
    baselines: tuple[str, ...] = ("rtn", "kmeans")
    tune: TuneOptions = TuneOptions()
    seed: int = 0
    # Without data: refine the k-means start by EM on the weights' likelihood. Off by default:
    # likelihood is not reconstruction error, and on MiniLM at 4 bits EM lowered the output
    # cosine from 0.951 to 0.892 (bench/quant.py history in the closing note).
    em_fit: bool = False


@dataclass
class QuantizeResult:
    graph: Graph  # the chosen method's packed graph
    layers: list[Layer]
    packed: dict[str, dict[str, PackedWeight]]  # method -> weight -> packed
    fidelity: dict[str, dict]  # method (and "fp32") -> model-level metrics
    layer_metrics: dict[str, dict[str, dict]]  # method -> weight -> metrics
    quantizers: dict[str, GMMQuantizer]
    tuned: Graph  # float weights after co-tuning (the original graph when not tuned)
    history: list[float]
    seconds: float


def apply_packed(graph: Graph, packed: dict[str, PackedWeight]) -> Graph:
    """Replace each packed weight by packed indices + codebook -> CodebookDequantize."""
    weights = {name: array for name, array in graph.weights.items() if name not in packed}
    nodes = []
    for name, item in packed.items():
        weights[f"{name}.packed"] = item.packed
        weights[f"{name}.codebook"] = item.codebook.astype(graph.weights[name].dtype)
        nodes.append(Node("CodebookDequantize", (f"{name}.packed", f"{name}.codebook"), (name,),
                          {"bits": item.bits, "shape": tuple(item.shape), "axis": item.axis},
                          f"dequantize_{name}"))
    return Graph.build(graph.name, graph.inputs, nodes + list(graph.nodes), graph.outputs,
                       weights)


def _pack(quantized: Quantized) -> PackedWeight:
    return PackedWeight.from_indices(quantized.indices, quantized.codebook, quantized.bits,
                                     quantized.axis)


def _baseline(method: str, weight: np.ndarray, layer: Layer) -> PackedWeight:
    if method == "rtn":
        return _pack(round_to_nearest(weight, layer.bits, layer.axis))
    return _pack(kmeans_sharing(weight, layer.bits))


def _outputs(graph: Graph, batches: list[dict]) -> list[dict[str, np.ndarray]]:
    return [run(graph, {name: batch[name] for name in graph.inputs}) for batch in batches]


def _compare(outputs, reference, data: QuantData | None) -> dict:
    """Cosine similarity and relative error of all float outputs (real samples only),
    accuracy when the data has labels."""
    counts = data.counts if data else [None] * len(outputs)
    got, want, correct = [], [], []
    for out, ref, count, batch in zip(outputs, reference, counts,
                                      data.batches if data else [None] * len(outputs)):
        for name, value in out.items():
            if np.issubdtype(value.dtype, np.floating):
                got.append(value[:count].astype(np.float64).ravel())
                want.append(ref[name][:count].astype(np.float64).ravel())
        if data is not None and data.labels:
            logits = next(iter(out.values()))[:count]
            correct.append(logits.argmax(-1) == batch[LABELS][:count])
    a, b = np.concatenate(got), np.concatenate(want)
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)
    metrics = {"output_cosine": float(np.clip(cosine, -1.0, 1.0)),  # rounding can pass 1
               "output_rel_err": float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-30))}
    if correct:
        metrics["accuracy"] = float(np.concatenate(correct).mean())
    return metrics


def storage_bytes(method: str, item: PackedWeight) -> int:
    """Bytes a deployment needs: packed indices plus the codebook, except that RTN's per-channel
    rows are affine (scale * (q - zero_point)), so a real RTN kernel keeps 2 floats per
    channel, not 2^bits."""
    if method == "rtn" and item.codebook.ndim == 2:
        return int(item.packed.nbytes + item.codebook.shape[0] * 2 * 4)
    return int(item.nbytes())


def _layer_metrics(method: str, dense: np.ndarray, item: PackedWeight) -> dict:
    approx = item.dequantize()
    return {"bits": item.bits, "zero_fraction": float(np.mean(approx == 0)),
            "compression_ratio": float(dense.size * 4 / storage_bytes(method, item)),
            "weight_rel_err": float(np.linalg.norm(approx - dense) /
                                    (np.linalg.norm(dense) + 1e-30))}


def quantize_model(graph: Graph, options: QuantizeOptions = QuantizeOptions(),
                   data: QuantData | None = None, eval_data: QuantData | None = None,
                   progress: Callable | None = None) -> QuantizeResult:
    """Quantize every selected layer with `options.method` (plus the baselines at the same
    bits), co-tuning DGMS with the task when `data` is given; metrics on `eval_data` (default:
    `data`, else 4 batches of random inputs)."""
    start = time.perf_counter()
    notify = progress or (lambda message: None)
    layers = select_layers(graph, options.bits, skip=options.skip,
                           layer_bits=options.layer_bits)
    methods = [options.method] + [m for m in options.baselines if m != options.method]
    quantizers, tuned, history = {}, graph, []
    if "gmm" in methods:
        for k, layer in enumerate(layers):
            notify(f"k-means init {k + 1}/{len(layers)}: {layer.weight}")
            weight = torch.tensor(np.asarray(graph.weights[layer.weight], np.float32))
            quantizers[layer.weight] = GMMQuantizer(weight, layer.bits, tau=options.tau,
                                                    seed=options.seed, grid=SOFT_WEIGHT_GRID)
        if data is not None:
            tuned, history = cotune(graph, layers, quantizers, data, options.tune, notify)
        elif options.em_fit:
            for k, layer in enumerate(layers):
                notify(f"GMM fit {k + 1}/{len(layers)}: {layer.weight}")
                quantizers[layer.weight].fit(torch.tensor(
                    np.asarray(graph.weights[layer.weight], np.float32)))
    packed: dict[str, dict[str, PackedWeight]] = {}
    for method in methods:
        source = tuned if method == "gmm" else graph
        packed[method] = {}
        for layer in layers:
            weight = np.asarray(source.weights[layer.weight], np.float32)
            if method == "gmm":
                with torch.no_grad():
                    item = _pack(gmm_quantized(quantizers[layer.weight],
                                               torch.tensor(weight)))
            else:
                item = _baseline(method, weight, layer)
            packed[method][layer.weight] = item
    eval_data = eval_data or data
    batches = eval_data.batches if eval_data else [random_inputs(graph, seed=options.seed + k)
                                                   for k in range(4)]
    notify("measuring fidelity")
    reference = _outputs(graph, batches)
    fidelity = {"fp32": _compare(reference, reference, eval_data)}
    graphs = {}
    for method in methods:
        base = tuned if method == "gmm" else graph
        graphs[method] = apply_packed(base, packed[method])
        fidelity[method] = _compare(_outputs(graphs[method], batches), reference, eval_data)
        fidelity[method]["compression_ratio"] = _model_ratio(method, layers, packed[method])
    layer_metrics = {method: {layer.weight: _layer_metrics(
        method, np.asarray(graph.weights[layer.weight], np.float32), packed[method][layer.weight])
        for layer in layers} for method in methods}
    return QuantizeResult(graphs[options.method], layers, packed, fidelity, layer_metrics,
                          quantizers, tuned, history, time.perf_counter() - start)


def _model_ratio(method: str, layers: list[Layer], packed: dict[str, PackedWeight]) -> float:
    """fp32 bytes of the quantized layers over their stored bytes (see storage_bytes)."""
    dense = sum(layer.size * 4 for layer in layers)
    return float(dense / sum(storage_bytes(method, item) for item in packed.values()))
