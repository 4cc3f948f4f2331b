"""Training and evaluation data for quantization: an .npz file or a Python callable.

An .npz holds one array per graph input (named like the input, batch first) and, optionally,
`labels` (integer class ids, one per sample) for a classification loss. The graph's own batch
size (its inputs' first dim) cuts the samples into batches; a short last batch is padded for
evaluation and dropped for training.

`package.module:callable` returns `(loss_fn, batches)`: `batches` is a list (or re-iterable)
of dicts holding every graph input plus whatever `loss_fn(outputs, batch) -> scalar tensor`
needs; `outputs` maps graph output names to tensors.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph

LABELS = "labels"


@dataclass
class QuantData:
    batches: list[dict[str, Any]]  # graph inputs (+ labels / extra keys) per batch
    counts: list[int]  # real (unpadded) samples per batch
    labels: bool  # batches carry integer labels (classification)
    loss_fn: Callable | None = None  # from a callable spec; None: built-in losses
    source: str = ""

    @property
    def samples(self) -> int:
        return sum(self.counts)


def load_data(spec: str, graph: Graph, option: str = "--data") -> QuantData:
    """Data for `graph` from an .npz path or `module:callable`; MlcError says what is wrong
    (naming `option`, the flag the spec came from)."""
    if spec.endswith(".npz") or Path(spec).is_file():
        return _from_npz(Path(spec), graph, option)
    if ":" in spec:
        return _from_callable(spec, graph, option)
    raise MlcError(f"{option} {spec}: not a file; give an .npz file or package.module:callable")


def _from_npz(path: Path, graph: Graph, option: str) -> QuantData:
    from mlc.compiler.ir.serialize import read_npz

    arrays = read_npz(path, f"{option} .npz file (model inputs by name, optional labels)")
    where = f"{option} {path}"
    missing = [name for name in graph.inputs if name not in arrays]
    if missing:
        raise MlcError(f"{where}: no array for model input(s) {missing}; it holds "
                       f"{sorted(arrays) or 'no arrays'}")
    for name, expected in graph.inputs.items():
        check_array_values(arrays[name], f"{where}: input {name!r}")
        got = arrays[name].shape
        if len(got) != len(expected.shape) or tuple(got[1:]) != tuple(expected.shape[1:]):
            raise MlcError(f"{where}: input {name!r} has per-sample shape {got[1:]}, the model "
                           f"expects {tuple(expected.shape[1:])} (batch first)")
    samples = {name: arrays[name].shape[0] for name in graph.inputs}
    labels = arrays.get(LABELS)
    if labels is not None:
        samples[LABELS] = labels.shape[0] if labels.ndim else 0
    if len(set(samples.values())) != 1 or 0 in samples.values():
        raise MlcError(f"{where}: arrays disagree on the number of samples, or hold none: "
                       f"{samples}")
    if labels is not None:
        check_labels(labels, graph, where)
    return batch_arrays({n: arrays[n] for n in graph.inputs}, labels, graph, str(path))


def check_array_values(array: np.ndarray, where: str) -> None:
    """Refuse arrays a model input cannot take without losing information: complex (the
    imaginary part would be dropped), non-numeric, or holding NaN / infinity."""
    if array.dtype.kind not in "biuf":
        raise MlcError(f"{where}: dtype {array.dtype} is not a real number type; save real "
                       "(float, int or bool) arrays")
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise MlcError(f"{where}: holds {bad} NaN or infinite value(s); clean the data first")


def check_labels(labels: np.ndarray, graph: Graph, where: str) -> None:
    """Labels are 1-D integer class ids within the classes of the first output
    ([batch, classes])."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise MlcError(f"{where}: '{LABELS}' must be a 1-D integer array of class ids; it is "
                       f"{labels.dtype} with shape {labels.shape}")
    output = graph.types[graph.outputs[0]]
    if output.rank != 2:
        raise MlcError(f"{where}: '{LABELS}' need a [batch, classes] first output; "
                       f"{graph.outputs[0]!r} has shape {output.shape}")
    classes = output.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise MlcError(f"{where}: '{LABELS}' range from {labels.min()} to {labels.max()}; the "
                       f"model has {classes} classes (ids 0..{classes - 1})")


def batch_arrays(inputs: dict[str, np.ndarray], labels: np.ndarray | None, graph: Graph,
                 source: str = "arrays") -> QuantData:
    """Cut per-sample arrays into the graph's batch size (last batch padded by repetition)."""
    batch = next(iter(graph.inputs.values())).shape[0]
    total = next(iter(inputs.values())).shape[0]
    batches, counts = [], []
    for start in range(0, total, batch):
        take = np.arange(start, min(start + batch, total))
        padded = np.resize(take, batch)  # repeats from the front to fill a short batch
        item = {name: np.ascontiguousarray(array[padded]).astype(graph.inputs[name].dtype)
                for name, array in inputs.items()}
        if labels is not None:
            item[LABELS] = labels[padded].astype(np.int64)
        batches.append(item)
        counts.append(len(take))
    return QuantData(batches, counts, labels is not None, None, source)


def _from_callable(spec: str, graph: Graph, option: str) -> QuantData:
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise MlcError(f"{option} {spec}: cannot import ({err})") from None
    try:
        result = fn()
    except Exception as err:  # the user's own code: say where it failed, not an mlc bug
        raise MlcError(f"{option} {spec}: the callable raised {type(err).__name__}: "
                       f"{err}") from None
    if not (isinstance(result, tuple) and len(result) == 2 and callable(result[0])):
        raise MlcError(f"{option} {spec}: must return (loss_fn, batches)")
    loss_fn, batches = result[0], list(result[1])
    if not batches:
        raise MlcError(f"{option} {spec}: returned no batches")
    for k, item in enumerate(batches):
        missing = [name for name in graph.inputs if name not in item]
        if missing:
            raise MlcError(f"{option} {spec}: batch {k} lacks model input(s) {missing}")
        for name, expected in graph.inputs.items():
            if tuple(np.shape(item[name])) != tuple(expected.shape):
                raise MlcError(f"{option} {spec}: batch {k} input {name!r} has shape "
                               f"{tuple(np.shape(item[name]))}, the model expects "
                               f"{tuple(expected.shape)}")
    counts = [graph.inputs[next(iter(graph.inputs))].shape[0]] * len(batches)
    return QuantData(batches, counts, False, loss_fn, spec)
