"""ONNX op -> IR op converters, one table entry per ONNX op type.

A converter gets the importer (`imp`), the node's input and output names ("" = absent) and its
attributes, and calls `imp.emit(...)`. Operands the IR keeps as attributes (shapes, axes, pads)
must be constants at import: `imp.const(...)` reads them or raises ConvertError.

The importer has checked each node against its op's schema at the model's opset (`imp.opset`),
so a converter sees the operand form of that opset (an attribute before it became an input) and
implements that opset's semantics (e.g. Softmax before 13 flattens from `axis`).
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
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise ConvertError(f"expected integers, got {array.dtype} values")
    return [int(v) for v in array.reshape(-1)]


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _choice(attrs, name, default, allowed) -> str:
    """A string attribute that must be one of `allowed`."""
    value = _text(attrs.get(name, default))
    if value not in allowed:
        raise ConvertError(f"attribute {name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _axis(imp, name, axis, rank_extra=0) -> int:
    """`axis` of input `name`, in range for its rank (plus rank_extra), made non-negative."""
    rank = imp.type_of(name).rank + rank_extra
    if not -rank <= axis < max(rank, 1):
        raise ConvertError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# ---- generic converters --------------------------------------------------------------------

def same(ir_op: str, *attr_names: str):
    """ONNX op maps 1:1 onto an IR op, copying the named attributes when present."""
    def convert(imp, inputs, outputs, attrs):
        kept = {k: attrs[k] for k in attr_names if k in attrs}
        imp.emit(ir_op, _present(inputs), outputs[:1], **kept)
    return convert


def _identity(imp, inputs, outputs, attrs):
    imp.emit("Identity", inputs[:1], outputs[:1])


def _variadic(ir_op: str):
    """Sum, Mean, Max, Min: broadcasting since opset 8; before it the inputs share one shape."""
    def convert(imp, inputs, outputs, attrs):
        shapes = {imp.type_of(name).shape for name in _present(inputs)}
        if imp.opset < 8 and len(shapes) > 1:
            raise ConvertError(f"inputs of shapes {sorted(shapes)} differ; {ir_op} broadcasts "
                               "only from opset 8")
        imp.emit(ir_op, _present(inputs), outputs[:1])
    return convert


def _dropout(imp, inputs, outputs, attrs):
    for name in _present(inputs[1:]):
        if imp.type_of(name).rank:
            raise ConvertError(f"ratio and training_mode must be scalars, {name!r} is "
                               f"{imp.type_of(name)}")
    if len(inputs) > 2 and inputs[2] and bool(imp.const(inputs[2], "training_mode")):
        raise ConvertError("training-mode Dropout is not supported; export the model in eval mode")
    _identity(imp, inputs, outputs, attrs)
    if len(outputs) > 1 and outputs[1]:  # in inference every element is kept
        imp.set_const(outputs[1], np.ones(imp.type_of(inputs[0]).shape, dtype=bool))


# ---- constants and shape arithmetic (folded at import) --------------------------------------

def _tensor_attr(imp, tensor, what) -> np.ndarray:
    from .onnx_checks import tensor_to_array
    return tensor_to_array(tensor, f"{what} of node {imp.node_name!r}")


def _constant(imp, inputs, outputs, attrs):
    if "value" in attrs:
        value = _tensor_attr(imp, attrs["value"], "value")
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
    value = _tensor_attr(imp, attrs["value"], "value") if "value" in attrs \
        else np.zeros(1, np.float32)
    if value.size != 1:
        raise ConvertError(f"value must hold one element, it holds {value.size}")
    shape = _ints(imp.const(inputs[0], "shape"))
    _check_new_constant(shape, value.dtype)
    imp.set_const(outputs[0], np.full(shape, value.reshape(-1)[0], dtype=value.dtype))


def _range(imp, inputs, outputs, attrs):
    start, limit, delta = (imp.const(n, "Range bound") for n in inputs)
    if any(v.size != 1 for v in (start, limit, delta)):
        raise ConvertError("start, limit and delta must be scalars")
    start, limit, delta = (v.reshape(()) for v in (start, limit, delta))
    if not all(np.isfinite(v) for v in (start, limit, delta)) or delta == 0:
        raise ConvertError(f"Range({start}, {limit}, {delta}) needs finite bounds and a non-zero "
                           "delta")
    count = max(math.ceil((float(limit) - float(start)) / float(delta)), 0)
    _check_new_constant([count], start.dtype)
    imp.set_const(outputs[0], (start + np.arange(count) * delta).astype(start.dtype))


def _check_new_constant(shape, dtype) -> None:
    """Refuse a folded constant with a negative dim, too many elements or no memory for it."""
    from ..ir.shapes import ShapeError, check_allocation, check_size
    from ..ir.types import TensorType, dtype_name
    try:
        t = TensorType(tuple(shape), dtype_name(dtype))
        check_size(t)
        check_allocation(t.nbytes, f"a constant of shape {list(shape)}")
    except (ShapeError, ValueError) as err:
        raise ConvertError(str(err)) from None


# ---- ops whose operands become IR attributes ------------------------------------------------

def _reshape(imp, inputs, outputs, attrs):
    shape = _ints(imp.const(inputs[1], "target shape"))
    src = imp.type_of(inputs[0]).shape
    if any(d < -1 for d in shape) or shape.count(-1) > 1:
        raise ConvertError(f"target shape {shape} may hold one -1 and no other negative dim")
    if not attrs.get("allowzero", 0):
        if any(d == 0 and i >= len(src) for i, d in enumerate(shape)):
            raise ConvertError(f"target shape {shape} copies a dim (0) the input {src} lacks")
        shape = [src[i] if d == 0 else d for i, d in enumerate(shape)]
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if not known or math.prod(src) % known:
            raise ConvertError(f"cannot reshape {src} into {shape}")
        shape[shape.index(-1)] = math.prod(src) // known
    imp.emit("Reshape", inputs[:1], outputs, shape=shape)


def _expand(imp, inputs, outputs, attrs):
    imp.emit("Expand", inputs[:1], outputs, shape=_ints(imp.const(inputs[1], "shape")))


def _tile(imp, inputs, outputs, attrs):
    imp.emit("Tile", inputs[:1], outputs, repeats=_ints(imp.const(inputs[1], "repeats")))


def _slice(imp, inputs, outputs, attrs):
    def operand(i, what):
        if imp.opset < 10:  # Slice-1: starts, ends and axes are attributes
            return list(attrs[what]) if what in attrs else None
        return _ints(imp.const(inputs[i], what)) if len(inputs) > i and inputs[i] else None
    starts, ends = operand(1, "starts"), operand(2, "ends")
    axes = operand(3, "axes")
    axes = list(range(len(starts))) if axes is None else axes
    steps = operand(4, "steps")
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ConvertError(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} "
                           "differ in length")
    if 0 in steps:
        raise ConvertError(f"steps {steps} include 0")
    axes = [_axis(imp, inputs[0], a) for a in axes]
    if len(set(axes)) != len(axes):
        raise ConvertError(f"axes {axes} repeat an axis")
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
    axis = _axis(imp, inputs[0], attrs.get("axis", 0))
    dim = imp.type_of(inputs[0]).shape[axis]
    if "split" in attrs:
        sizes = list(attrs["split"])
    elif len(inputs) > 1 and inputs[1]:
        sizes = _ints(imp.const(inputs[1], "split"))
    elif imp.opset >= 18 and "num_outputs" not in attrs:
        raise ConvertError("Split-18 needs the 'split' input or the num_outputs attribute")
    else:
        sizes = _equal_split(dim, attrs.get("num_outputs", len(outputs)), imp.opset)
    if len(sizes) != len(outputs) or any(s < 0 for s in sizes):
        raise ConvertError(f"split sizes {sizes} do not give the node's {len(outputs)} outputs")
    imp.emit("Split", inputs[:1], [o or imp.fresh("unused") for o in outputs], axis=axis,
             split=sizes)


def _equal_split(dim: int, parts: int, opset: int) -> list[int]:
    """Split-18 lets the last part be smaller; before 18 the parts must be equal."""
    if parts < 1:
        raise ConvertError(f"num_outputs {parts} must be >= 1")
    chunk = -(-dim // parts)
    if opset < 18 and dim % parts:
        raise ConvertError(f"dim {dim} does not split into {parts} equal parts")
    if (parts - 1) * chunk > dim:
        raise ConvertError(f"dim {dim} cannot be split into {parts} parts")
    return [min(chunk, dim - i * chunk) for i in range(parts)]


def _pad(imp, inputs, outputs, attrs):
    rank = imp.type_of(inputs[0]).rank
    if imp.opset < 11:  # Pad-2: pads and the fill value are attributes
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads, value = _ints(imp.const(inputs[1], "pads")), 0.0
        if len(inputs) > 2 and inputs[2]:
            fill = imp.const(inputs[2], "constant_value")
            if fill.size != 1:
                raise ConvertError(f"constant_value must be one element, it has {fill.size}")
            value = fill.reshape(-1)[0].item()
    axes = list(range(rank))
    if len(inputs) > 3 and inputs[3]:  # pads only for the listed axes
        axes = [_axis(imp, inputs[0], a) for a in _ints(imp.const(inputs[3], "axes"))]
    if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
        raise ConvertError(f"pads {pads} must hold 2 values per padded axis ({len(axes)})")
    full = [0] * (2 * rank)
    for i, a in enumerate(axes):
        full[a], full[a + rank] = pads[i], pads[i + len(axes)]
    mode = _choice(attrs, "mode", "constant", ("constant", "reflect", "edge", "wrap"))
    shape = imp.type_of(inputs[0]).shape
    kept = [d + min(full[i], 0) + min(full[i + rank], 0) for i, d in enumerate(shape)]
    if mode == "reflect" and any(max(full[i], full[i + rank]) >= k for i, k in enumerate(kept)):
        # numpy reflects again past the edge; onnxruntime and torch refuse: so do we
        raise ConvertError(f"reflect pads {full} must be smaller than the dims {list(shape)}")
    imp.emit("Pad", inputs[:1], outputs, pads=full, mode=mode, value=value)


def _trilu(imp, inputs, outputs, attrs):
    """Trilu's optional k input (a scalar int64) becomes the IR's k attribute."""
    k = 0
    if len(inputs) > 1 and inputs[1]:
        value = imp.const(inputs[1], "k")
        if value.size != 1:
            raise ConvertError(f"k must be one element, it has {value.size}")
        k = int(value.reshape(-1)[0])
    imp.emit("Trilu", inputs[:1], outputs, upper=int(attrs.get("upper", 1)), k=k)


def _clip(imp, inputs, outputs, attrs):
    bounds = {}
    for i, key in ((1, "min"), (2, "max")):
        if len(inputs) > i and inputs[i]:
            bound = imp.const(inputs[i], key)
            if bound.size != 1:
                raise ConvertError(f"{key} must be one element, it has {bound.size}")
            bounds[key] = bound.reshape(-1)[0].item()
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


def _flatten(imp, inputs, outputs, attrs):
    axis = attrs.get("axis", 1)
    if imp.opset < 11 and axis < 0:
        raise ConvertError(f"axis {axis}: negative axes arrive with Flatten-11 (opset 11)")
    imp.emit("Flatten", inputs[:1], outputs, axis=axis)


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
    if not attrs.get("spatial", 1):  # BatchNormalization-7: per-element statistics
        raise ConvertError("spatial=0 (per-element statistics) is not supported")
    imp.emit("BatchNormalization", inputs, outputs[:1], epsilon=attrs.get("epsilon", 1e-5))


def _gelu(imp, inputs, outputs, attrs):
    imp.emit("Gelu", inputs, outputs, approximate=_choice(attrs, "approximate", "none",
                                                          ("none", "tanh")))


def _softmax(ir_op: str):
    """Softmax and LogSoftmax: from opset 13 over one axis (default -1); before 13 over the
    input flattened to 2-D at `axis` (default 1), i.e. over every axis from `axis` on."""
    def convert(imp, inputs, outputs, attrs):
        x = imp.type_of(inputs[0])
        if imp.opset >= 13:
            imp.emit(ir_op, inputs[:1], outputs, axis=attrs.get("axis", -1))
            return
        axis = _axis(imp, inputs[0], attrs.get("axis", 1))
        if axis >= x.rank - 1:  # one trailing axis: both semantics agree
            imp.emit(ir_op, inputs[:1], outputs, axis=-1)
            return
        flat, flat_out = imp.fresh(inputs[0]), imp.fresh(outputs[0])
        imp.emit("Reshape", inputs[:1], [flat],
                 shape=[math.prod(x.shape[:axis]), math.prod(x.shape[axis:])])
        imp.emit(ir_op, [flat], [flat_out], axis=-1)
        imp.emit("Reshape", [flat_out], outputs, shape=list(x.shape))
    return convert


# ---- convolution and pooling ----------------------------------------------------------------

def _window_attrs(imp, x_name, kernel, attrs, ceil_mode=0):
    """Resolve auto_pad into explicit pads; fill default strides and dilations."""
    spatial = imp.type_of(x_name).shape[2:]
    nd = len(kernel)
    strides = list(attrs.get("strides", [1] * nd))
    dilations = list(attrs.get("dilations", [1] * nd))
    if len(spatial) != nd or len(strides) != nd or len(dilations) != nd:
        raise ConvertError(f"kernel {kernel}, strides {strides} and dilations {dilations} must "
                           f"each have one value per spatial dim of the input ({len(spatial)})")
    if min(strides + dilations + list(kernel), default=1) < 1:
        raise ConvertError(f"kernel {kernel}, strides {strides} and dilations {dilations} must "
                           "be >= 1")
    auto_pad = _choice(attrs, "auto_pad", "NOTSET", ("NOTSET", "SAME_UPPER", "SAME_LOWER",
                                                     "VALID"))
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
    kernel = imp.type_of(inputs[1]).shape[2:]
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != tuple(kernel):
        raise ConvertError(f"kernel_shape {list(attrs['kernel_shape'])} differs from the "
                           f"weight's spatial dims {list(kernel)}")
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
    "Sigmoid", "Softplus", "Softsign", "Mish", "HardSwish", "Where", "PRelu", "Add", "Sub", "Mul",
    "Div", "Pow", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "And", "Or", "Xor", "MatMul", "GlobalAveragePool", "GlobalMaxPool",
]

CONVERTERS = {name: same(name) for name in _SAME}
CONVERTERS.update({name: _variadic(name) for name in ("Max", "Min", "Sum", "Mean")})
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
    "Softmax": _softmax("Softmax"),
    "LogSoftmax": _softmax("LogSoftmax"),
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
    "Flatten": _flatten,
    "Gather": same("Gather", "axis"),
    "GatherElements": same("GatherElements", "axis"),
    "GatherND": same("GatherND", "batch_dims"),
    "Tile": _tile,
    "Pad": _pad,
    "Trilu": _trilu,
    # folded at import: shape arithmetic and constants
    "Constant": _constant,
    "Shape": _shape,
    "Size": _size,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
})
