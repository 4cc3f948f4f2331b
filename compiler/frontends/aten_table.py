"""The aten -> IR mapping table of the torch frontend: one small rule per aten op, grouped.

A rule takes the converter `cx` and the op's arguments in schema order (defaults filled in) and
returns the IR value of the node's output (a tuple for multi-output ops). Tensor arguments are
IR values (`Ref`) or constant torch tensors; `cx.tensor(x, dtype)` turns either (or a Python
number) into an IR value of that dtype. A rule raises `Unsupported` for argument values the IR
cannot express; the frontend reports those with the ops that have no rule at all.
"""

from __future__ import annotations

import numpy as np
import torch

from .aten_common import Unsupported, as_list
from .aten_nn import (
    _adaptive_avg_pool,
    _addmm,
    _avg_pool,
    _batch_norm_eval,
    _convolution,
    _group_norm,
    _layer_norm,
    _linear,
    _matmul,
    _max_pool,
    _rms_norm,
    _sdpa,
    _softmax,
)

aten = torch.ops.aten


def _axes(dims, rank):
    """Normalized reduction axes; None or [] means every axis, as in torch."""
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        return None
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    return [d % max(rank, 1) for d in dims]


# ---- rule factories --------------------------------------------------------------------------

def _unary(*ops, **attrs):
    """Unary IR ops applied in order, in the output dtype (so exp(int) and friends promote)."""
    def rule(cx, x, *_):
        y = cx.tensor(x, cx.out_dtype)
        for op in ops:
            y = cx.op(op, y, **attrs)
        return y
    return rule


def _arith(op, swap=False):
    """Binary arithmetic in the output dtype; torch's optional `alpha` scales the second input."""
    def rule(cx, a, b, alpha=1, *_):
        a, b = (b, a) if swap else (a, b)
        dtype = cx.out_dtype
        b = cx.tensor(b, dtype)
        if alpha != 1:
            b = cx.op("Mul", b, cx.tensor(alpha, dtype))
        return cx.op(op, cx.tensor(a, dtype), b)
    return rule


def _compare(op, negate=False):
    """Comparison in torch's promoted dtype of the two inputs; the result is bool."""
    def rule(cx, a, b):
        dtype = cx.promote(a, b)
        y = cx.op(op, cx.tensor(a, dtype), cx.tensor(b, dtype))
        return cx.op("Not", y) if negate else y
    return rule


def _logical(op):
    def rule(cx, a, b):
        if cx.out_dtype != "bool":
            raise Unsupported("bitwise ops on integers")
        return cx.op(op, cx.tensor(a, "bool"), cx.tensor(b, "bool"))
    return rule


def _passthrough(cx, x, *_):
    return x


def _reduce(op):
    def rule(cx, x, dims=None, keepdim=False, *_):
        x = cx.tensor(x, cx.out_dtype)
        return cx.op(op, x, axes=_axes(dims, cx.rank(x)), keepdims=int(keepdim))
    return rule


def _reduce_all(op):
    return lambda cx, x, *_: cx.op(op, cx.tensor(x, cx.out_dtype), axes=None, keepdims=0)


def _with_index(op, arg_op):
    """max.dim / min.dim: (values, indices)."""
    def rule(cx, x, dim, keepdim=False):
        axis = dim % cx.rank(x)
        return (cx.op(op, x, axes=[axis], keepdims=int(keepdim)),
                cx.op(arg_op, x, axis=axis, keepdims=int(keepdim)))
    return rule


def _arg(op):
    def rule(cx, x, dim=None, keepdim=False):
        if dim is None:
            x, dim, keepdim = cx.op("Reshape", x, shape=(int(np.prod(cx.shape(x))),)), 0, False
        return cx.op(op, x, axis=dim % cx.rank(x), keepdims=int(keepdim))
    return rule


def _var(cx, x, dims=None, correction=None, keepdim=False):
    """mean((x - mean(x))^2) * n / (n - correction); torch's default correction is 1."""
    x = cx.tensor(x, cx.out_dtype)
    shape = cx.shape(x)
    axes = _axes(dims, len(shape))
    count = int(np.prod([shape[a] for a in (axes or range(len(shape)))]))
    centered = cx.op("Sub", x, cx.op("ReduceMean", x, axes=axes, keepdims=1))
    sums = cx.op("ReduceSum", cx.op("Mul", centered, centered), axes=axes, keepdims=int(keepdim))
    correction = 1 if correction is None else correction
    return cx.op("Div", sums, cx.tensor(max(count - correction, 0), cx.out_dtype))


# ---- elementwise ops with arguments ---------------------------------------------------------

def _div(cx, a, b, rounding_mode=None):
    dtype = cx.out_dtype
    a, b = cx.tensor(a, dtype), cx.tensor(b, dtype)
    if rounding_mode is None:
        return cx.op("Div", a, b)
    integer = not dtype.startswith(("float", "bfloat"))
    if rounding_mode == "trunc":
        if integer:
            return cx.op("Div", a, b)  # the IR's integer Div truncates toward zero
        q = cx.op("Div", a, b)
        return cx.op("Mul", cx.op("Sign", q), cx.op("Floor", cx.op("Abs", q)))
    if integer:  # floor division: subtract the (divisor-signed) remainder, then divide exactly
        return cx.op("Div", cx.op("Sub", a, cx.op("Mod", a, b)), b)
    return cx.op("Floor", cx.op("Div", a, b))


def _pow(cx, base, exponent):
    dtype = cx.out_dtype
    return cx.op("Pow", cx.tensor(base, dtype), cx.tensor(exponent, dtype))


def _clamp(cx, x, low=None, high=None):
    dtype = cx.out_dtype
    y = cx.tensor(x, dtype)
    if isinstance(low, (int, float, type(None))) and isinstance(high, (int, float, type(None))):
        return cx.op("Clip", y, min=low, max=high)
    if low is not None:
        y = cx.op("Max", y, cx.tensor(low, dtype))
    if high is not None:
        y = cx.op("Min", y, cx.tensor(high, dtype))
    return y


def _where(cx, cond, a, b):
    dtype = cx.out_dtype
    return cx.op("Where", cx.tensor(cond, "bool"), cx.tensor(a, dtype), cx.tensor(b, dtype))


def _elu(cx, x, alpha=1.0, scale=1.0, input_scale=1.0):
    if input_scale != 1:
        raise Unsupported("elu with input_scale != 1")
    y = cx.op("Elu", x, alpha=alpha)
    return y if scale == 1 else cx.op("Mul", y, cx.tensor(scale, cx.out_dtype))


def _softplus(cx, x, beta=1.0, threshold=20.0):
    # Above `threshold` torch returns x itself; softplus(x) equals x there in float precision.
    if beta == 1:
        return cx.op("Softplus", x)
    scaled = cx.op("Softplus", cx.op("Mul", x, cx.tensor(beta, cx.out_dtype)))
    return cx.op("Div", scaled, cx.tensor(beta, cx.out_dtype))


def _to_copy(cx, x, dtype=None, *_):
    return cx.tensor(x, cx.out_dtype)


# ---- data movement --------------------------------------------------------------------------

def _reshape(cx, x, *_):
    return cx.op("Reshape", x, shape=cx.out_shape)


def _expand(cx, x, *_):
    if cx.shape(x) == cx.out_shape:
        return x
    return cx.op("Expand", x, shape=cx.out_shape)


def _permute(cx, x, dims):
    rank = cx.rank(x)
    return cx.op("Transpose", x, perm=[d % rank for d in dims])


def _transpose(cx, x, dim0=0, dim1=1):
    perm = list(range(cx.rank(x)))
    if perm:
        perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
    return cx.op("Transpose", x, perm=perm)


def _unsqueeze(cx, x, dim):
    return cx.op("Unsqueeze", x, axes=[dim % (cx.rank(x) + 1)])


def _squeeze(cx, x, dims=None):
    shape = cx.shape(x)
    dims = range(len(shape)) if dims is None else as_list(dims)
    axes = sorted({d % len(shape) for d in dims if shape[d] == 1}) if shape else []
    return cx.op("Squeeze", x, axes=axes) if axes else x


def _cat(cx, tensors, dim=0):
    dtype = cx.out_dtype
    parts = [cx.tensor(t, dtype) for t in tensors if cx.shape(t) != (0,)]
    return parts[0] if len(parts) == 1 else cx.op("Concat", *parts, axis=dim)


def _split_sizes(cx, x, sizes, dim=0):
    return tuple(cx.op("Split", x, axis=dim % cx.rank(x), split=sizes, outputs=len(sizes))
                 if len(sizes) > 1 else (x,))


def _split(cx, x, size, dim=0):
    total = cx.shape(x)[dim]
    return _split_sizes(cx, x, [min(size, total - s) for s in range(0, total, size)], dim)


def _slice(cx, x, dim=0, start=None, end=None, step=1):
    size = cx.shape(x)[dim]
    start, end, step = slice(start, end, step).indices(size)
    if (start, end, step) == (0, size, 1):
        return x
    return cx.op("Slice", x, starts=[start], ends=[end], axes=[dim % cx.rank(x)],
                 steps=[step])


def _take(cx, x, dim, index):
    """select.int (a scalar index drops the dim) and index_select (a 1-D index keeps it)."""
    return cx.op("Gather", x, cx.tensor(index, "int64"), axis=dim % cx.rank(x))


def _embedding(cx, weight, indices, *_):
    return cx.op("Gather", weight, cx.tensor(indices, "int64"), axis=0)


def _index(cx, x, indices):
    """x[i0, i1, ...] with index tensors on adjacent dims: flatten those dims, then Gather."""
    positions = [i for i, idx in enumerate(indices) if idx is not None]
    if positions != list(range(positions[0], positions[-1] + 1)):
        raise Unsupported("index tensors on non-adjacent dims")
    if any(cx.dtype(indices[i]) == "bool" for i in positions):
        raise Unsupported("boolean mask indexing")
    shape = cx.shape(x)
    first, last = positions[0], positions[-1]
    dims = shape[first:last + 1]
    idxs = [indices[i] for i in positions]
    if len(idxs) == 1:
        flat = cx.tensor(idxs[0], "int64")
    elif all(isinstance(i, torch.Tensor) for i in idxs):
        arrays = np.broadcast_arrays(*(i.numpy() % d for i, d in zip(idxs, dims)))
        flat = cx.tensor(torch.from_numpy(np.ravel_multi_index(arrays, dims).astype(np.int64)))
    else:  # the row-major flat index, built in the graph; Mod wraps negative indices
        flat = None
        for idx, size in zip(idxs, dims):
            term = cx.op("Mod", cx.tensor(idx, "int64"), cx.tensor(size, "int64"))
            flat = term if flat is None else cx.op(
                "Add", cx.op("Mul", flat, cx.tensor(size, "int64")), term)
    if len(idxs) > 1:
        x = cx.op("Reshape", x, shape=shape[:first] + (int(np.prod(dims)),) + shape[last + 1:])
    return cx.op("Gather", x, flat, axis=first)


def _constant_pad(cx, x, pad, value=0):
    rank = cx.rank(x)
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):  # torch lists (begin, end) pairs from the last dim backwards
        begins[rank - 1 - i], ends[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    return cx.op("Pad", x, pads=begins + ends, value=float(value))


def _repeat(cx, x, repeats):
    shape = cx.shape(x)
    if len(repeats) > len(shape):
        x = cx.op("Reshape", x, shape=(1,) * (len(repeats) - len(shape)) + shape)
    return cx.op("Tile", x, repeats=repeats)


# ---- the table ------------------------------------------------------------------------------

UNARY = {
    aten.abs: "Abs", aten.neg: "Neg", aten.sign: "Sign", aten.exp: "Exp", aten.log: "Log",
    aten.sqrt: "Sqrt", aten.reciprocal: "Reciprocal", aten.floor: "Floor", aten.ceil: "Ceil",
    aten.round: "Round", aten.sin: "Sin", aten.cos: "Cos", aten.tan: "Tan", aten.asin: "Asin",
    aten.acos: "Acos", aten.atan: "Atan", aten.sinh: "Sinh", aten.cosh: "Cosh",
    aten.tanh: "Tanh", aten.erf: "Erf", aten.relu: "Relu", aten.sigmoid: "Sigmoid",
    aten.silu: "Silu", aten.hardswish: "HardSwish",
}

RULES = {
    # elementwise: unary math and activations
    **{op: _unary(name) for op, name in UNARY.items()},
    aten.rsqrt: _unary("Sqrt", "Reciprocal"),
    aten.log1p: lambda cx, x: cx.op("Log", cx.op("Add", cx.tensor(x, cx.out_dtype),
                                                 cx.tensor(1, cx.out_dtype))),
    aten.expm1: lambda cx, x: cx.op("Sub", cx.op("Exp", cx.tensor(x, cx.out_dtype)),
                                    cx.tensor(1, cx.out_dtype)),
    aten.isnan: lambda cx, x: cx.op("IsNaN", x), aten.isinf: lambda cx, x: cx.op("IsInf", x),
    aten.logical_not: lambda cx, x: cx.op("Not", cx.tensor(x, "bool")),
    aten.bitwise_not: lambda cx, x: cx.op("Not", cx.tensor(x, "bool")),
    aten.gelu: lambda cx, x, approximate="none": cx.op("Gelu", x, approximate=approximate),
    aten.hardsigmoid: _unary("HardSigmoid", alpha=1 / 6, beta=0.5),
    aten.leaky_relu: lambda cx, x, slope=0.01: cx.op("LeakyRelu", x, alpha=slope),
    aten.elu: _elu,
    aten.softplus: _softplus,
    aten.clamp: _clamp, aten.hardtanh: _clamp,
    aten.clamp_min: lambda cx, x, low: _clamp(cx, x, low, None),
    aten.clamp_max: lambda cx, x, high: _clamp(cx, x, None, high),
    aten.where: _where,
    aten._to_copy: _to_copy,
    # copies and eval-mode dropout vanish
    aten.clone: _passthrough, aten.alias: _passthrough, aten.detach: _passthrough,
    aten.contiguous: _passthrough, aten.lift_fresh_copy: _passthrough,
    aten.dropout: _passthrough, aten.feature_dropout: _passthrough,
    # elementwise: binary
    aten.add: _arith("Add"), aten.sub: _arith("Sub"), aten.rsub: _arith("Sub", swap=True),
    aten.mul: _arith("Mul"), aten.div: _div, aten.pow: _pow,
    aten.maximum: _arith("Max"), aten.minimum: _arith("Min"),
    aten.remainder: _arith("Mod"),
    aten.fmod: lambda cx, a, b: cx.op("Mod", cx.tensor(a, cx.out_dtype),
                                      cx.tensor(b, cx.out_dtype), fmod=1),
    aten.eq: _compare("Equal"), aten.ne: _compare("Equal", negate=True),
    aten.lt: _compare("Less"), aten.le: _compare("LessOrEqual"),
    aten.gt: _compare("Greater"), aten.ge: _compare("GreaterOrEqual"),
    aten.logical_and: _logical("And"), aten.logical_or: _logical("Or"),
    aten.logical_xor: _logical("Xor"), aten.bitwise_and: _logical("And"),
    aten.bitwise_or: _logical("Or"), aten.bitwise_xor: _logical("Xor"),
    # reductions
    aten.sum.dim_IntList: _reduce("ReduceSum"), aten.sum.default: _reduce_all("ReduceSum"),
    aten.mean.dim: _reduce("ReduceMean"), aten.mean.default: _reduce_all("ReduceMean"),
    aten.prod.dim_int: _reduce("ReduceProd"), aten.prod.default: _reduce_all("ReduceProd"),
    aten.amax: _reduce("ReduceMax"), aten.amin: _reduce("ReduceMin"),
    aten.max.default: _reduce_all("ReduceMax"), aten.min.default: _reduce_all("ReduceMin"),
    aten.max.dim: _with_index("ReduceMax", "ArgMax"),
    aten.min.dim: _with_index("ReduceMin", "ArgMin"),
    aten.argmax: _arg("ArgMax"), aten.argmin: _arg("ArgMin"),
    aten.logsumexp: _reduce("ReduceLogSumExp"), aten.var.correction: _var,
    # linear algebra
    aten.linear: _linear, aten.addmm: _addmm,
    aten.mm: _matmul, aten.bmm: _matmul, aten.matmul: _matmul,
    aten.scaled_dot_product_attention: _sdpa,
    # normalization
    aten.layer_norm: _layer_norm, aten.native_layer_norm: _layer_norm,
    aten.rms_norm: _rms_norm,
    aten._native_batch_norm_legit_no_training: _batch_norm_eval,
    aten.native_group_norm: _group_norm,
    aten.softmax: _softmax("Softmax"), aten._softmax: _softmax("Softmax"),
    aten.log_softmax: _softmax("LogSoftmax"), aten._log_softmax: _softmax("LogSoftmax"),
    # convolution and pooling
    aten.convolution: _convolution,
    aten.max_pool2d: _max_pool, aten.max_pool2d_with_indices: _max_pool,
    aten.max_pool1d: _max_pool,
    aten.avg_pool2d: _avg_pool, aten.avg_pool1d: _avg_pool,
    aten.adaptive_avg_pool2d: _adaptive_avg_pool, aten._adaptive_avg_pool2d: _adaptive_avg_pool,
    aten.adaptive_avg_pool1d: _adaptive_avg_pool,
    # data movement
    aten.view: _reshape, aten._unsafe_view: _reshape, aten.reshape: _reshape,
    aten.flatten: _reshape, aten.expand: _expand,
    aten.permute: _permute, aten.transpose: _transpose, aten.t: _transpose,
    aten.unsqueeze: _unsqueeze, aten.squeeze: _squeeze,
    aten.cat: _cat, aten.split_with_sizes: _split_sizes, aten.split.Tensor: _split,
    aten.slice.Tensor: _slice, aten.select.int: _take, aten.index_select: _take,
    aten.index.Tensor: _index, aten.embedding: _embedding,
    aten.gather: lambda cx, x, dim, index, *_: cx.op(
        "GatherElements", x, cx.tensor(index, "int64"), axis=dim % cx.rank(x)),
    aten.constant_pad_nd: _constant_pad, aten.repeat: _repeat,
    aten.triu: lambda cx, x, diagonal=0: cx.op("Trilu", x, upper=1, k=diagonal),
    aten.tril: lambda cx, x, diagonal=0: cx.op("Trilu", x, upper=0, k=diagonal),
    aten.mish: lambda cx, x: cx.op("Mish", x),
}

# Ops kept whole by `run_decompositions` because a rule above maps them onto one IR op (or a
# short, clear chain) instead of the many primitive ops their decomposition would produce.
PRESERVED = [
    aten.linear.default, aten.matmul.default, aten.layer_norm.default, aten.rms_norm.default,
    aten.silu.default, aten.hardswish.default, aten.hardsigmoid.default,
    aten.softplus.default, aten.mish.default, aten.triu.default, aten.tril.default,
    aten.softmax.int, aten.log_softmax.int,
    aten.scaled_dot_product_attention.default, aten.max_pool2d.default,
    aten.adaptive_avg_pool2d.default,
]

# Ops with no data result (runtime assertions, tokens): dropped.
IGNORED = {
    aten._assert_tensor_metadata, aten._assert_scalar, aten._assert_async,
    aten.sym_constrain_range_for_size, aten.sym_constrain_range,
}

# Ops whose result depends only on shapes and dtypes, never on tensor values: folded at import
# with zero-filled stand-ins for graph tensors (`empty*` folds to zeros, as good as any).
SHAPE_ONLY = {
    aten.zeros_like: aten.zeros_like, aten.ones_like: aten.ones_like,
    aten.full_like: aten.full_like, aten.empty_like: aten.zeros_like,
    aten.new_zeros: aten.new_zeros, aten.new_ones: aten.new_ones,
    aten.new_full: aten.new_full, aten.new_empty: aten.new_zeros,
}


def lookup(target):
    """The rule for an OpOverload: its own entry, else its overload packet's."""
    rule = RULES.get(target)
    if rule is None and hasattr(target, "overloadpacket"):
        rule = RULES.get(target.overloadpacket)
    return rule
