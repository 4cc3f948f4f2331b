"""The op table: every IR op's name, arity, attributes, shape rule, numpy semantics and FLOPs.

Adding an op means adding one entry here (and mapping it in the frontends). Semantics follow
ONNX where ONNX has the op; shape-like operands (Reshape's shape, Slice's bounds, ...) are
attributes, because frontends fold shape arithmetic at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import fused, shapes
from . import reference as ref

REQUIRED = object()  # marks an attribute with no default


@dataclass(frozen=True)
class OpDef:
    """One row of the op table."""

    name: str
    arity: tuple[int, int | None]  # (fewest, most) inputs; None = variadic
    infer: Callable  # (input TensorTypes, attrs) -> output TensorTypes
    compute: Callable  # (*input arrays, **attrs) -> array | list of arrays
    attrs: dict[str, Any] = field(default_factory=dict)  # name -> default (or REQUIRED)
    kind: str = "elementwise"  # elementwise | reduction | linalg | norm | conv | movement | fused
    flops_per_element: float = 1.0  # per output element (elementwise, norm) or input (reduce)


OPS: dict[str, OpDef] = {}


def _add(op: OpDef) -> None:
    assert op.name not in OPS, op.name
    OPS[op.name] = op


def _unary(name, fn, flops=1.0, **attrs):
    _add(OpDef(name, (1, 1), shapes.same, fn, attrs, "elementwise", flops))


def _binary(name, fn, infer=shapes.broadcast_same_dtype, arity=(2, 2)):
    _add(OpDef(name, arity, infer, fn, {}, "elementwise"))


def _reduce(name, fn, flops=1.0):
    _add(OpDef(name, (1, 1), shapes.reduce, fn, {"axes": None, "keepdims": 1}, "reduction",
               flops))


def _variadic(fn):
    def apply(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out
    return apply


# ---- elementwise: unary math -----------------------------------------------------------------
_unary("Identity", lambda x: x, flops=0)
_unary("Neg", np.negative)
_unary("Abs", np.abs)
_unary("Sign", np.sign)
_unary("Exp", np.exp, flops=4)
_unary("Log", np.log, flops=4)
_unary("Sqrt", np.sqrt, flops=2)
_unary("Reciprocal", np.reciprocal)
_unary("Floor", np.floor)
_unary("Ceil", np.ceil)
_unary("Round", np.round)
_unary("Sin", np.sin, flops=4)
_unary("Cos", np.cos, flops=4)
_unary("Tan", np.tan, flops=4)
_unary("Asin", np.arcsin, flops=4)
_unary("Acos", np.arccos, flops=4)
_unary("Atan", np.arctan, flops=4)
_unary("Sinh", np.sinh, flops=4)
_unary("Cosh", np.cosh, flops=4)
_unary("Tanh", np.tanh, flops=4)
_unary("Erf", ref.erf, flops=8)
_unary("Not", np.logical_not)
_add(OpDef("IsNaN", (1, 1), shapes.same_shape_bool, np.isnan))
_add(OpDef("IsInf", (1, 1), shapes.same_shape_bool,
           lambda x, detect_negative, detect_positive: np.isinf(x)
           & (((x < 0) & bool(detect_negative)) | ((x > 0) & bool(detect_positive))),
           {"detect_negative": 1, "detect_positive": 1}))

# ---- elementwise: activations ------------------------------------------------------------------
_unary("Relu", lambda x: np.maximum(x, 0).astype(x.dtype))
_unary("Sigmoid", ref.sigmoid, flops=5)
_unary("Silu", lambda x: (x * ref.sigmoid(x)).astype(x.dtype), flops=6)
_unary("Gelu", ref.gelu, flops=10, approximate="none")
_unary("Softplus", ref.softplus, flops=6)
_unary("Mish", ref.mish, flops=10)
_unary("Softsign", lambda x: x / (1 + np.abs(x)), flops=3)
_unary("LeakyRelu", lambda x, alpha: np.where(x >= 0, x, alpha * x).astype(x.dtype),
       alpha=0.01)
_unary("Elu", lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(x)).astype(x.dtype), flops=5,
       alpha=1.0)
_unary("Selu", lambda x, alpha, gamma: (gamma * np.where(x > 0, x, alpha * np.expm1(x)))
       .astype(x.dtype), flops=6, alpha=1.67326319217681884765625,
       gamma=1.05070102214813232421875)
_unary("HardSigmoid", lambda x, alpha, beta: np.clip(alpha * x + beta, 0, 1).astype(x.dtype),
       flops=3, alpha=0.2, beta=0.5)
_unary("HardSwish", lambda x: (x * np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype), flops=4)
_unary("Clip", ref.clip, min=None, max=None)
_add(OpDef("Cast", (1, 1), shapes.cast, ref.cast, {"to": REQUIRED, "saturate": 1},
           "elementwise", 0))
_add(OpDef("Where", (3, 3), shapes.where, np.where, {}, "elementwise"))
_add(OpDef("PRelu", (2, 2), shapes.broadcast_same_dtype,
           lambda x, slope: np.where(x >= 0, x, slope * x).astype(x.dtype)))

# ---- elementwise: binary and variadic (numpy broadcasting) --------------------------------------
_binary("Add", np.add)
_binary("Sub", np.subtract)
_binary("Mul", np.multiply)
_binary("Div", ref.int_div)
_binary("Pow", ref.power)
_add(OpDef("Mod", (2, 2), shapes.broadcast_same_dtype, ref.mod, {"fmod": 0}))
_binary("Max", _variadic(np.maximum), arity=(1, None))
_binary("Min", _variadic(np.minimum), arity=(1, None))
_binary("Sum", _variadic(np.add), arity=(1, None))
_binary("Mean", lambda *xs: (_variadic(np.add)(*xs) / len(xs)).astype(xs[0].dtype),
        arity=(1, None))
_binary("Equal", np.equal, shapes.broadcast_bool)
_binary("Less", np.less, shapes.broadcast_bool)
_binary("LessOrEqual", np.less_equal, shapes.broadcast_bool)
_binary("Greater", np.greater, shapes.broadcast_bool)
_binary("GreaterOrEqual", np.greater_equal, shapes.broadcast_bool)
_binary("And", np.logical_and, shapes.broadcast_bool)
_binary("Or", np.logical_or, shapes.broadcast_bool)
_binary("Xor", np.logical_xor, shapes.broadcast_bool)

# ---- reductions (axes=None reduces every axis) --------------------------------------------------
_reduce("ReduceSum", lambda x, axes, keepdims: ref.reduce(np.sum, x, axes, keepdims))
_reduce("ReduceMean", lambda x, axes, keepdims: ref.reduce(np.mean, x, axes, keepdims))
_reduce("ReduceMax", ref.reduce_max)
_reduce("ReduceMin", ref.reduce_min)
_reduce("ReduceProd", lambda x, axes, keepdims: ref.reduce(np.prod, x, axes, keepdims))
_reduce("ReduceSumSquare", lambda x, axes, keepdims: ref.reduce(np.sum, x * x, axes, keepdims),
        flops=2)
_reduce("ReduceL1", lambda x, axes, keepdims: ref.reduce(np.sum, np.abs(x), axes, keepdims),
        flops=2)
_reduce("ReduceL2", lambda x, axes, keepdims: np.sqrt(
    ref.reduce(np.sum, x * x, axes, keepdims)).astype(x.dtype), flops=2)
_reduce("ReduceLogSum", lambda x, axes, keepdims: np.log(
    ref.reduce(np.sum, x, axes, keepdims)).astype(x.dtype))
_reduce("ReduceLogSumExp", ref.reduce_log_sum_exp, flops=5)
for _name, _fn in (("ArgMax", np.argmax), ("ArgMin", np.argmin)):
    _add(OpDef(_name, (1, 1), shapes.arg_reduce,
               lambda x, axis, keepdims, select_last_index, fn=_fn:
               ref.arg_reduce(fn, x, axis, keepdims, select_last_index),
               {"axis": 0, "keepdims": 1, "select_last_index": 0}, "reduction"))

# ---- linear algebra ----------------------------------------------------------------------------
_add(OpDef("MatMul", (2, 2), shapes.matmul, np.matmul, {}, "linalg"))
_add(OpDef("Gemm", (2, 3), shapes.gemm, ref.gemm,
           {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}, "linalg"))

# ---- normalization (fused row-wise ops) ---------------------------------------------------------
_add(OpDef("Softmax", (1, 1), shapes.softmax, ref.softmax, {"axis": -1}, "norm", 7))
_add(OpDef("LogSoftmax", (1, 1), shapes.softmax, ref.log_softmax, {"axis": -1}, "norm", 7))
_add(OpDef("LayerNormalization", (2, 3), shapes.layer_norm, ref.layer_norm,
           {"axis": -1, "epsilon": 1e-5, "num_outputs": 1}, "norm", 8))
_add(OpDef("RMSNormalization", (2, 2), shapes.rms_norm, ref.rms_norm,
           {"axis": -1, "epsilon": 1e-5}, "norm", 5))
_add(OpDef("BatchNormalization", (5, 5), shapes.batch_norm, ref.batch_norm, {"epsilon": 1e-5},
           "norm", 2))

# ---- convolution and pooling (pads: all begins, then all ends) ----------------------------------
_WINDOW = {"strides": REQUIRED, "pads": REQUIRED, "dilations": REQUIRED}
_add(OpDef("Conv", (2, 3), shapes.conv, ref.conv, {**_WINDOW, "group": 1}, "conv"))
_add(OpDef("MaxPool", (1, 1), shapes.pool, ref.max_pool,
           {**_WINDOW, "kernel_shape": REQUIRED, "ceil_mode": 0}, "conv"))
_add(OpDef("AveragePool", (1, 1), shapes.pool, ref.average_pool,
           {**_WINDOW, "kernel_shape": REQUIRED, "ceil_mode": 0, "count_include_pad": 0}, "conv"))
_add(OpDef("GlobalAveragePool", (1, 1), shapes.global_pool,
           lambda x: x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype),
           {}, "reduction"))
_add(OpDef("GlobalMaxPool", (1, 1), shapes.global_pool,
           lambda x: x.max(axis=tuple(range(2, x.ndim)), keepdims=True), {}, "reduction"))

# ---- data movement (no arithmetic) -------------------------------------------------------------
_MOVE = "movement"
_add(OpDef("Reshape", (1, 1), shapes.reshape, lambda x, shape: x.reshape(shape),
           {"shape": REQUIRED}, _MOVE, 0))
_add(OpDef("Transpose", (1, 1), shapes.transpose, lambda x, perm: np.transpose(x, perm),
           {"perm": REQUIRED}, _MOVE, 0))
_add(OpDef("Concat", (1, None), shapes.concat, lambda *xs, axis: np.concatenate(xs, axis),
           {"axis": REQUIRED}, _MOVE, 0))
_add(OpDef("Split", (1, 1), shapes.split, ref.split, {"axis": 0, "split": REQUIRED}, _MOVE, 0))
_add(OpDef("Slice", (1, 1), shapes.slice_, ref.slice_,
           {"starts": REQUIRED, "ends": REQUIRED, "axes": REQUIRED, "steps": REQUIRED}, _MOVE, 0))
_add(OpDef("Squeeze", (1, 1), shapes.squeeze,
           lambda x, axes: np.squeeze(x, tuple(axes)) if axes else x, {"axes": REQUIRED}, _MOVE, 0))
_add(OpDef("Unsqueeze", (1, 1), shapes.unsqueeze,
           lambda x, axes: np.expand_dims(x, tuple(axes)), {"axes": REQUIRED}, _MOVE, 0))
_add(OpDef("Expand", (1, 1), shapes.expand,
           lambda x, shape: np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape))).copy(),
           {"shape": REQUIRED}, _MOVE, 0))
_add(OpDef("Flatten", (1, 1), shapes.flatten, ref.flatten, {"axis": 1}, _MOVE, 0))
_add(OpDef("Gather", (2, 2), shapes.gather, ref.gather, {"axis": 0}, _MOVE, 0))
_add(OpDef("GatherElements", (2, 2), shapes.gather_elements, ref.gather_elements, {"axis": 0},
           _MOVE, 0))
_add(OpDef("GatherND", (2, 2), shapes.gather_nd, ref.gather_nd, {"batch_dims": 0}, _MOVE, 0))
_add(OpDef("Tile", (1, 1), shapes.tile, lambda x, repeats: np.tile(x, repeats),
           {"repeats": REQUIRED}, _MOVE, 0))
_add(OpDef("Trilu", (1, 1), shapes.trilu, ref.trilu, {"upper": 1, "k": 0}, _MOVE, 0))
_add(OpDef("Pad", (1, 1), shapes.pad, ref.pad,
           {"pads": REQUIRED, "mode": "constant", "value": 0.0}, _MOVE, 0))

# ---- quantized weights (packed low-bit indices -> codebook values; see compiler/quant) ---------
_add(OpDef("CodebookDequantize", (2, 2), shapes.codebook_dequantize, ref.codebook_dequantize,
           {"bits": REQUIRED, "shape": REQUIRED, "axis": None}, _MOVE, 0))


# ---- fused regions (emitted by `mlc optimize`) --------------------------------------------------
_add(OpDef("MuGraphCall", (1, None), fused.mugraph_call_types, fused.mugraph_call,
           {"mugraph": REQUIRED}, "fused", 0))


def get_op(name: str) -> OpDef:
    """The table row of an op, or KeyError naming the known ops."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown IR op {name!r}") from None


def resolve_attrs(op: OpDef, attrs: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and reject unknown or missing attributes."""
    unknown = set(attrs) - set(op.attrs)
    if unknown:
        raise ValueError(f"{op.name} has no attribute(s) {sorted(unknown)}")
    out = {}
    for name, default in op.attrs.items():
        if name in attrs:
            out[name] = attrs[name]
        elif default is REQUIRED:
            raise ValueError(f"{op.name} needs attribute {name!r}")
        else:
            out[name] = default
    return out


def compute(op_name: str, inputs: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
    """Run one op's numpy semantics; always returns a list of arrays."""
    op = OPS[op_name]
    result = op.compute(*inputs, **resolve_attrs(op, attrs))
    return [np.asarray(r) for r in result] if isinstance(result, list) else [np.asarray(result)]
