"""Inputs a model can actually take: random ones (valid indices for embedding lookups), and
user-given arrays checked by name, shape and dtype, converted only when no value changes.
Before anything is allocated, every tensor is checked against the memory available."""

from __future__ import annotations

import logging

import numpy as np

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph
from mlc.compiler.ir.types import (
    TensorType,
    available_memory,
    dtype_name,
    format_bytes,
    is_float,
    np_dtype,
)

log = logging.getLogger("mlc")


def _index_bounds(graph: Graph) -> dict[str, int]:
    """For inputs used as Gather indices: the size of the gathered axis (smallest if several)."""
    bounds: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "Gather" and node.inputs[1] in graph.inputs:
            data = graph.types[node.inputs[0]]
            size = data.shape[node.attrs.get("axis", 0)]
            name = node.inputs[1]
            bounds[name] = min(bounds.get(name, size), size)
    return bounds


def check_index_inputs(graph: Graph, inputs: dict[str, np.ndarray]) -> None:
    """Inputs used directly as Gather indices must lie in [-size, size) of the gathered axis
    (ONNX's rule); otherwise MlcError naming the input, the offending value and the range --
    the executors would end in an IndexError (or read out of bounds) instead."""
    for name, size in _index_bounds(graph).items():
        values = np.asarray(inputs.get(name, ()))
        if values.size == 0 or values.dtype.kind not in "iu":
            continue
        bad = (values < -size) | (values >= size)
        if bad.any():
            raise MlcError(f"input {name!r}: index {values[bad].flat[0]} is out of range for the "
                           f"Gather it feeds (valid: {-size} to {size - 1}); "
                           f"{int(bad.sum())} value(s) are outside it")


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal floats; ints in [0, 2) or in range of the table they index; random bools.

    Raises MlcError (naming the input) when the inputs would not fit in memory."""
    check_fits_memory(graph.inputs, "input")
    rng = np.random.default_rng(seed)
    bounds = _index_bounds(graph)
    out = {}
    for name, t in graph.inputs.items():
        if is_float(t.dtype):
            value = rng.standard_normal(t.shape, dtype=np.float32)  # no float64 copy
        elif t.dtype == "bool":
            value = rng.random(t.shape) < 0.5
        else:
            value = rng.integers(0, max(bounds.get(name, 2), 1), size=t.shape)
        out[name] = np.asarray(value).astype(np_dtype(t.dtype))
    return out


# ---- memory -------------------------------------------------------------------------------------
def check_fits_memory(types: dict[str, TensorType], what: str = "tensor", *,
                      float64: bool = False) -> None:
    """Refuse, naming the tensor and its size, any tensor (and the sum of `what`s) that exceeds
    the memory available now: a clear error instead of a MemoryError or the OOM killer.

    float64=True sizes float tensors as float64 (the executors' --float64 mode).

    >>> check_fits_memory(graph.types, "value")  # before executing the graph
    """
    budget = available_memory()
    sizes = {name: _nbytes(t, float64) for name, t in types.items()}
    for name, size in sizes.items():
        if size > budget:
            raise MlcError(f"{what} {name!r} ({types[name]}) needs {format_bytes(size)}, more "
                           f"than the {format_bytes(budget)} of memory available; use "
                           "smaller shapes (--shape NAME=DIMS)")
    total = sum(sizes.values())
    if what == "input" and total > budget:
        raise MlcError(f"the inputs together need {format_bytes(total)}, more than the "
                       f"{format_bytes(budget)} of memory available; use smaller shapes")


def _nbytes(tensor_type: TensorType, float64: bool) -> int:
    itemsize = 8 if float64 and is_float(tensor_type.dtype) else \
        np_dtype(tensor_type.dtype).itemsize
    return tensor_type.numel * itemsize


def check_graph_fits_memory(graph: Graph, *, float64: bool = False) -> None:
    """Every input and computed value of `graph` fits in the memory available now (weights are
    already in memory). Call before executing; raises MlcError naming the first that does not."""
    check_fits_memory(graph.inputs, "input", float64=float64)
    computed = {name: graph.types[name] for node in graph.nodes for name in node.outputs}
    check_fits_memory(computed, "value", float64=float64)


# ---- user-given inputs ------------------------------------------------------------------------
def conform_inputs(expected: dict[str, TensorType], feeds: dict[str, np.ndarray],
                   source: str = "inputs") -> dict[str, np.ndarray]:
    """`feeds` checked against the model's inputs and returned in their exact dtypes.

    Every missing, unknown or mis-shaped input is named in one MlcError. A dtype is converted
    only when every value survives the round trip (ints and bools into floats, whole floats
    into ints, floats into other float widths); complex, object, string and lossy conversions
    are refused. NaN / inf values are allowed (tests of non-finite handling need them) and
    reported with a warning.
    """
    problems = [f"missing input {name!r} ({t})" for name, t in expected.items()
                if name not in feeds]
    extra = sorted(set(feeds) - set(expected))
    if extra:
        problems.append(f"unknown input(s) {extra}; the model's inputs are {list(expected)}")
    for name, t in expected.items():
        if name in feeds and tuple(np.shape(feeds[name])) != t.shape:
            problems.append(f"input {name!r} has shape {list(np.shape(feeds[name]))}, the "
                            f"model expects {list(t.shape)}")
    if problems:
        raise MlcError(f"{source}: " + "; ".join(problems))
    return {name: _conform_dtype(np.asarray(feeds[name]), t.dtype, f"{source}: input {name!r}")
            for name, t in expected.items()}


def _conform_dtype(array: np.ndarray, dtype: str, where: str) -> np.ndarray:
    """`array` in IR dtype `dtype`, or MlcError when the conversion would change a value."""
    if array.dtype.kind not in "biuf" and not _is_ir_dtype(array.dtype):
        raise MlcError(f"{where} is {array.dtype} ({_kind_name(array.dtype)}); the model "
                       f"expects {dtype}. Save it as {dtype}")
    target = np_dtype(dtype)
    if array.dtype == target:
        _warn_nonfinite(array, where)
        return array
    with np.errstate(all="ignore"):  # lossy casts are detected below, not warned about
        converted = array.astype(target)
    if array.dtype.kind == "f" and is_float(dtype):  # float widths: rounding is the point
        lost = np.isfinite(array) & ~np.isfinite(converted.astype(np.float64))
        if lost.any():
            raise MlcError(f"{where}: {int(lost.sum())} value(s) overflow {dtype} (e.g. "
                           f"{array[lost].flat[0]!r}); the model expects {dtype}")
        _warn_nonfinite(array, where)
        return converted
    if not _same_values(array, converted):
        raise MlcError(f"{where} is {array.dtype}; converting it to the {dtype} the model "
                       "expects would change values (out of range or not whole). Save it as "
                       f"{dtype}")
    return converted


def _is_ir_dtype(dtype: np.dtype) -> bool:
    try:
        dtype_name(dtype)
    except ValueError:
        return False
    return True


def _kind_name(dtype: np.dtype) -> str:
    return {"c": "complex: mlc never drops imaginary parts", "O": "Python objects",
            "U": "text", "S": "bytes", "V": "raw bytes", "M": "dates",
            "m": "time spans"}.get(dtype.kind, "not a numeric dtype")


def _same_values(array: np.ndarray, converted: np.ndarray) -> bool:
    """Whether `converted` holds exactly `array`'s values (checked in float64 and back)."""
    with np.errstate(invalid="ignore", over="ignore"):
        back = converted.astype(array.dtype)
    equal_nan = array.dtype.kind == "f"
    return bool(np.array_equal(back, array, equal_nan=equal_nan))


def _warn_nonfinite(array: np.ndarray, where: str) -> None:
    if array.dtype.kind != "f" and not is_float(_safe_name(array.dtype)):
        return
    finite = np.isfinite(array if array.dtype.kind == "f" else array.astype(np.float64))
    count = int(array.size - np.count_nonzero(finite))
    if count:
        log.warning("%s holds %d NaN/inf value(s) of %d; running on them as given", where,
                    count, array.size)


def _safe_name(dtype: np.dtype) -> str:
    try:
        return dtype_name(dtype)
    except ValueError:
        return ""
