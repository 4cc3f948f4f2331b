"""Training pieces shared by every rank and the single-process reference: data, loss, optimizer.

The loss of a micro-batch is its *share* of the whole-batch mean (sum over the micro-batch,
divided by the batch's element count), so the micro-batch losses and gradients add up to those
of one full-batch step, which `reference_step` computes for `mlc train --check`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph
from mlc.compiler.ir.serialize import read_npz
from mlc.compiler.ir.types import is_float, np_dtype
from mlc.compiler.quant.data import check_array_values
from mlc.compiler.safe_io import check_number
from mlc.runtime.torch_executor import TorchGraphModule, to_torch

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week; far larger values overflow torch's timeout


@dataclass(frozen=True)
class TrainConfig:
    """Everything a rank needs, picklable for spawned processes; checked when made."""

    directory: str
    steps: int = 1
    data: str | None = None
    lr: float = 0.01
    optimizer: str = "sgd"
    seed: int = 0
    check: bool = False
    timeout_s: float = 120.0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    result_path: str | None = None
    error_dir: str | None = None
    launcher_pid: int | None = None  # workers exit when this process ends (see lifeline.py)
    launcher_start: int | None = None
    temp_paths: tuple[str, ...] = ()  # removed by a worker that outlives its launcher

    def __post_init__(self):
        check_number(self.steps, "steps", low=1, integer=True)
        check_number(self.lr, "learning rate", low=0, low_open=True)
        check_number(self.seed, "seed", low=0, high=2**32 - 1, integer=True)
        check_number(self.timeout_s, "timeout (seconds)", low=0, low_open=True, high=MAX_TIMEOUT_S)
        if self.optimizer not in OPTIMIZERS:
            raise MlcError(f"unknown optimizer {self.optimizer!r}; use {' or '.join(OPTIMIZERS)}")


def load_data(graph: Graph, batch: int, path: str | None, seed: int) -> dict[str, np.ndarray]:
    """Model inputs plus `labels` (cross-entropy) or `targets` (MSE), dimension 0 a multiple of
    the batch. Without a file: deterministic random inputs and MSE targets."""
    output = graph.types[graph.outputs[0]]
    if path is None:
        rng = np.random.default_rng(seed)
        data = {name: _random(rng, t.shape, t.dtype) for name, t in graph.inputs.items()}
        data["targets"] = rng.standard_normal(output.shape).astype(np_dtype(output.dtype))
        return data
    data = read_npz(path, "training data .npz (model inputs by name plus labels or targets)")
    missing = [name for name in graph.inputs if name not in data]
    if missing:
        raise MlcError(f"{path}: missing model input(s) {missing}; it needs {list(graph.inputs)}")
    if ("labels" in data) == ("targets" in data):
        raise MlcError(f"{path}: needs exactly one of `labels` (cross-entropy) or `targets` "
                       f"(MSE); it has {sorted(data)}")
    wanted = {name: t.shape for name, t in graph.inputs.items()}
    wanted["targets"] = output.shape
    for name, shape in wanted.items():
        if name not in data:
            continue
        check_array_values(data[name], f"{path}: {name!r}")
        if data[name].ndim != len(shape) or data[name].shape[1:] != shape[1:]:
            raise MlcError(f"{path}: {name!r} has shape {data[name].shape}; the model wants "
                           f"(rows, {', '.join(map(str, shape[1:]))})")
    rows = {name: len(value) if value.ndim else 0 for name, value in data.items()}
    if len(set(rows.values())) != 1 or 0 in rows.values() or next(iter(rows.values())) % batch:
        raise MlcError(f"{path}: every array needs the same number of rows, a multiple of the "
                       f"batch {batch} (at least one batch); got {rows}")
    if "labels" in data:
        _check_labels(data["labels"], output.shape, path)
    return data


def _check_labels(labels: np.ndarray, output_shape: tuple[int, ...], path) -> None:
    """Cross-entropy labels: integer class ids, one per output row (and per trailing position
    for outputs (rows, classes, d1, ...)), each within the output's classes."""
    if len(output_shape) < 2:
        raise MlcError(f"{path}: `labels` need a (rows, classes, ...) model output; it has shape "
                       f"{output_shape}. Use `targets` (MSE) instead")
    if labels.dtype.kind not in "iu" or labels.shape[1:] != output_shape[2:]:
        want = ", ".join(["rows", *map(str, output_shape[2:])])
        raise MlcError(f"{path}: `labels` must be integer class ids of shape ({want}); got "
                       f"{labels.dtype} {labels.shape}")
    classes = output_shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise MlcError(f"{path}: `labels` range from {labels.min()} to {labels.max()}; the "
                       f"model has {classes} classes (ids 0..{classes - 1})")


def _random(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    if is_float(dtype):
        return rng.standard_normal(shape).astype(np_dtype(dtype))
    return rng.integers(0, 2, shape).astype(np_dtype(dtype))


def batch_of(data: dict[str, np.ndarray], batch: int, step: int) -> dict[str, np.ndarray]:
    """The rows of training step `step` (cycling through the data)."""
    start = (step * batch) % len(next(iter(data.values())))
    return {name: value[start:start + batch] for name, value in data.items()}


def micro_loss(output: torch.Tensor, batch: dict[str, torch.Tensor],
               batch_size: int) -> torch.Tensor:
    """This micro-batch's share of the whole-batch mean loss (cross-entropy or MSE)."""
    if "labels" in batch:
        labels = batch["labels"].long()
        return torch.nn.functional.cross_entropy(output, labels, reduction="sum") / batch_size
    targets = batch["targets"].to(output.dtype)
    per_row = output[0].numel() if output.dim() else 1
    return ((output - targets) ** 2).sum() / (batch_size * per_row)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    return OPTIMIZERS[name](params, lr=lr)



def as_tensors(graph: Graph, arrays: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    """Input arrays as tensors of their IR dtype; labels/targets as they are."""
    return {name: (to_torch(value, graph.inputs[name].dtype) if name in graph.inputs
                   else torch.from_numpy(np.ascontiguousarray(value))).to(device)
            for name, value in arrays.items()}


def reference_step(graph: Graph, batch: dict[str, np.ndarray]) -> tuple[float, dict]:
    """Loss and weight gradients of one full-batch step of the whole graph in one process."""
    module = TorchGraphModule(graph)
    tensors = as_tensors(graph, batch, "cpu")
    output = module(**{name: tensors[name] for name in graph.inputs})[graph.outputs[0]]
    loss = micro_loss(output, tensors, len(output))
    loss.backward()
    grads = {name: (w.grad.numpy() if w.grad is not None else np.zeros(tuple(w.shape)))
             for name, w in module.weight_tensors().items() if w.requires_grad}
    return float(loss.detach()), grads


def compare(loss: float, grads: dict, ref_loss: float, ref_grads: dict,
            tolerance: float = 1e-5) -> dict:
    """Relative errors (max-abs normalised) of the loss and every gradient; `ok` if all pass."""
    def rel(a, b) -> float:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = max(float(np.abs(b).max(initial=0.0)), 1e-12)
        return float(np.abs(a - b).max(initial=0.0)) / scale

    missing = sorted(set(ref_grads) - set(grads))
    errors = {name: rel(grads[name], g) for name, g in ref_grads.items() if name in grads}
    loss_error = rel(loss, ref_loss)
    worst = max([loss_error, *errors.values()])
    return {"ok": worst <= tolerance and not missing, "tolerance": tolerance,
            "loss": loss, "reference_loss": ref_loss, "loss_rel_error": loss_error,
            "max_grad_rel_error": max(errors.values(), default=0.0),
            "grad_rel_errors": errors, "missing_grads": missing}
