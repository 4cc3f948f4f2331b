"""Shape rules for the op table: each maps input TensorTypes and attributes to output types.

A rule raises ShapeError with a plain description when the inputs cannot go together.
"""

from __future__ import annotations

import math

import numpy as np

from .types import FLOAT_DTYPES, TensorType, available_memory, format_bytes


class ShapeError(ValueError):
    """Inputs of an op have shapes or dtypes that the op cannot take."""


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"shapes {' and '.join(map(str, shapes))} do not broadcast") from None


# ---- generic rules -------------------------------------------------------------------------

def same(types, attrs):
    """One output with the first input's type (elementwise unary ops)."""
    return [types[0]]


def broadcast_same_dtype(types, attrs):
    """Elementwise n-ary op: broadcast shapes, dtype of the first input."""
    return [TensorType(broadcast(*(t.shape for t in types)), types[0].dtype)]


def broadcast_bool(types, attrs):
    """Comparison: broadcast shapes, bool result."""
    return [TensorType(broadcast(*(t.shape for t in types)), "bool")]


def where(types, attrs):
    return [TensorType(broadcast(*(t.shape for t in types)), types[1].dtype)]


def cast(types, attrs):
    return [TensorType(types[0].shape, attrs["to"])]


def reduce(types, attrs):
    shape = types[0].shape
    axes = attrs["axes"]
    axes = range(len(shape)) if axes is None else [norm_axis(a, len(shape)) for a in axes]
    if len(set(axes)) != len(axes):
        raise ShapeError(f"reduction axes {list(attrs['axes'])} repeat an axis")
    axes = set(axes)
    if attrs["keepdims"]:
        out = tuple(1 if i in axes else d for i, d in enumerate(shape))
    else:
        out = tuple(d for i, d in enumerate(shape) if i not in axes)
    return [TensorType(out, types[0].dtype)]


def arg_reduce(types, attrs):
    shape = types[0].shape
    if not shape:
        raise ShapeError("ArgMax/ArgMin need an input of rank >= 1")
    axis = norm_axis(attrs["axis"], len(shape))
    if shape[axis] == 0:
        raise ShapeError(f"ArgMax/ArgMin over axis {axis} of {shape}: the axis is empty")
    out = list(shape)
    if attrs["keepdims"]:
        out[axis] = 1
    else:
        del out[axis]
    return [TensorType(tuple(out), "int64")]


# ---- linear algebra ------------------------------------------------------------------------

def _same_dtype(types, op):
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        raise ShapeError(f"{op} operands have different dtypes {sorted(dtypes)}; insert a Cast")


def matmul(types, attrs):
    _same_dtype(types, "MatMul")
    a, b = types[0].shape, types[1].shape
    if not a or not b:
        raise ShapeError("MatMul inputs must have rank >= 1")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ShapeError(f"MatMul inner dims differ: {a} @ {b}")
    out = broadcast(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return [TensorType(out, types[0].dtype)]


def gemm(types, attrs):
    _same_dtype(types, "Gemm")
    a, b = types[0].shape, types[1].shape
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(f"Gemm needs rank-2 A and B, got {a} and {b}")
    m, k = a[::-1] if attrs["transA"] else a
    k2, n = b[::-1] if attrs["transB"] else b
    if k != k2:
        raise ShapeError(f"Gemm inner dims differ: {k} vs {k2}")
    if len(types) > 2 and broadcast(types[2].shape, (m, n)) != (m, n):
        raise ShapeError(f"Gemm bias {types[2].shape} does not broadcast to ({m}, {n})")
    return [TensorType((m, n), types[0].dtype)]


# ---- convolution and pooling ---------------------------------------------------------------

def window_out(size, kernel, stride, pad_begin, pad_end, dilation, ceil_mode=False):
    span = dilation * (kernel - 1) + 1
    rounding = math.ceil if ceil_mode else math.floor
    out = rounding((size + pad_begin + pad_end - span) / stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1  # the last window would start inside the end padding
    if out < 1:
        raise ShapeError(f"window of {span} does not fit input size {size} with the given pads")
    return out


def _check_window(attrs, nd: int, kernel) -> None:
    """strides, dilations and kernel: nd values >= 1 each; pads: 2*nd values >= 0."""
    strides, dilations, pads = attrs["strides"], attrs["dilations"], attrs["pads"]
    if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd or len(kernel) != nd:
        raise ShapeError(f"strides {list(strides)}, dilations {list(dilations)}, kernel "
                         f"{list(kernel)} and pads {list(pads)} do not fit {nd} spatial dims")
    if min(list(strides) + list(dilations) + list(kernel), default=1) < 1 or min(
            pads, default=0) < 0:
        raise ShapeError(f"strides {list(strides)}, dilations {list(dilations)} and kernel "
                         f"{list(kernel)} must be >= 1, pads {list(pads)} >= 0")


def _check_not_empty(shape, op: str) -> None:
    if 0 in shape:
        raise ShapeError(f"{op} over an empty tensor {shape}")


def conv(types, attrs):
    x, w = types[0].shape, types[1].shape
    _check_not_empty(x, "Conv")
    nd = len(x) - 2
    group = attrs["group"]
    if len(w) != len(x) or nd < 1:
        raise ShapeError(f"Conv input {x} and weight {w} ranks do not match")
    if group < 1 or x[1] != w[1] * group or w[0] % group:
        raise ShapeError(f"Conv channels: input has {x[1]}, weight {w} with group {group} "
                         f"expects {w[1]}×{group} and {w[0]} output channels divisible by it")
    if len(types) > 2 and types[2].shape != (w[0],):
        raise ShapeError(f"Conv bias {types[2].shape} must be ({w[0]},)")
    _check_window(attrs, nd, w[2:])
    spatial = tuple(
        window_out(x[2 + i], w[2 + i], attrs["strides"][i], attrs["pads"][i],
                   attrs["pads"][i + nd], attrs["dilations"][i])
        for i in range(nd))
    return [TensorType((x[0], w[0]) + spatial, types[0].dtype)]


def pool(types, attrs):
    x = types[0].shape
    _check_not_empty(x, "pooling")
    nd = len(x) - 2
    k = attrs["kernel_shape"]
    if len(k) != nd or nd < 1:
        raise ShapeError(f"pool kernel {k} does not match input rank {len(x)}")
    _check_window(attrs, nd, k)
    spatial = tuple(
        window_out(x[2 + i], k[i], attrs["strides"][i], attrs["pads"][i], attrs["pads"][i + nd],
                   attrs["dilations"][i], attrs["ceil_mode"])
        for i in range(nd))
    return [TensorType(x[:2] + spatial, types[0].dtype)]


def global_pool(types, attrs):
    x = types[0].shape
    _check_not_empty(x, "global pooling")
    if len(x) < 3:
        raise ShapeError(f"global pooling needs (N, C, spatial...), got {x}")
    return [TensorType(x[:2] + (1,) * (len(x) - 2), types[0].dtype)]


def _check_scale(types, axis: int, op: str) -> None:
    """Scale and bias of a normalization broadcast to the normalized dims x.shape[axis:]."""
    normalized = types[0].shape[axis:]
    for t in types[1:]:
        if t.rank > len(normalized) or broadcast(normalized, t.shape) != normalized:
            raise ShapeError(f"{op} scale/bias {t.shape} do not broadcast to the normalized "
                             f"dims {normalized}")


def softmax(types, attrs):
    """Softmax, LogSoftmax: the input's type; the axis must be in range."""
    norm_axis(attrs["axis"], types[0].rank)
    if types[0].rank == 0:
        raise ShapeError("softmax needs an input of rank >= 1")
    return [types[0]]


def rms_norm(types, attrs):
    axis = norm_axis(attrs["axis"], types[0].rank)
    _check_scale(types, axis, "RMSNormalization")
    return [types[0]]


def batch_norm(types, attrs):
    x = types[0].shape
    if len(x) < 2:
        raise ShapeError(f"BatchNormalization needs rank >= 2, got {x}")
    if any(t.shape != (x[1],) for t in types[1:]):
        raise ShapeError(f"BatchNormalization scale, bias, mean and var must be ({x[1]},), got "
                         f"{[t.shape for t in types[1:]]}")
    return [types[0]]


def layer_norm(types, attrs):
    x = types[0]
    axis = norm_axis(attrs["axis"], x.rank)
    _check_scale(types, axis, "LayerNormalization")
    stat = TensorType(x.shape[:axis] + (1,) * (x.rank - axis), "float32"
                      if x.dtype in ("float16", "bfloat16") else x.dtype)
    return [x, stat, stat][: attrs.get("num_outputs", 1)]


# ---- data movement -------------------------------------------------------------------------

def reshape(types, attrs):
    shape = tuple(attrs["shape"])
    if int(np.prod(shape)) != types[0].numel:
        raise ShapeError(f"cannot reshape {types[0].shape} into {shape}")
    return [TensorType(shape, types[0].dtype)]


def transpose(types, attrs):
    perm = attrs["perm"]
    if sorted(perm) != list(range(types[0].rank)):
        raise ShapeError(f"perm {perm} is not a permutation of rank {types[0].rank}")
    return [TensorType(tuple(types[0].shape[p] for p in perm), types[0].dtype)]


def concat(types, attrs):
    rank = types[0].rank
    if rank == 0:
        raise ShapeError("Concat needs inputs of rank >= 1")
    axis = norm_axis(attrs["axis"], rank)
    for t in types[1:]:
        if t.rank != rank or any(a != b for i, (a, b) in enumerate(zip(t.shape, types[0].shape))
                                 if i != axis):
            raise ShapeError(f"Concat on axis {axis}: shapes {[t.shape for t in types]} differ")
    out = list(types[0].shape)
    out[axis] = sum(t.shape[axis] for t in types)
    return [TensorType(tuple(out), types[0].dtype)]


def split(types, attrs):
    x = types[0]
    axis = norm_axis(attrs["axis"], x.rank)
    if sum(attrs["split"]) != x.shape[axis]:
        raise ShapeError(f"Split sizes {attrs['split']} do not sum to dim {x.shape[axis]}")
    return [TensorType(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in attrs["split"]]


def slice_(types, attrs):
    shape = list(types[0].shape)
    for start, end, axis, step in zip(attrs["starts"], attrs["ends"], attrs["axes"],
                                      attrs["steps"]):
        axis = norm_axis(axis, len(shape))
        shape[axis] = len(range(*slice(start, end, step).indices(shape[axis])))
    return [TensorType(tuple(shape), types[0].dtype)]


def squeeze(types, attrs):
    shape = types[0].shape
    axes = {norm_axis(a, len(shape)) for a in attrs["axes"]}
    if any(shape[a] != 1 for a in axes):
        raise ShapeError(f"cannot squeeze axes {sorted(axes)} of shape {shape}")
    return [TensorType(tuple(d for i, d in enumerate(shape) if i not in axes), types[0].dtype)]


def unsqueeze(types, attrs):
    rank = types[0].rank + len(attrs["axes"])
    axes = sorted(norm_axis(a, rank) for a in attrs["axes"])
    if len(set(axes)) != len(axes):
        raise ShapeError(f"Unsqueeze axes {list(attrs['axes'])} repeat an axis")
    shape = list(types[0].shape)
    for a in axes:
        shape.insert(a, 1)
    return [TensorType(tuple(shape), types[0].dtype)]


def expand(types, attrs):
    return [TensorType(broadcast(types[0].shape, tuple(attrs["shape"])), types[0].dtype)]


def flatten(types, attrs):
    shape = types[0].shape
    if not -len(shape) <= attrs["axis"] <= len(shape):
        raise ShapeError(f"Flatten axis {attrs['axis']} is out of range for rank {len(shape)}")
    axis = attrs["axis"] + len(shape) if attrs["axis"] < 0 else attrs["axis"]
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    return [TensorType((outer, int(np.prod(shape[axis:], dtype=np.int64))), types[0].dtype)]


def gather(types, attrs):
    data, idx = types
    if data.rank == 0:
        raise ShapeError("Gather needs data of rank >= 1")
    axis = norm_axis(attrs["axis"], data.rank)
    return [TensorType(data.shape[:axis] + idx.shape + data.shape[axis + 1:], data.dtype)]


def same_shape_bool(types, attrs):
    return [TensorType(types[0].shape, "bool")]


def gather_elements(types, attrs):
    data, idx = types
    if data.rank != idx.rank or data.rank == 0:
        raise ShapeError(f"GatherElements: data rank {data.rank} != indices rank {idx.rank}")
    axis = norm_axis(attrs["axis"], data.rank)
    if any(i > d for a, (i, d) in enumerate(zip(idx.shape, data.shape)) if a != axis):
        raise ShapeError(f"GatherElements: indices {idx.shape} exceed data {data.shape} off "
                         f"axis {axis}")
    return [TensorType(idx.shape, data.dtype)]


def gather_nd(types, attrs):
    data, idx = types
    if idx.rank < 1 or data.rank < 1:
        raise ShapeError("GatherND needs data and indices of rank >= 1")
    b, k = attrs["batch_dims"], idx.shape[-1]
    if not 0 <= b < min(data.rank, idx.rank) or data.shape[:b] != idx.shape[:b] \
            or b + k > data.rank:
        raise ShapeError(f"GatherND: indices {idx.shape} do not fit data {data.shape} "
                         f"with batch_dims={b}")
    return [TensorType(idx.shape[:-1] + data.shape[b + k:], data.dtype)]


def tile(types, attrs):
    reps = attrs["repeats"]
    if len(reps) != types[0].rank:
        raise ShapeError(f"Tile repeats {reps} do not match rank {types[0].rank}")
    return [TensorType(tuple(d * r for d, r in zip(types[0].shape, reps)), types[0].dtype)]


def trilu(types, attrs):
    """Same type; the triangle is taken over the last two dims, so the input needs them."""
    if types[0].rank < 2:
        raise ShapeError(f"Trilu needs an input of rank >= 2, not {list(types[0].shape)}")
    return [types[0]]


def pad(types, attrs):
    shape, pads = types[0].shape, attrs["pads"]
    rank = len(shape)
    if len(pads) != 2 * rank:
        raise ShapeError(f"pads {list(pads)} must hold 2 values per axis of rank {rank}")
    mode = attrs["mode"]
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ShapeError(f"Pad mode {mode!r} is not constant, reflect, edge or wrap")
    if mode != "constant" and 0 in shape:
        raise ShapeError(f"{mode} padding needs a non-empty input, got {shape}")
    for i, d in enumerate(shape):
        begin, end = pads[i], pads[i + rank]
        kept = d + min(begin, 0) + min(end, 0)  # negative pads crop first
        if kept < 0 or (mode != "constant" and kept == 0 and max(begin, end) > 0):
            raise ShapeError(f"pads {list(pads)} crop axis {i} of {shape} past its size")
    return [TensorType(tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(shape)),
                       types[0].dtype)]


# ---- quantized weights ---------------------------------------------------------------------

def packed_length(count: int, bits: int) -> int:
    """Bytes of a little-endian bitstream holding `count` indices of `bits` bits each."""
    return (count * bits + 7) // 8


def codebook_dequantize(types, attrs):
    """CodebookDequantize(packed uint8[n], codebook [K] or [C, K]) -> codebook dtype, `shape`."""
    packed, codebook = types
    bits, shape, axis = attrs["bits"], tuple(attrs["shape"]), attrs["axis"]
    if not (isinstance(bits, int) and 1 <= bits <= 8):
        raise ShapeError(f"bits must be an int in 1..8, got {bits!r}")
    if any(d < 0 for d in shape):
        raise ShapeError(f"shape {list(shape)} has a negative dim")
    if packed.dtype != "uint8" or packed.rank != 1:
        raise ShapeError(f"packed indices must be uint8[n], got {packed}")
    if codebook.dtype not in FLOAT_DTYPES:
        raise ShapeError(f"codebook must be a float tensor, got {codebook}")
    count = int(np.prod(shape, dtype=np.int64))
    need = packed_length(count, bits)
    if packed.shape[0] != need:
        raise ShapeError(f"packed has {packed.shape[0]} bytes, but {count} indices of {bits} "
                         f"bits (shape {list(shape)}) need ceil({count}*{bits}/8) = {need}")
    if axis is None:
        if codebook.rank != 1:
            raise ShapeError(f"one shared codebook must be rank 1 [K], got {codebook}; pass "
                             "axis=... for per-channel codebooks")
    else:
        axis = norm_axis(axis, len(shape))
        if codebook.rank != 2 or codebook.shape[0] != shape[axis]:
            raise ShapeError(f"per-channel codebook must be [{shape[axis]}, K] (one row per "
                             f"index along axis {axis} of shape {list(shape)}), got {codebook}")
    entries = codebook.shape[-1]
    if not 1 <= entries <= 2 ** bits:
        raise ShapeError(f"codebook has {entries} entries; {bits}-bit indices address 1.."
                         f"{2 ** bits}")
    return [TensorType(shape, codebook.dtype)]


# ---- size limits ---------------------------------------------------------------------------

# One tensor may hold at most 2^40 elements: past the memory of any accelerator, and small
# enough that element and FLOP counts stay exact everywhere they are computed.
MAX_ELEMENTS = 2**40


def check_size(t: TensorType) -> None:
    """Refuse a tensor type with more than MAX_ELEMENTS elements."""
    if t.numel > MAX_ELEMENTS:
        raise ShapeError(f"a {t} tensor has {t.numel} elements, more than the {MAX_ELEMENTS} "
                         "mlc accepts in one tensor")


def check_allocation(nbytes: int, what: str) -> None:
    """Refuse to allocate `nbytes` for `what` when they exceed the memory available now."""
    free = available_memory()
    if nbytes > free:
        raise ShapeError(f"{what}: needs {format_bytes(nbytes)}, more than the "
                         f"{format_bytes(free)} of memory available")


# ---- value checks: operands known at import or stored as weights --------------------------------

def _check_index_range(idx: np.ndarray, size: int, what: str) -> None:
    if idx.size and (int(idx.min()) < -size or int(idx.max()) >= size):
        bad = int(idx.min()) if int(idx.min()) < -size else int(idx.max())
        raise ShapeError(f"{what}: index {bad} is out of range [{-size}, {size - 1}]")


def _gather_values(types, values, attrs):
    if values[1] is not None:
        axis = norm_axis(attrs["axis"], types[0].rank)
        _check_index_range(values[1], types[0].shape[axis], f"Gather indices on axis {axis}")


def _gather_elements_values(types, values, attrs):
    if values[1] is not None:
        axis = norm_axis(attrs["axis"], types[0].rank)
        _check_index_range(values[1], types[0].shape[axis],
                           f"GatherElements indices on axis {axis}")


def _gather_nd_values(types, values, attrs):
    idx = values[1]
    if idx is not None and idx.size:
        b = attrs["batch_dims"]
        for j in range(idx.shape[-1]):
            _check_index_range(idx[..., j], types[0].shape[b + j],
                               f"GatherND index component {j}")


VALUE_CHECKS = {
    "Gather": _gather_values,
    "GatherElements": _gather_elements_values,
    "GatherND": _gather_nd_values,
}


def check_constant_operands(op: str, types, values, attrs) -> None:
    """Check operands whose values are known (weights, constants at import): indices in range.
    `values[i]` is the array of input i, or None when it is only known at run time."""
    check = VALUE_CHECKS.get(op)
    if check is not None and any(v is not None for v in values):
        check(types, [None if v is None else np.asarray(v) for v in values], attrs)
