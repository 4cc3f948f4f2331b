"""Numpy semantics of the ops that take more than one numpy call (the op table refers here).

Each function takes the op's input arrays and attributes and returns its output array(s).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf as _erf

from .shapes import norm_axis, packed_length, window_out
from .types import np_dtype


def cast(x, to, saturate=1):
    """astype; with saturate, float8 targets clamp out-of-range values to their largest finite."""
    dtype = np_dtype(to)
    if saturate and to.startswith("float8"):
        top = float(ml_dtypes.finfo(dtype).max)
        x = np.where(np.isnan(x), x, np.clip(x.astype(np.float64), -top, top))
    return x.astype(dtype)


def erf(x):
    return _erf(x).astype(x.dtype)


def gelu(x, approximate="none"):
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
        return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype)
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)


def sigmoid(x):
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def softplus(x):
    return (np.logaddexp(0, x)).astype(x.dtype)


def mish(x):
    """x * tanh(softplus(x)), ONNX Mish-18."""
    return (x * np.tanh(np.logaddexp(0, x))).astype(x.dtype)


def trilu(x, upper=1, k=0):
    """Keep the upper (or lower) triangle of the last two dims from diagonal k on, zero the
    rest; k > 0 moves the diagonal up and right, as numpy's triu/tril (batched over the rest)."""
    return (np.triu(x, k) if upper else np.tril(x, k)).astype(x.dtype, copy=False)


def int_div(a, b):
    """Integer division truncating toward zero, as C and ONNX do."""
    if np.issubdtype(a.dtype, np.integer):
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) ^ (b < 0), -q, q).astype(np.result_type(a, b))
    return a / b


def mod(a, b, fmod=0):
    if fmod:
        return np.fmod(a, b)
    return np.mod(a, b)


def power(a, b):
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return np.power(a, b.astype(a.dtype))
    return np.power(a, b).astype(a.dtype)


def softmax(x, axis):
    if x.size == 0:  # nothing to normalize (np.max has no identity for an empty axis)
        return x.copy()
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis):
    if x.size == 0:
        return x.copy()
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _stat_dtype(x):
    return np.float32 if x.dtype in (np.float16,) or x.dtype.name == "bfloat16" else x.dtype


def layer_norm(x, scale, bias=None, axis=-1, epsilon=1e-5, num_outputs=1):
    axis = norm_axis(axis, x.ndim)
    axes = tuple(range(axis, x.ndim))
    xf = x.astype(_stat_dtype(x))
    mean = xf.mean(axis=axes, keepdims=True)
    var = ((xf - mean) ** 2).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + epsilon)
    y = (xf - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    return [y.astype(x.dtype), mean, inv_std][:num_outputs]


def rms_norm(x, scale, axis=-1, epsilon=1e-5):
    axis = norm_axis(axis, x.ndim)
    axes = tuple(range(axis, x.ndim))
    xf = x.astype(_stat_dtype(x))
    rms = np.sqrt((xf * xf).mean(axis=axes, keepdims=True) + epsilon)
    return (xf / rms * scale).astype(x.dtype)


def batch_norm(x, scale, bias, mean, var, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale.reshape(shape) / np.sqrt(var.reshape(shape) + epsilon)
    return ((x - mean.reshape(shape)) * inv + bias.reshape(shape)).astype(x.dtype)


def gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = alpha * (a @ b)
    if c is not None:
        y = y + beta * c
    return y.astype(a.dtype)


def reduce(fn, x, axes, keepdims, **kw):
    axes = None if axes is None else tuple(norm_axis(a, x.ndim) for a in axes)
    return np.asarray(fn(x, axis=axes, keepdims=bool(keepdims), **kw)).astype(x.dtype)


def _lowest(dtype):
    if dtype == np.bool_:
        return False
    return np.iinfo(dtype).min if np.dtype(dtype).kind in "iu" else -np.inf


def _highest(dtype):
    if dtype == np.bool_:
        return True
    return np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else np.inf


def reduce_max(x, axes, keepdims):
    return reduce(np.max, x, axes, keepdims, initial=_lowest(x.dtype))


def reduce_min(x, axes, keepdims):
    return reduce(np.min, x, axes, keepdims, initial=_highest(x.dtype))


def reduce_log_sum_exp(x, axes, keepdims):
    m = reduce_max(x, axes, True)
    m = np.where(np.isfinite(m), m, 0)
    s = reduce(np.sum, np.exp(x - m), axes, True)
    out = np.log(s) + m
    if not keepdims:
        ax = range(x.ndim) if axes is None else [norm_axis(a, x.ndim) for a in axes]
        out = np.squeeze(out, axis=tuple(ax))
    return out.astype(x.dtype)


def arg_reduce(fn, x, axis, keepdims, select_last_index=0):
    axis = norm_axis(axis, x.ndim)
    if select_last_index:
        flipped = np.flip(x, axis)
        idx = x.shape[axis] - 1 - fn(flipped, axis=axis)
    else:
        idx = fn(x, axis=axis)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, axis) if keepdims else idx


def clip(x, min=None, max=None):
    if min is not None:
        x = np.maximum(x, np.asarray(min, dtype=x.dtype))
    if max is not None:
        x = np.minimum(x, np.asarray(max, dtype=x.dtype))
    return x


def slice_(x, starts, ends, axes, steps):
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[norm_axis(axis, x.ndim)] = slice(start, end, step)
    return x[tuple(index)]


def split(x, axis, split):
    bounds = np.cumsum(split)[:-1]
    return np.split(x, bounds, axis=axis)


def gather(data, idx, axis=0):
    axis = norm_axis(axis, data.ndim)
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    return np.take(data, idx, axis=axis)


def gather_elements(data, idx, axis=0):
    axis = norm_axis(axis, data.ndim)
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    return np.take_along_axis(data, idx, axis=axis)


def gather_nd(data, idx, batch_dims=0):
    b, k = batch_dims, idx.shape[-1]
    dims = np.array(data.shape[b:b + k])
    idx = np.where(idx < 0, idx + dims, idx)
    batches = int(np.prod(data.shape[:b], dtype=np.int64))
    out_shape = idx.shape[:-1] + data.shape[b + k:]
    if batches == 0:  # nothing to gather (np.stack of no arrays would fail)
        return np.zeros(out_shape, data.dtype)
    flat_data = data.reshape((batches,) + data.shape[b:])
    rows = int(np.prod(idx.shape[b:-1], dtype=np.int64))  # explicit: -1 fails on empty
    flat_idx = idx.reshape((batches, rows, k))
    out = np.stack([flat_data[n][tuple(flat_idx[n].T)] for n in range(batches)])
    return out.reshape(out_shape)


def flatten(x, axis=1):
    axis = axis + x.ndim if axis < 0 else axis
    # explicit sizes: reshape(0, -1) is ambiguous for an empty tensor
    return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


def pad(x, pads, mode="constant", value=0.0):
    rank = x.ndim
    widths = [(pads[i], pads[i + rank]) for i in range(rank)]
    negative = any(p < 0 for p in pads)
    if negative:  # negative pads crop
        x = x[tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths))]
        widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(value, x.dtype))
    return np.pad(x, widths, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


# ---- quantized weights: packed low-bit indices into a codebook ------------------------------

def unpack_indices(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first `count` `bits`-bit indices of a little-endian bitstream, as int64.

    Index i occupies stream bits [i*bits, (i+1)*bits); stream bit j is bit j%8 of byte j//8.
    bits <= 8 and a start bit < 8 keep every index inside two adjacent bytes.

    >>> unpack_indices(np.array([0b11100100], np.uint8), 2, 4)
    array([0, 1, 2, 3])
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise ValueError(f"packed must be a 1-D uint8 array, got {packed.dtype}{packed.shape}")
    if packed.size < packed_length(count, bits):
        raise ValueError(f"{packed.size} bytes hold fewer than {count} indices of {bits} bits")
    words = np.concatenate([packed, np.zeros(1, np.uint8)]).astype(np.uint16)
    start = np.arange(count, dtype=np.int64) * bits
    byte, shift = start >> 3, (start & 7).astype(np.uint16)
    pairs = words[byte] | (words[byte + 1] << np.uint16(8))
    return ((pairs >> shift) & np.uint16((1 << bits) - 1)).astype(np.int64)


def codebook_dequantize(packed, codebook, bits, shape, axis=None):
    """codebook[index] (or codebook[channel, index] with `axis`), reshaped to `shape`."""
    shape = tuple(shape)
    index = unpack_indices(packed, bits, int(np.prod(shape, dtype=np.int64))).reshape(shape)
    entries = codebook.shape[-1]
    if index.size and index.max() >= entries:
        raise ValueError(f"index {index.max()} is past the codebook's {entries} entries")
    if axis is None:
        return codebook[index]
    axis = norm_axis(axis, len(shape))
    channel = np.arange(shape[axis]).reshape((-1,) + (1,) * (len(shape) - axis - 1))
    return codebook.reshape(-1)[channel * entries + index]


# ---- convolution and pooling ---------------------------------------------------------------

def _windows(x, kernel, strides, dilations):
    """View of x (N, C, *spatial) as (N, C, *out, *kernel) windows."""
    nd = len(kernel)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    view = sliding_window_view(x, span, axis=tuple(range(2, 2 + nd)))
    index = ((slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
             + tuple(slice(None, None, d) for d in dilations))
    return view[index]


def conv(x, w, b=None, strides=(), pads=(), dilations=(), group=1):
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    win = _windows(xp, w.shape[2:], strides, dilations)  # N, C, O..., K...
    n, c = x.shape[:2]
    m = w.shape[0]
    win = win.reshape((n, group, c // group) + win.shape[2:])
    wg = w.reshape((group, m // group, c // group) + w.shape[2:])
    letters = "opqrstuv"[:nd], "hijklxyz"[:nd]
    spec = f"ngc{letters[0]}{letters[1]},gmc{letters[1]}->ngm{letters[0]}"
    y = np.einsum(spec, win, wg, optimize=True)
    y = y.reshape((n, m) + y.shape[3:])
    if b is not None:
        y = y + b.reshape((1, m) + (1,) * nd)
    return y.astype(x.dtype)


def _pool_padding(x, kernel, strides, pads, dilations, ceil_mode):
    """Explicit (begin, end) padding per spatial dim, with extra end padding for ceil_mode."""
    nd = len(kernel)
    widths = []
    for i in range(nd):
        out = window_out(x.shape[2 + i], kernel[i], strides[i], pads[i], pads[i + nd],
                         dilations[i], ceil_mode)
        needed = (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
        extra = max(0, needed - (x.shape[2 + i] + pads[i] + pads[i + nd]))
        widths.append((pads[i], pads[i + nd], extra))
    return widths


def max_pool(x, kernel_shape, strides, pads, dilations, ceil_mode=0):
    widths = _pool_padding(x, kernel_shape, strides, pads, dilations, ceil_mode)
    pad_width = [(0, 0), (0, 0)] + [(b, e + extra) for b, e, extra in widths]
    xp = np.pad(x, pad_width, constant_values=_lowest(x.dtype))
    win = _windows(xp, kernel_shape, strides, dilations)
    axes = tuple(range(-len(kernel_shape), 0))
    return win.max(axis=axes).astype(x.dtype)


def average_pool(x, kernel_shape, strides, pads, dilations, ceil_mode=0, count_include_pad=0):
    widths = _pool_padding(x, kernel_shape, strides, pads, dilations, ceil_mode)
    pad_width = [(0, 0), (0, 0)] + [(b, e + extra) for b, e, extra in widths]
    axes = tuple(range(-len(kernel_shape), 0))
    total = _windows(np.pad(x, pad_width), kernel_shape, strides, dilations).sum(axis=axes)
    ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    if count_include_pad:  # explicit pads count, the ceil_mode overhang does not
        ones = np.pad(ones, [(0, 0), (0, 0)] + [(b, e) for b, e, _ in widths], constant_values=1)
        count_pad = [(0, 0), (0, 0)] + [(0, extra) for _, _, extra in widths]
    else:
        count_pad = pad_width
    count = _windows(np.pad(ones, count_pad), kernel_shape, strides, dilations).sum(axis=axes)
    return (total / count).astype(x.dtype)
