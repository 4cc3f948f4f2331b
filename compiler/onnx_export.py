"""IR -> ONNX exporter, the inverse of the ONNX frontend: one emission-table entry per IR op.

Each entry writes one or a few ONNX nodes (opset 18 by default). Operands the IR keeps as
attributes (shapes, axes, pads, clip bounds) go back to being initializers, and ops that opset
18 lacks (Gelu, Silu, RMSNormalization) are written as their formulas.

    >>> graph = get_workload("rmsnorm_matmul:small")
    >>> model = to_onnx(graph)                  # an onnx.ModelProto, opset 18
    >>> save_onnx(graph, "rmsnorm_matmul.onnx")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import MlcError
from .ir.graph import Graph, Node
from .ir.ops import OPS, resolve_attrs
from .ir.shapes import norm_axis
from .ir.types import TensorType, np_dtype

MIN_OPSET = 18  # Split/Reduce*/Pad take their shape-like operands as inputs from here on
DTYPE_OPSETS = {  # dtypes newer than opset 18 -> the opset that introduced them
    **dict.fromkeys(("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"), 19),
    "int4": 21, "uint4": 21, "float4_e2m1fn": 23, "int2": 25, "uint2": 25,
}
EXTERNAL_DATA_BYTES = 1 << 30  # larger models keep their weights in a file beside the .onnx


def onnx_elem_type(dtype: str) -> int:
    """The ONNX TensorProto element type of an IR dtype name, e.g. "float32" -> 1."""
    return helper.np_dtype_to_tensor_dtype(np_dtype(dtype))


def _value_info(name: str, tensor_type: TensorType) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx_elem_type(tensor_type.dtype),
                                         list(tensor_type.shape))


class _Exporter:
    """Collects ONNX nodes and initializers while the emission table walks the IR nodes."""

    def __init__(self, graph: Graph, opset: int):
        self.graph = graph
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.taken = set(graph.types) | {node.name for node in graph.nodes}
        self.node_names: set[str] = set()
        self.node_name = ""
        self._counter = 0

    def fresh(self, stem: str) -> str:
        """A name no IR value, node or earlier fresh name uses."""
        while True:
            self._counter += 1
            name = f"{stem}__{self._counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def type_of(self, name: str) -> TensorType:
        return self.graph.types[name]

    def initializer(self, value, dtype: str, stem: str) -> str:
        """A fresh initializer holding `value` as `dtype` (operands, formula constants)."""
        name = self.fresh(f"{self.node_name}.{stem}")
        array = np.asarray(value).astype(np_dtype(dtype))
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, values, stem: str) -> str:
        """A 1-D int64 initializer, the form ONNX takes shapes, axes and pads in."""
        return self.initializer(np.asarray(list(values), dtype=np.int64).reshape(-1), "int64",
                                stem)

    def emit(self, op_type: str, inputs, outputs=None, **attrs) -> str:
        """Add one ONNX node; returns its (first) output, a fresh name unless `outputs` given."""
        outputs = list(outputs) if outputs is not None else [self.fresh(
            f"{self.node_name}.{op_type.lower()}")]
        name = self.node_name if self.node_name not in self.node_names else self.fresh(
            f"{self.node_name}/{op_type}")
        self.node_names.add(name)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name, **attrs))
        return outputs[0]


Emitter = Callable[[_Exporter, Node, dict[str, Any]], None]


# ---- generic emitters ----------------------------------------------------------------------

def same(*attr_names: str) -> Emitter:
    """The ONNX op has the IR op's name, inputs and outputs; copy the named attributes."""
    def emit(ex, node, attrs):
        kept = {k: attrs[k] for k in attr_names}
        ex.emit(node.op, node.inputs, node.outputs, **kept)
    return emit


def operands(*attr_names: str) -> Emitter:
    """The named IR attributes become trailing int64 initializer inputs, in order."""
    def emit(ex, node, attrs):
        extra = [ex.ints(attrs[k], k) for k in attr_names]
        ex.emit(node.op, [*node.inputs, *extra], node.outputs)
    return emit


def reduction(ex, node, attrs):
    """IR axes None reduces all axes and () none; ONNX says so by no axes, or empty and noop."""
    axes = attrs["axes"]
    operand = [] if axes is None else [ex.ints(axes, "axes")]
    noop = 1 if axes is not None and len(axes) == 0 else None
    ex.emit(node.op, [*node.inputs, *operand], node.outputs, keepdims=attrs["keepdims"],
            noop_with_empty_axes=noop)


# ---- elementwise ops with operands or opset-dependent forms --------------------------------

def _scalar(ex, node, value, stem: str) -> str:
    """A rank-0 constant in the dtype of the node's first input."""
    return ex.initializer(value, ex.type_of(node.inputs[0]).dtype, stem)


def _clip(ex, node, attrs):
    bounds = ["" if attrs[k] is None else _scalar(ex, node, attrs[k], k) for k in ("min", "max")]
    while bounds and not bounds[-1]:
        bounds.pop()
    ex.emit("Clip", [node.inputs[0], *bounds], node.outputs)


def _cast(ex, node, attrs):
    saturate = attrs["saturate"] if ex.opset >= 19 else None  # the attribute is new in 19
    ex.emit("Cast", node.inputs, node.outputs, to=onnx_elem_type(attrs["to"]), saturate=saturate)


def _silu(ex, node, attrs):
    x = node.inputs[0]
    ex.emit("Mul", [x, ex.emit("Sigmoid", [x])], node.outputs)


def _gelu(ex, node, attrs):
    """0.5 x (1 + erf(x / sqrt 2)), or with tanh(sqrt(2/pi) (x + 0.044715 x^3)) (opset < 20)."""
    if ex.opset >= 20:
        return same("approximate")(ex, node, attrs)
    x = node.inputs[0]
    if attrs["approximate"] == "tanh":
        cube = ex.emit("Mul", [ex.emit("Mul", [x, x]), x])
        inner = ex.emit("Add", [x, ex.emit("Mul", [cube, _scalar(ex, node, 0.044715, "c")])])
        scaled = ex.emit("Mul", [inner, _scalar(ex, node, math.sqrt(2 / math.pi), "k")])
        curve = ex.emit("Tanh", [scaled])
    else:
        curve = ex.emit("Erf", [ex.emit("Div", [x, _scalar(ex, node, math.sqrt(2), "sqrt2")])])
    one_plus = ex.emit("Add", [curve, _scalar(ex, node, 1.0, "one")])
    half_x = ex.emit("Mul", [x, _scalar(ex, node, 0.5, "half")])
    ex.emit("Mul", [half_x, one_plus], node.outputs)


# ---- normalizations ------------------------------------------------------------------------

def _rms_norm(ex, node, attrs):
    """x / sqrt(mean(x^2 over axes axis..rank-1) + eps) * scale, in x's dtype (opset < 23)."""
    if ex.opset >= 23:
        return same("axis", "epsilon")(ex, node, attrs)
    x, scale = node.inputs
    rank = ex.type_of(x).rank
    axes = ex.ints(range(norm_axis(attrs["axis"], rank), rank), "axes")
    mean_square = ex.emit("ReduceMean", [ex.emit("Mul", [x, x]), axes], keepdims=1)
    shifted = ex.emit("Add", [mean_square, _scalar(ex, node, attrs["epsilon"], "epsilon")])
    normed = ex.emit("Div", [x, ex.emit("Sqrt", [shifted])])
    ex.emit("Mul", [normed, scale], node.outputs)


def _layer_norm(ex, node, attrs):
    """Mean and InvStdDev are optional outputs, float32 in ONNX; cast where the IR's differ."""
    outputs, casts = list(node.outputs), []
    for i, name in enumerate(node.outputs[1:], 1):
        if ex.type_of(name).dtype != "float32":
            outputs[i] = ex.fresh(f"{name}.float32")
            casts.append((outputs[i], name))
    ex.emit("LayerNormalization", node.inputs, outputs, axis=attrs["axis"],
            epsilon=attrs["epsilon"])
    for stashed, name in casts:
        ex.emit("Cast", [stashed], [name], to=onnx_elem_type(ex.type_of(name).dtype))


# ---- convolution and pooling ---------------------------------------------------------------

_WINDOW = ("strides", "pads", "dilations")


def _average_pool(ex, node, attrs):
    dilations = attrs["dilations"]
    if ex.opset < 19:  # AveragePool gained dilations in opset 19
        if any(d != 1 for d in dilations):
            raise ValueError(f"node {node.name!r}: AveragePool with dilations {list(dilations)}"
                             " needs opset 19 or later; call to_onnx(graph, opset=19)")
        dilations = None
    ex.emit("AveragePool", node.inputs, node.outputs, kernel_shape=attrs["kernel_shape"],
            strides=attrs["strides"], pads=attrs["pads"], dilations=dilations,
            ceil_mode=attrs["ceil_mode"], count_include_pad=attrs["count_include_pad"])


# ---- data movement -------------------------------------------------------------------------

def _reshape(ex, node, attrs):
    shape = attrs["shape"]
    # A 0 in the target copies the input dim unless allowzero; the IR's 0 means an empty dim.
    allowzero = 1 if 0 in shape else None
    ex.emit("Reshape", [node.inputs[0], ex.ints(shape, "shape")], node.outputs,
            allowzero=allowzero)


def _axes_op(ex, node, attrs):
    """Squeeze/Unsqueeze; ONNX's Squeeze without axes drops every 1, the IR's drops none."""
    if not attrs["axes"]:
        ex.emit("Identity", node.inputs, node.outputs)
    else:
        ex.emit(node.op, [node.inputs[0], ex.ints(attrs["axes"], "axes")], node.outputs)


def _split(ex, node, attrs):
    ex.emit("Split", [node.inputs[0], ex.ints(attrs["split"], "split")], node.outputs,
            axis=attrs["axis"])


def _fused_region(ex, node, attrs):
    raise MlcError(f"node {node.name!r} is a fused µGraph kernel (MuGraphCall), which ONNX "
                   "cannot express; export the model before `mlc optimize`")


def _trilu(ex, node, attrs):
    """ONNX Trilu takes k as an optional scalar int64 input; the IR keeps it as an attribute."""
    k = ex.initializer(np.int64(attrs["k"]), "int64", "k")
    ex.emit("Trilu", [*node.inputs, k], node.outputs, upper=int(attrs["upper"]))


def _pad(ex, node, attrs):
    inputs = [node.inputs[0], ex.ints(attrs["pads"], "pads")]
    if attrs["mode"] == "constant" and attrs["value"] != 0:
        inputs.append(_scalar(ex, node, attrs["value"], "value"))
    ex.emit("Pad", inputs, node.outputs, mode=attrs["mode"])


# ---- quantized weights ---------------------------------------------------------------------

def _unpack_indices(ex, packed: str, bits: int, shape: tuple[int, ...]) -> str:
    """int64 indices of `shape` from a little-endian `bits`-bit stream, in standard ONNX ops.

    Index i starts at stream bit i*bits: byte (i*bits) // 8, shift (i*bits) % 8. Two adjacent
    bytes (the stream padded by one zero byte) hold every index, so the index is
    ((byte[b] | byte[b + 1] << 8) >> shift) & (2**bits - 1), computed in uint32: BitShift
    takes unsigned types only, and onnxruntime has no uint16 BitShift kernel.
    """
    scalar = ex.initializer  # rank-0 constants: Range bounds, shift amounts, the mask
    one, eight = scalar(1, "int64", "one"), scalar(8, "int64", "eight")
    positions = ex.emit("Range", [scalar(0, "int64", "zero"),
                                  scalar(math.prod(shape), "int64", "count"), one])
    start = ex.emit("Mul", [positions, scalar(bits, "int64", "bits")])
    byte, shift = ex.emit("Div", [start, eight]), ex.emit("Mod", [start, eight])
    padded = ex.emit("Concat", [packed, ex.initializer(np.zeros(1), "uint8", "pad")], axis=0)
    words = ex.emit("Cast", [padded], to=onnx.TensorProto.UINT32)
    low = ex.emit("Gather", [words, byte])
    high = ex.emit("Gather", [words, ex.emit("Add", [byte, one])])
    high = ex.emit("BitShift", [high, scalar(8, "uint32", "eight")], direction="LEFT")
    pairs = ex.emit("BitwiseOr", [low, high])
    shift = ex.emit("Cast", [shift], to=onnx.TensorProto.UINT32)
    shifted = ex.emit("BitShift", [pairs, shift], direction="RIGHT")
    index = ex.emit("BitwiseAnd", [shifted, scalar((1 << bits) - 1, "uint32", "mask")])
    index = ex.emit("Cast", [index], to=onnx.TensorProto.INT64)
    return ex.emit("Reshape", [index, ex.ints(shape, "shape")],
                   allowzero=1 if 0 in shape else None)


def _codebook_dequantize(ex, node, attrs):
    """Unpack the indices, then Gather from the codebook (per channel: from the flattened
    [C, K] codebook at channel * K + index, the channel broadcast along `axis`)."""
    packed, codebook = node.inputs
    shape, axis = tuple(attrs["shape"]), attrs["axis"]
    index = _unpack_indices(ex, packed, attrs["bits"], shape)
    if axis is None:
        ex.emit("Gather", [codebook, index], node.outputs)
        return
    axis = norm_axis(axis, len(shape))
    entries = ex.type_of(codebook).shape[-1]
    row_start = np.arange(shape[axis]).reshape((-1,) + (1,) * (len(shape) - axis - 1)) * entries
    flat_index = ex.emit("Add", [index, ex.initializer(row_start, "int64", "row_start")])
    flat_codebook = ex.emit("Reshape", [codebook, ex.ints([-1], "flat")])
    ex.emit("Gather", [flat_codebook, flat_index], node.outputs)


# ---- the table -----------------------------------------------------------------------------

_PLAIN = [
    # ops whose ONNX node is the IR node as is: same inputs, outputs, and no attributes
    "Identity", "Neg", "Abs", "Sign", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil",
    "Round", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Tanh", "Erf", "Not",
    "IsNaN", "Relu", "Sigmoid", "Softplus", "Softsign", "Mish", "HardSwish", "Where", "PRelu",
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less",
    "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "MatMul", "GlobalAveragePool",
    "GlobalMaxPool",
]

EMITTERS: dict[str, Emitter] = {name: same() for name in _PLAIN}
EMITTERS.update({
    # elementwise ops with attributes, operands, or no opset-18 ONNX op
    "IsInf": same("detect_negative", "detect_positive"),
    "LeakyRelu": same("alpha"),
    "Elu": same("alpha"),
    "Selu": same("alpha", "gamma"),
    "HardSigmoid": same("alpha", "beta"),
    "Mod": same("fmod"),
    "Clip": _clip,
    "Cast": _cast,
    "Silu": _silu,
    "Gelu": _gelu,
    # reductions
    **{name: reduction for name in (
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")},
    "ArgMax": same("axis", "keepdims", "select_last_index"),
    "ArgMin": same("axis", "keepdims", "select_last_index"),
    # linear algebra and row-wise normalizations
    "Gemm": same("alpha", "beta", "transA", "transB"),
    "Softmax": same("axis"),
    "LogSoftmax": same("axis"),
    "LayerNormalization": _layer_norm,
    "RMSNormalization": _rms_norm,
    "BatchNormalization": same("epsilon"),
    # convolution and pooling (pads are explicit in the IR)
    "Conv": same(*_WINDOW, "group"),
    "MaxPool": same(*_WINDOW, "kernel_shape", "ceil_mode"),
    "AveragePool": _average_pool,
    # data movement
    "Reshape": _reshape,
    "Transpose": same("perm"),
    "Concat": same("axis"),
    "Split": _split,
    "Slice": operands("starts", "ends", "axes", "steps"),
    "Squeeze": _axes_op,
    "Unsqueeze": _axes_op,
    "Expand": operands("shape"),
    "Flatten": same("axis"),
    "Gather": same("axis"),
    "GatherElements": same("axis"),
    "GatherND": same("batch_dims"),
    "Tile": operands("repeats"),
    "Pad": _pad,
    "Trilu": _trilu,
    # quantized weights
    "CodebookDequantize": _codebook_dequantize,
    "MuGraphCall": _fused_region,
})


# ---- entry points --------------------------------------------------------------------------

def to_onnx(graph: Graph, opset: int = 18) -> onnx.ModelProto:
    """The graph as an ONNX model with static shapes; weights become initializers.

    IR value names are kept; constants the exporter adds get fresh names.

    >>> onnx.checker.check_model(to_onnx(get_workload("gqa:small")), full_check=True)
    """
    if opset < MIN_OPSET:
        raise ValueError(f"mlc exports ONNX opset {MIN_OPSET} or later, not {opset}")
    for dtype in sorted({t.dtype for t in graph.types.values()}):
        if DTYPE_OPSETS.get(dtype, MIN_OPSET) > opset:
            raise ValueError(f"graph {graph.name!r} uses {dtype}, which ONNX has from opset "
                             f"{DTYPE_OPSETS[dtype]}; call to_onnx(graph, opset="
                             f"{DTYPE_OPSETS[dtype]})")
    missing = sorted({node.op for node in graph.nodes} - set(EMITTERS))
    if missing:
        raise NotImplementedError(f"no ONNX export for IR op(s) {missing}; add them to "
                                  "mlc.compiler.onnx_export.EMITTERS")
    ex = _Exporter(graph, opset)
    for node in graph.nodes:
        ex.node_name = node.name or node.op.lower()
        EMITTERS[node.op](ex, node, resolve_attrs(OPS[node.op], node.attrs))
    weights = [numpy_helper.from_array(np.asarray(value), name)
               for name, value in graph.weights.items()]
    boundary = set(graph.inputs) | set(graph.weights) | set(graph.outputs)
    produced = [out for node in graph.nodes for out in node.outputs if out not in boundary]
    onnx_graph = helper.make_graph(
        ex.nodes, graph.name,
        inputs=[_value_info(name, t) for name, t in graph.inputs.items()],
        outputs=[_value_info(name, graph.types[name]) for name in graph.outputs],
        initializer=weights + ex.initializers,
        value_info=[_value_info(name, graph.types[name]) for name in produced])
    opset_id = helper.make_opsetid("", opset)
    model = helper.make_model(onnx_graph, opset_imports=[opset_id], producer_name="mlc")
    model.ir_version = helper.find_min_ir_version_for([opset_id])
    return model


def save_onnx(graph: Graph, path, opset: int = 18) -> Path:
    """Export and write `path`; weights over 1 GiB go to `<name>.data` beside it."""
    path = Path(path)
    model = to_onnx(graph, opset)
    external = sum(w.nbytes for w in graph.weights.values()) > EXTERNAL_DATA_BYTES
    onnx.save_model(model, str(path), save_as_external_data=external,
                    location=f"{path.name}.data")
    return path
