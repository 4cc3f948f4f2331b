"""Shape rules for the op table: each maps input TensorTypes and attributes to output types.

A rule raises ShapeError with a plain description when the inputs cannot go together.
"""

from __future__ import annotations

import math

import numpy as np

from .types import FLOAT_DTYPES, TensorType


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
    axes = set(axes)
    if attrs["keepdims"]:
        out = tuple(1 if i in axes else d for i, d in enumerate(shape))
    else:
        out = tuple(d for i, d in enumerate(shape) if i not in axes)
    return [TensorType(out, types[0].dtype)]


def arg_reduce(types, attrs):
    shape = types[0].shape
    axis = norm_axis(attrs["axis"], len(shape))
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
    if len(types) > 2:
        broadcast(types[2].shape, (m, n))
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


def conv(types, attrs):
    x, w = types[0].shape, types[1].shape
    nd = len(x) - 2
    if len(w) != len(x) or nd < 1:
        raise ShapeError(f"Conv input {x} and weight {w} ranks do not match")
    if x[1] != w[1] * attrs["group"]:
        raise ShapeError(f"Conv channels: input has {x[1]}, weight expects {w[1]}×{attrs['group']}")
    spatial = tuple(
        window_out(x[2 + i], w[2 + i], attrs["strides"][i], attrs["pads"][i],
                   attrs["pads"][i + nd], attrs["dilations"][i])
        for i in range(nd))
    return [TensorType((x[0], w[0]) + spatial, types[0].dtype)]


def pool(types, attrs):
    x = types[0].shape
    nd = len(x) - 2
    k = attrs["kernel_shape"]
    if len(k) != nd:
        raise ShapeError(f"pool kernel {k} does not match input rank {len(x)}")
    spatial = tuple(
        window_out(x[2 + i], k[i], attrs["strides"][i], attrs["pads"][i], attrs["pads"][i + nd],
                   attrs["dilations"][i], attrs["ceil_mode"])
        for i in range(nd))
    return [TensorType(x[:2] + spatial, types[0].dtype)]


def global_pool(types, attrs):
    x = types[0].shape
    return [TensorType(x[:2] + (1,) * (len(x) - 2), types[0].dtype)]


def layer_norm(types, attrs):
    x = types[0]
    axis = norm_axis(attrs["axis"], x.rank)
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
    shape = list(types[0].shape)
    for a in axes:
        shape.insert(a, 1)
    return [TensorType(tuple(shape), types[0].dtype)]


def expand(types, attrs):
    return [TensorType(broadcast(types[0].shape, tuple(attrs["shape"])), types[0].dtype)]


def flatten(types, attrs):
    shape = types[0].shape
    axis = attrs["axis"] + len(shape) if attrs["axis"] < 0 else attrs["axis"]
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    return [TensorType((outer, int(np.prod(shape[axis:], dtype=np.int64))), types[0].dtype)]


def gather(types, attrs):
    data, idx = types
    axis = norm_axis(attrs["axis"], data.rank)
    return [TensorType(data.shape[:axis] + idx.shape + data.shape[axis + 1:], data.dtype)]


def same_shape_bool(types, attrs):
    return [TensorType(types[0].shape, "bool")]


def gather_elements(types, attrs):
    data, idx = types
    if data.rank != idx.rank:
        raise ShapeError(f"GatherElements: data rank {data.rank} != indices rank {idx.rank}")
    return [TensorType(idx.shape, data.dtype)]


def gather_nd(types, attrs):
    data, idx = types
    b, k = attrs["batch_dims"], idx.shape[-1]
    if data.shape[:b] != idx.shape[:b] or b + k > data.rank:
        raise ShapeError(f"GatherND: indices {idx.shape} do not fit data {data.shape} "
                         f"with batch_dims={b}")
    return [TensorType(idx.shape[:-1] + data.shape[b + k:], data.dtype)]


def tile(types, attrs):
    reps = attrs["repeats"]
    if len(reps) != types[0].rank:
        raise ShapeError(f"Tile repeats {reps} do not match rank {types[0].rank}")
    return [TensorType(tuple(d * r for d, r in zip(types[0].shape, reps)), types[0].dtype)]


def pad(types, attrs):
    shape, pads = types[0].shape, attrs["pads"]
    rank = len(shape)
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
