"""ONNX op -> IR op converters, one table entry per ONNX op type.

A converter gets the importer (`imp`), the node's input and output names ("" = absent) and its
attributes, and calls `imp.emit(...)`. Operands the IR keeps as attributes (shapes, axes, pads)
must be constants at import: `imp.const(...)` reads them or raises ConvertError.
"""

from __future__ import annotations

import math

import numpy as np


class ConvertError(ValueError):
    """A node cannot be expressed in the IR as given (the importer adds file and node)."""


class NeedsConstant(ConvertError):
    """An operand the IR keeps as an attribute (a shape, axes, pads) is not constant."""

    def __init__(self, value_name: str, what: str):
        self.value_name = value_name
        super().__init__(f"{what} ({value_name!r}) is computed at run time; mlc needs it "
                         "constant (fix the input shapes with --shape NAME=DIMS)")


def _present(names):
    return [n for n in names if n]


def _ints(array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


# ---- generic converters --------------------------------------------------------------------

def same(ir_op: str, *attr_names: str):
    """ONNX op maps 1:1 onto an IR op, copying the named attributes when present."""
    def convert(imp, inputs, outputs, attrs):
        kept = {k: attrs[k] for k in attr_names if k in attrs}
        imp.emit(ir_op, _present(inputs), outputs[:1], **kept)
    return convert


def _identity(imp, inputs, outputs, attrs):
    imp.emit("Identity", inputs[:1], outputs[:1])


def _dropout(imp, inputs, outputs, attrs):
    if len(inputs) > 2 and inputs[2] and bool(imp.const(inputs[2], "training_mode")):
        raise ConvertError("training-mode Dropout is not supported; export the model in eval mode")
    _identity(imp, inputs, outputs, attrs)
    if len(outputs) > 1 and outputs[1]:  # in inference every element is kept
        imp.set_const(outputs[1], np.ones(imp.type_of(inputs[0]).shape, dtype=bool))


# ---- constants and shape arithmetic (folded at import) --------------------------------------

def _constant(imp, inputs, outputs, attrs):
    from onnx import numpy_helper
    if "value" in attrs:
        value = numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs:
        value = np.array(attrs["value_float"], np.float32)
    elif "value_floats" in attrs:
        value = np.array(attrs["value_floats"], np.float32)
    elif "value_int" in attrs:
        value = np.array(attrs["value_int"], np.int64)
    elif "value_ints" in attrs:
        value = np.array(attrs["value_ints"], np.int64)
    else:
        raise ConvertError(f"Constant with attributes {sorted(attrs)} is not supported")
    imp.set_const(outputs[0], value)


def _shape(imp, inputs, outputs, attrs):
    shape = imp.type_of(inputs[0]).shape
    start, end = attrs.get("start", 0), attrs.get("end", None)
    imp.set_const(outputs[0], np.array(shape[start:end], np.int64))


def _size(imp, inputs, outputs, attrs):
    imp.set_const(outputs[0], np.array(imp.type_of(inputs[0]).numel, np.int64))


def _constant_of_shape(imp, inputs, outputs, attrs):
    from onnx import numpy_helper
    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    shape = _ints(imp.const(inputs[0], "shape"))
    imp.set_const(outputs[0], np.full(shape, value.reshape(-1)[0], dtype=value.dtype))


def _range(imp, inputs, outputs, attrs):
    start, limit, delta = (imp.const(n, "Range bound") for n in inputs)
    imp.set_const(outputs[0], np.arange(start, limit, delta).astype(start.dtype))


# ---- ops whose operands become IR attributes ------------------------------------------------

def _reshape(imp, inputs, outputs, attrs):
    shape = _ints(imp.const(inputs[1], "target shape"))
    src = imp.type_of(inputs[0]).shape
    if not attrs.get("allowzero", 0):
        shape = [src[i] if d == 0 else d for i, d in enumerate(shape)]
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = math.prod(src) // known if known else 0
    imp.emit("Reshape", inputs[:1], outputs, shape=shape)


def _expand(imp, inputs, outputs, attrs):
    imp.emit("Expand", inputs[:1], outputs, shape=_ints(imp.const(inputs[1], "shape")))


def _tile(imp, inputs, outputs, attrs):
    imp.emit("Tile", inputs[:1], outputs, repeats=_ints(imp.const(inputs[1], "repeats")))


def _slice(imp, inputs, outputs, attrs):
    def operand(i, what):
        return _ints(imp.const(inputs[i], what)) if len(inputs) > i and inputs[i] else None
    starts, ends = operand(1, "starts"), operand(2, "ends")
    axes = operand(3, "axes") or list(range(len(starts)))
    steps = operand(4, "steps") or [1] * len(starts)
    imp.emit("Slice", inputs[:1], outputs, starts=starts, ends=ends, axes=axes, steps=steps)


def _axes_operand(imp, inputs, attrs):
    """Axes from the attribute (old opsets) or the optional second input (new opsets)."""
    if "axes" in attrs:
        return list(attrs["axes"])
    if len(inputs) > 1 and inputs[1]:
        return _ints(imp.const(inputs[1], "axes"))
    return None


def _squeeze(imp, inputs, outputs, attrs):
    axes = _axes_operand(imp, inputs, attrs)
    if axes is None:
        axes = [i for i, d in enumerate(imp.type_of(inputs[0]).shape) if d == 1]
    imp.emit("Squeeze", inputs[:1], outputs, axes=axes)


def _unsqueeze(imp, inputs, outputs, attrs):
    imp.emit("Unsqueeze", inputs[:1], outputs, axes=_axes_operand(imp, inputs, attrs))


def _split(imp, inputs, outputs, attrs):
    dim = imp.type_of(inputs[0]).shape[attrs.get("axis", 0)]
    if "split" in attrs:
        sizes = list(attrs["split"])
    elif len(inputs) > 1 and inputs[1]:
        sizes = _ints(imp.const(inputs[1], "split"))
    else:
        parts = attrs.get("num_outputs", len(outputs))
        chunk = -(-dim // parts)
        sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
    imp.emit("Split", inputs[:1], outputs, axis=attrs.get("axis", 0), split=sizes)


def _pad(imp, inputs, outputs, attrs):
    rank = imp.type_of(inputs[0]).rank
    pads = _ints(imp.const(inputs[1], "pads")) if len(inputs) > 1 else list(attrs["pads"])
    value = 0.0
    if len(inputs) > 2 and inputs[2]:
        value = imp.const(inputs[2], "constant_value").reshape(-1)[0].item()
    if len(inputs) > 3 and inputs[3]:  # pads only for the listed axes
        axes = [a % rank for a in _ints(imp.const(inputs[3], "axes"))]
        full = [0] * (2 * rank)
        for i, a in enumerate(axes):
            full[a], full[a + rank] = pads[i], pads[i + len(axes)]
        pads = full
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    imp.emit("Pad", inputs[:1], outputs, pads=pads, mode=mode, value=value)


def _clip(imp, inputs, outputs, attrs):
    bounds = {}
    for i, key in ((1, "min"), (2, "max")):
        if len(inputs) > i and inputs[i]:
            bounds[key] = imp.const(inputs[i], key).reshape(-1)[0].item()
        elif key in attrs:
            bounds[key] = attrs[key]
    imp.emit("Clip", inputs[:1], outputs, **bounds)


def reduction(ir_op: str):
    def convert(imp, inputs, outputs, attrs):
        axes = _axes_operand(imp, inputs, attrs)
        if not axes:  # no axes: all of them, or (noop_with_empty_axes) none, op still applied
            axes = [] if attrs.get("noop_with_empty_axes", 0) else None
        imp.emit(ir_op, inputs[:1], outputs, axes=axes, keepdims=attrs.get("keepdims", 1))
    return convert


def _cast(imp, inputs, outputs, attrs):
    from .onnx_frontend import onnx_dtype
    imp.emit("Cast", inputs[:1], outputs, to=onnx_dtype(attrs["to"], "Cast target"),
             saturate=attrs.get("saturate", 1))


def _cast_like(imp, inputs, outputs, attrs):
    imp.emit("Cast", inputs[:1], outputs, to=imp.type_of(inputs[1]).dtype,
             saturate=attrs.get("saturate", 1))


def _transpose(imp, inputs, outputs, attrs):
    perm = attrs.get("perm") or list(range(imp.type_of(inputs[0]).rank))[::-1]
    imp.emit("Transpose", inputs, outputs, perm=list(perm))


def _layer_norm(imp, inputs, outputs, attrs):
    used = len(outputs)
    names = [o or imp.fresh("unused") for o in outputs]
    imp.emit("LayerNormalization", _present(inputs), names, axis=attrs.get("axis", -1),
             epsilon=attrs.get("epsilon", 1e-5), num_outputs=used)


def _batch_norm(imp, inputs, outputs, attrs):
    if attrs.get("training_mode", 0) or len(_present(outputs)) > 1:
        raise ConvertError("training-mode BatchNormalization is not supported; export in eval mode")
    imp.emit("BatchNormalization", inputs, outputs[:1], epsilon=attrs.get("epsilon", 1e-5))


def _gelu(imp, inputs, outputs, attrs):
    approx = attrs.get("approximate", b"none")
    imp.emit("Gelu", inputs, outputs, approximate=approx.decode() if isinstance(approx, bytes)
             else approx)


# ---- convolution and pooling ----------------------------------------------------------------

def _window_attrs(imp, x_name, kernel, attrs, ceil_mode=0):
    """Resolve auto_pad into explicit pads; fill default strides and dilations."""
    spatial = imp.type_of(x_name).shape[2:]
    nd = len(kernel)
    strides = list(attrs.get("strides", [1] * nd))
    dilations = list(attrs.get("dilations", [1] * nd))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                        - spatial[i])
            small, large = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = list(attrs.get("pads", [0] * (2 * nd)))
    return {"strides": strides, "pads": pads, "dilations": dilations}


def _conv(imp, inputs, outputs, attrs):
    kernel = attrs.get("kernel_shape") or imp.type_of(inputs[1]).shape[2:]
    window = _window_attrs(imp, inputs[0], list(kernel), attrs)
    imp.emit("Conv", _present(inputs), outputs, group=attrs.get("group", 1), **window)


def _pool(ir_op):
    def convert(imp, inputs, outputs, attrs):
        if len(outputs) > 1 and outputs[1]:
            raise ConvertError(f"{ir_op}'s Indices output is not supported")
        kernel = list(attrs["kernel_shape"])
        window = _window_attrs(imp, inputs[0], kernel, attrs)
        extra = {"count_include_pad": attrs.get("count_include_pad", 0)} \
            if ir_op == "AveragePool" else {}
        imp.emit(ir_op, inputs, outputs[:1], kernel_shape=kernel,
                 ceil_mode=attrs.get("ceil_mode", 0), **window, **extra)
    return convert


# ---- the table -----------------------------------------------------------------------------

_SAME = [
    "Neg", "Abs", "Sign", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sin",
    "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Tanh", "Erf", "Not", "Relu",
    "Sigmoid", "Softplus", "Softsign", "HardSwish", "Where", "PRelu", "Add", "Sub", "Mul", "Div",
    "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "And", "Or", "Xor", "MatMul", "GlobalAveragePool", "GlobalMaxPool",
]

CONVERTERS = {name: same(name) for name in _SAME}
CONVERTERS.update({
    # activations and elementwise ops with attributes
    "LeakyRelu": same("LeakyRelu", "alpha"),
    "Elu": same("Elu", "alpha"),
    "Selu": same("Selu", "alpha", "gamma"),
    "HardSigmoid": same("HardSigmoid", "alpha", "beta"),
    "Gelu": _gelu,
    "Mod": same("Mod", "fmod"),
    "Clip": _clip,
    "Cast": _cast,
    "CastLike": _cast_like,
    "Identity": _identity,
    "IsNaN": same("IsNaN"),
    "IsInf": same("IsInf", "detect_negative", "detect_positive"),
    "Dropout": _dropout,
    # linear algebra and row-wise normalizations
    "Gemm": same("Gemm", "alpha", "beta", "transA", "transB"),
    "Softmax": same("Softmax", "axis"),
    "LogSoftmax": same("LogSoftmax", "axis"),
    "LayerNormalization": _layer_norm,
    "RMSNormalization": same("RMSNormalization", "axis", "epsilon"),
    "BatchNormalization": _batch_norm,
    # reductions
    **{op: reduction(op) for op in (
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")},
    "ArgMax": same("ArgMax", "axis", "keepdims", "select_last_index"),
    "ArgMin": same("ArgMin", "axis", "keepdims", "select_last_index"),
    # convolution and pooling
    "Conv": _conv,
    "MaxPool": _pool("MaxPool"),
    "AveragePool": _pool("AveragePool"),
    # data movement
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Concat": same("Concat", "axis"),
    "Split": _split,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Expand": _expand,
    "Flatten": same("Flatten", "axis"),
    "Gather": same("Gather", "axis"),
    "GatherElements": same("GatherElements", "axis"),
    "GatherND": same("GatherND", "batch_dims"),
    "Tile": _tile,
    "Pad": _pad,
    # folded at import: shape arithmetic and constants
    "Constant": _constant,
    "Shape": _shape,
    "Size": _size,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
})
