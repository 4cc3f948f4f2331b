"""A numpy evaluator for formal-verifier terms at concrete grid and loop sizes.

A value is a NamedValue: an array whose leading axes are named grid/loop indices (one per name
in `axes`) followed by the tensor's data dims. partition splits a data dim into |g| chunks and
moves the chunk index to a new leading axis g; replicate broadcasts along a new axis g;
combine concatenates the chunks of axis g back along a data dim; reduce sums over axis g.
Elementwise ops and matmul align their operands' named axes first, so they act per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...mugraph.unary import NUMPY as ACTIVATION_FUNCTIONS
from .terms import Term


class EvaluationError(ValueError):
    """A term that has no value at the given sizes (a dim that does not split, a name twice)."""


@dataclass(frozen=True)
class NamedValue:
    axes: tuple[str, ...]
    array: np.ndarray

    @property
    def data_rank(self) -> int:
        return self.array.ndim - len(self.axes)

    def data_axis(self, dim: int) -> int:
        """The array axis of data dim `dim` (negative, counted from the last)."""
        if not -self.data_rank <= dim < 0:
            raise EvaluationError(f"dim {dim} of a rank-{self.data_rank} value")
        return self.array.ndim + dim


def plain(array) -> NamedValue:
    """A value with no named axes."""
    return NamedValue((), np.asarray(array, dtype=np.float64))


def _align(values: list[NamedValue]) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Bring values to the same named axes (sorted, size 1 where absent) and data rank."""
    axes = tuple(sorted(set().union(*(v.axes for v in values))))
    rank = max(v.data_rank for v in values)
    arrays = []
    for v in values:
        shape = [v.array.shape[v.axes.index(a)] if a in v.axes else 1 for a in axes]
        order = [v.axes.index(a) for a in axes if a in v.axes]
        moved = np.transpose(v.array, order + list(range(len(v.axes), v.array.ndim)))
        data = list(v.array.shape[len(v.axes):])
        arrays.append(moved.reshape(shape + [1] * (rank - len(data)) + data))
    return axes, arrays


def _partition(v: NamedValue, dim: int, name: str, count: int) -> NamedValue:
    if name in v.axes:
        raise EvaluationError(f"partition along {name!r} of a value already indexed by it")
    axis = v.data_axis(dim)
    size = v.array.shape[axis]
    if size % count:
        raise EvaluationError(f"dim {dim} of size {size} does not split into {count}")
    shape = v.array.shape[:axis] + (count, size // count) + v.array.shape[axis + 1:]
    split = np.moveaxis(v.array.reshape(shape), axis, 0)
    return NamedValue((name,) + v.axes, split)


def _combine(v: NamedValue, dim: int, name: str) -> NamedValue:
    if name not in v.axes:
        raise EvaluationError(f"combine along {name!r} of a value not indexed by it")
    source = v.axes.index(name)
    axes = v.axes[:source] + v.axes[source + 1:]
    axis = v.data_axis(dim) - 1  # after the named axis is moved out
    moved = np.moveaxis(v.array, source, axis)
    shape = moved.shape[:axis] + (moved.shape[axis] * moved.shape[axis + 1],) + \
        moved.shape[axis + 2:]
    return NamedValue(axes, moved.reshape(shape))


def _over_name(v: NamedValue, name: str, reducer) -> NamedValue:
    if name not in v.axes:
        raise EvaluationError(f"reduction over {name!r} of a value not indexed by it")
    source = v.axes.index(name)
    return NamedValue(v.axes[:source] + v.axes[source + 1:], reducer(v.array, axis=source))


def _silu(x):
    return x / (1.0 + np.exp(-x))


_UNARY = {"exp": np.exp, "sqrt": np.sqrt, "silu": _silu, "neg": np.negative,
          **ACTIVATION_FUNCTIONS}
_WITH_CONSTANT = {"scale": np.multiply, "shift": np.add}
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "matmul": np.matmul}
_DIM_REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max}


def evaluate(term: Term, env: dict[str, NamedValue], sizes: dict[str, int]) -> NamedValue:
    """The value of `term` with inputs from `env` and each grid/loop name's size in `sizes`.

    Requires: every var in env, every name in sizes. Raises EvaluationError otherwise or when
    a partition does not divide its dim.
    """
    op, *args = term
    if op == "var":
        if args[0] not in env:
            raise EvaluationError(f"no value for input {args[0]!r}")
        return env[args[0]]
    if op in ("partition", "replicate") and args[-1] not in sizes:
        raise EvaluationError(f"no size for name {args[-1]!r}")
    inner = evaluate(args[0], env, sizes)
    if op == "partition":
        return _partition(inner, args[1], args[2], sizes[args[2]])
    if op == "replicate":
        if args[1] in inner.axes:
            raise EvaluationError(f"replicate along {args[1]!r} of a value indexed by it")
        count = sizes[args[1]]
        return NamedValue((args[1],) + inner.axes,
                          np.broadcast_to(inner.array, (count,) + inner.array.shape))
    if op == "combine":
        return _combine(inner, args[1], args[2])
    if op == "reduce":
        return _over_name(inner, args[1], np.sum)
    if op == "rmean":
        return _over_name(inner, args[1], np.mean)
    if op in _UNARY:
        return NamedValue(inner.axes, _UNARY[op](inner.array))
    if op in _WITH_CONSTANT:
        return NamedValue(inner.axes, _WITH_CONSTANT[op](inner.array, float(args[1])))
    if op in _DIM_REDUCTIONS:
        axis = inner.data_axis(args[1])
        return NamedValue(inner.axes, _DIM_REDUCTIONS[op](inner.array, axis=axis, keepdims=True))
    if op in _BINARY:
        axes, (a, b) = _align([inner, evaluate(args[1], env, sizes)])
        try:
            return NamedValue(axes, _BINARY[op](a, b))
        except ValueError as err:  # shapes that do not broadcast or contract
            raise EvaluationError(f"{op}: {err}") from None
    raise EvaluationError(f"unknown term op {op!r}")
