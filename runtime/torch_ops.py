"""Torch semantics of every IR op: the op table's second executor (the first is numpy).

`TORCH_OPS[name]` takes the op's input tensors and resolved attributes, like `OpDef.compute`,
and returns a tensor or a list of tensors with the numpy reference's semantics (integer Div
truncates, reductions over `axes=()` apply the op without reducing, ...). Float math stays in
torch so autograd flows through it. `compute` runs one op the way the executors do: tensors of
dtypes torch cannot compute on (uint16/32/64, float8) are widened to int64/float32 first.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from mlc.compiler.ir.ops import OPS, resolve_attrs
from mlc.compiler.ir.shapes import norm_axis

from . import torch_windows as win

# ---- dtypes ------------------------------------------------------------------------------------
TORCH_DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e4m3fnuz": torch.float8_e4m3fnuz, "float8_e5m2": torch.float8_e5m2,
    "float8_e5m2fnuz": torch.float8_e5m2fnuz, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8, "uint16": torch.uint16,
    "uint32": torch.uint32, "uint64": torch.uint64, "bool": torch.bool,
}
FLOAT8 = tuple(dtype for name, dtype in TORCH_DTYPES.items() if name.startswith("float8"))
# Storage-only dtypes in torch: compute in a wider dtype, the executor casts results back.
# (uint64 values >= 2**63 wrap; add/sub/mul stay exact modulo 2**64, comparisons do not.)
_WIDEN = {torch.uint16: torch.int64, torch.uint32: torch.int64, torch.uint64: torch.int64,
          **{dtype: torch.float32 for dtype in FLOAT8}}
# |x| above which a non-saturating cast gives NaN where torch would saturate (halfway to the
# next power-of-two step past the largest finite, which rounds to even = the largest finite).
_FLOAT8_NAN_ABOVE = {"float8_e4m3fn": 464.0}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for an IR dtype name; a clear error for the dtypes torch lacks."""
    try:
        return TORCH_DTYPES[name]
    except KeyError:
        raise TypeError(f"torch has no dtype for IR dtype {name!r}; run this graph with the "
                        "reference executor") from None


def _is_int(x: torch.Tensor) -> bool:
    return not x.dtype.is_floating_point and x.dtype != torch.bool


def _safe_divisor(b: torch.Tensor) -> torch.Tensor:
    # numpy gives 0 for integer x/0 and x%0; torch raises, so divide by 1 and zero it after.
    return torch.where(b == 0, torch.ones_like(b), b)


# ---- elementwise -------------------------------------------------------------------------------
def cast(x, to, saturate=1):
    if to in _FLOAT8_NAN_ABOVE and not saturate:
        overflow = x.isinf() | (x.abs() > _FLOAT8_NAN_ABOVE[to])
        x = torch.where(overflow, torch.full_like(x, float("nan")), x)
    elif saturate and to.startswith("float8"):
        top = torch.finfo(torch_dtype(to)).max
        x = torch.where(x.isnan(), x, x.clamp(-top, top))
    return x.to(torch_dtype(to))


def int_div(a, b):
    if _is_int(a):
        return torch.where(b == 0, torch.zeros_like(a),
                           torch.div(a, _safe_divisor(b), rounding_mode="trunc"))
    return a / b


def mod(a, b, fmod=0):
    fn = torch.fmod if fmod else torch.remainder
    if _is_int(a):
        return torch.where(b == 0, torch.zeros_like(a), fn(a, _safe_divisor(b)))
    return fn(a, b)


def power(a, b):
    if _is_int(a) and not _is_int(b):  # numpy computes int ** float in float64
        return torch.pow(a.double(), b.double()).to(a.dtype)
    return torch.pow(a, b.to(a.dtype))


def clip(x, min=None, max=None):
    if min is not None:
        x = torch.maximum(x, torch.tensor(min, device=x.device).to(x.dtype))
    if max is not None:
        x = torch.minimum(x, torch.tensor(max, device=x.device).to(x.dtype))
    return x


def is_inf(x, detect_negative=1, detect_positive=1):
    return x.isinf() & (((x < 0) & bool(detect_negative)) | ((x > 0) & bool(detect_positive)))


def _variadic(fn):
    def apply(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out
    return apply


def mean(*xs):
    return (_variadic(torch.add)(*xs) / len(xs)).to(xs[0].dtype)


# ---- reductions (axes None: every axis; axes (): none, but the op is still applied) -----------
def _dims(x, axes) -> list[int]:
    return list(range(x.ndim)) if axes is None else sorted({norm_axis(a, x.ndim) for a in axes})


def _reduced_shape(x, dims, keepdims):
    if keepdims:
        return tuple(1 if i in dims else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in dims)


def _prod(x, dim, keepdim):
    for d in sorted(dim, reverse=True):  # torch.prod takes one dim at a time
        x = x.prod(d, keepdim=True)
    return x if keepdim else x.reshape(_reduced_shape(x, dim, False))


def _mean(x, dim, keepdim):
    return (x if x.dtype.is_floating_point else x.double()).mean(dim, keepdim=keepdim)


def _reducer(fn: Callable, empty: Callable | None = None) -> Callable:
    """An IR reduction from torch's fn(x, dim, keepdim); empty(dtype) fills empty reductions."""
    def reduce(x, axes, keepdims):
        dims = _dims(x, axes)
        if not dims:
            return x
        if empty is not None and any(x.shape[d] == 0 for d in dims):
            return torch.full(_reduced_shape(x, dims, keepdims), empty(x.dtype), dtype=x.dtype,
                              device=x.device)
        return fn(x, dims, bool(keepdims)).to(x.dtype)
    return reduce


def _highest(dtype):
    if dtype == torch.bool:
        return True
    return float("inf") if dtype.is_floating_point else torch.iinfo(dtype).max


reduce_sum = _reducer(lambda x, dim, keepdim: x.sum(dim, keepdim=keepdim))
reduce_max = _reducer(lambda x, dim, keepdim: x.amax(dim, keepdim=keepdim), win.lowest)
reduce_min = _reducer(lambda x, dim, keepdim: x.amin(dim, keepdim=keepdim), _highest)


def reduce_log_sum_exp(x, axes, keepdims):
    m = reduce_max(x, axes, True)
    m = torch.where(m.isfinite(), m, torch.zeros_like(m))
    out = reduce_sum((x - m).exp(), axes, True).log() + m
    if not keepdims:
        out = out.reshape(_reduced_shape(x, _dims(x, axes), False))
    return out.to(x.dtype)


def arg_reduce(fn, x, axis, keepdims, select_last_index=0):
    axis = norm_axis(axis, x.ndim)
    if select_last_index:
        idx = x.shape[axis] - 1 - fn(x.flip(axis), dim=axis)
    else:
        idx = fn(x, dim=axis)
    return idx.unsqueeze(axis) if keepdims else idx


# ---- linear algebra and normalization ----------------------------------------------------------
def gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = alpha * (a @ b)
    if c is not None:
        y = y + beta * c
    return y.to(a.dtype)


def _stat_dtype(x):
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _row_sum(x, axis):
    """Sum over one axis as numpy does: bfloat16 (ml_dtypes) adds in order, rounding each add."""
    if x.dtype != torch.bfloat16:
        return x.sum(axis, keepdim=True)
    parts = x.unbind(axis)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total.unsqueeze(axis)


def softmax(x, axis):
    if x.itemsize > 2:
        return torch.softmax(x, axis)
    # 16-bit floats: round after each step like numpy, not once like the fused kernel
    e = (x - x.amax(axis, keepdim=True)).exp()
    return e / _row_sum(e, axis)


def log_softmax(x, axis):
    if x.itemsize > 2:
        return torch.log_softmax(x, axis)
    shifted = x - x.amax(axis, keepdim=True)
    return shifted - _row_sum(shifted.exp(), axis).log()


def layer_norm(x, scale, bias=None, axis=-1, epsilon=1e-5, num_outputs=1):
    dims = tuple(range(norm_axis(axis, x.ndim), x.ndim))
    shape = x.shape[dims[0]:] if dims else ()
    if (num_outputs == 1 and x.dtype == _stat_dtype(x) and scale.shape == shape
            and (bias is None or bias.shape == shape)):  # the fused kernel: same math
        return F.layer_norm(x, shape, scale, bias, epsilon)
    xf = x.to(_stat_dtype(x))
    mu = xf.mean(dims, keepdim=True)
    var = ((xf - mu) ** 2).mean(dims, keepdim=True)
    inv_std = torch.rsqrt(var + epsilon)
    y = (xf - mu) * inv_std * scale
    if bias is not None:
        y = y + bias
    return [y.to(x.dtype), mu, inv_std][:num_outputs]


def rms_norm(x, scale, axis=-1, epsilon=1e-5):
    dims = tuple(range(norm_axis(axis, x.ndim), x.ndim))
    xf = x.to(_stat_dtype(x))
    rms = torch.sqrt((xf * xf).mean(dims, keepdim=True) + epsilon)
    return (xf / rms * scale).to(x.dtype)


def batch_norm(x, scale, bias, mu, var, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale.reshape(shape) / torch.sqrt(var.reshape(shape) + epsilon)
    return ((x - mu.reshape(shape)) * inv + bias.reshape(shape)).to(x.dtype)


# ---- data movement -----------------------------------------------------------------------------
def slice_(x, starts, ends, axes, steps):
    index: list[Any] = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = norm_axis(axis, x.ndim)
        start, stop, step = slice(start, end, step).indices(x.shape[axis])
        if step > 0:
            index[axis] = slice(start, stop, step)
        else:  # torch slicing has no negative steps: gather the positions instead
            positions = torch.as_tensor(list(range(start, stop, step)), dtype=torch.long,
                                        device=x.device)  # may be empty: no arange
            x = x.index_select(axis, positions)
    return x[tuple(index)]


def unsqueeze(x, axes):
    rank = x.ndim + len(axes)
    for axis in sorted(norm_axis(a, rank) for a in axes):
        x = x.unsqueeze(axis)
    return x


def flatten(x, axis=1):
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _wrap_negative(idx, size):
    idx = idx.long()
    return torch.where(idx < 0, idx + size, idx)


def gather(data, idx, axis=0):
    axis = norm_axis(axis, data.ndim)
    idx = _wrap_negative(idx, data.shape[axis])
    out = data.index_select(axis, idx.reshape(-1))
    return out.reshape(data.shape[:axis] + idx.shape + data.shape[axis + 1:])


def gather_elements(data, idx, axis=0):
    axis = norm_axis(axis, data.ndim)
    return torch.gather(data, axis, _wrap_negative(idx, data.shape[axis]))


def gather_nd(data, idx, batch_dims=0):
    b, k = batch_dims, idx.shape[-1]
    dims = torch.tensor(data.shape[b:b + k], dtype=torch.long, device=data.device)
    idx = _wrap_negative(idx, dims)
    batches = math.prod(data.shape[:b])
    flat_data = data.reshape((batches,) + data.shape[b:])
    flat_idx = idx.reshape(batches, -1, k)
    batch = torch.arange(batches, device=data.device).unsqueeze(1)
    out = flat_data[(batch,) + tuple(flat_idx[..., j] for j in range(k))]
    return out.reshape(idx.shape[:-1] + data.shape[b + k:])


def _pad_positions(size, begin, end, mode):
    """Source position of every padded position along one dim, for the non-constant modes."""
    pos = torch.arange(-begin, size + end)
    if mode == "edge":
        return pos.clamp(0, size - 1)
    if mode == "wrap":
        return pos.remainder(size)
    period = 2 * (size - 1)  # reflect, repeated as numpy does when pads exceed the size
    if period == 0:
        return torch.zeros_like(pos)
    pos = pos.remainder(period)
    return torch.where(pos >= size, period - pos, pos)


def pad(x, pads, mode="constant", value=0.0):
    rank = x.ndim
    widths = [(pads[i], pads[i + rank]) for i in range(rank)]
    if any(p < 0 for p in pads):  # negative pads crop
        x = x[tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths))]
        widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        fill = bool(value) if x.dtype == torch.bool else (
            float(value) if x.dtype.is_floating_point else int(value))
        return F.pad(x, win.torch_pads(widths), value=fill) if any(map(any, widths)) else x
    for dim, (begin, end) in enumerate(widths):
        if begin or end:
            positions = _pad_positions(x.shape[dim], begin, end, mode).to(x.device)
            x = x.index_select(dim, positions)
    return x


# ---- quantized weights -------------------------------------------------------------------------
def unpack_indices(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The first `count` indices of a little-endian `bits`-bit stream, as reference.py."""
    words = torch.cat([packed, packed.new_zeros(1)]).to(torch.int32)
    start = torch.arange(count, dtype=torch.int64, device=packed.device) * bits
    byte, shift = start >> 3, (start & 7).to(torch.int32)
    pairs = words[byte] | (words[byte + 1] << 8)
    return ((pairs >> shift) & ((1 << bits) - 1)).long()


def codebook_dequantize(packed, codebook, bits, shape, axis=None):
    """codebook[index] or codebook[channel, index]; differentiable in the codebook."""
    shape = tuple(shape)
    index = unpack_indices(packed, bits, math.prod(shape)).reshape(shape)
    if axis is None:
        return codebook[index]
    axis = norm_axis(axis, len(shape))
    channel = torch.arange(shape[axis], device=packed.device)
    channel = channel.reshape((-1,) + (1,) * (len(shape) - axis - 1))
    return codebook.reshape(-1)[channel * codebook.shape[-1] + index]


# ---- the table, grouped as in compiler/ir/ops.py -----------------------------------------------
def _reduce_after(pre: Callable, post: Callable | None = None) -> Callable:
    """A reduction applying pre elementwise first (and post to the reduced result)."""
    def reduce(x, axes, keepdims):
        out = reduce_sum(pre(x), axes, keepdims)
        return (post(out) if post else out).to(x.dtype)
    return reduce


def _arg(fn):
    return lambda x, axis, keepdims, select_last_index: arg_reduce(
        fn, x, axis, keepdims, select_last_index)


TORCH_OPS: dict[str, Callable] = {
    # elementwise: unary math
    "Identity": lambda x: x, "Neg": torch.neg, "Abs": torch.abs, "Sign": torch.sign,
    "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Reciprocal": torch.reciprocal,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round,  # half to even, as numpy
    "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin,
    "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh,
    "Tanh": torch.tanh, "Erf": torch.erf, "Not": torch.logical_not, "IsNaN": torch.isnan,
    "IsInf": is_inf,
    # elementwise: activations
    "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Silu": F.silu,
    "Gelu": lambda x, approximate: F.gelu(x, approximate=approximate),
    "Softplus": lambda x: torch.logaddexp(x, torch.zeros_like(x)),
    "Softsign": lambda x: x / (1 + x.abs()),
    "Mish": F.mish,
    "LeakyRelu": lambda x, alpha: torch.where(x >= 0, x, alpha * x),
    "Elu": lambda x, alpha: torch.where(x > 0, x, alpha * torch.expm1(x)),
    "Selu": lambda x, alpha, gamma: gamma * torch.where(x > 0, x, alpha * torch.expm1(x)),
    "HardSigmoid": lambda x, alpha, beta: (alpha * x + beta).clamp(0, 1),
    "HardSwish": lambda x: x * (x / 6 + 0.5).clamp(0, 1),
    "Clip": clip, "Cast": cast, "Where": torch.where,
    "PRelu": lambda x, slope: torch.where(x >= 0, x, slope * x),
    # elementwise: binary and variadic (broadcasting)
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": int_div, "Pow": power,
    "Mod": mod, "Max": _variadic(torch.maximum), "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add), "Mean": mean, "Equal": torch.eq, "Less": torch.lt,
    "LessOrEqual": torch.le, "Greater": torch.gt, "GreaterOrEqual": torch.ge,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
    # reductions
    "ReduceSum": reduce_sum, "ReduceMean": _reducer(_mean), "ReduceMax": reduce_max,
    "ReduceMin": reduce_min, "ReduceProd": _reducer(_prod),
    "ReduceSumSquare": _reduce_after(lambda x: x * x),
    "ReduceL1": _reduce_after(torch.abs),
    "ReduceL2": _reduce_after(lambda x: x * x, torch.sqrt),
    "ReduceLogSum": _reduce_after(lambda x: x, torch.log),
    "ReduceLogSumExp": reduce_log_sum_exp,
    "ArgMax": _arg(torch.argmax), "ArgMin": _arg(torch.argmin),
    # linear algebra
    "MatMul": torch.matmul, "Gemm": gemm,
    # normalization
    "Softmax": softmax, "LogSoftmax": log_softmax,
    "LayerNormalization": layer_norm, "RMSNormalization": rms_norm,
    "BatchNormalization": batch_norm,
    # convolution and pooling
    "Conv": win.conv, "MaxPool": win.max_pool, "AveragePool": win.average_pool,
    "GlobalAveragePool": lambda x: _mean(x, tuple(range(2, x.ndim)), True).to(x.dtype),
    "GlobalMaxPool": lambda x: x.amax(tuple(range(2, x.ndim)), keepdim=True),
    # data movement
    "Reshape": lambda x, shape: x.reshape(tuple(shape)),
    "Transpose": lambda x, perm: x.permute(tuple(perm)),
    "Concat": lambda *xs, axis: torch.cat(xs, axis),
    "Split": lambda x, axis, split: list(torch.split(x, list(split), dim=axis)),
    "Slice": slice_,
    "Squeeze": lambda x, axes: x.squeeze(tuple(axes)) if axes else x,
    "Unsqueeze": unsqueeze,
    "Expand": lambda x, shape: x.expand(np.broadcast_shapes(tuple(x.shape), tuple(shape))),
    "Flatten": flatten, "Gather": gather, "GatherElements": gather_elements,
    "GatherND": gather_nd, "Tile": lambda x, repeats: x.tile(tuple(repeats)), "Pad": pad,
    "Trilu": lambda x, upper, k: torch.triu(x, k) if upper else torch.tril(x, k),
    # quantized weights
    "CodebookDequantize": codebook_dequantize,
    # fused regions: the compiled CPU kernel, or the µGraph interpreted with torch arithmetic
    "MuGraphCall": lambda *xs, mugraph: mugraph_call(xs, mugraph),
}


def mugraph_call(inputs, document: str) -> list:
    """A fused region: its compiled CPU kernel or the interpreted µGraph (runtime/fused.py)."""
    from .fused import call_fused
    return call_fused(inputs, document)


def apply_op(fn: Callable, inputs: list[torch.Tensor], attrs: dict[str, Any]) -> list:
    """Call a TORCH_OPS entry on resolved attrs, widening storage-only dtypes; always a list."""
    inputs = [x.to(_WIDEN[x.dtype]) if x.dtype in _WIDEN else x for x in inputs]
    result = fn(*inputs, **attrs)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def compute(op_name: str, inputs: list[torch.Tensor], attrs: dict[str, Any]) -> list:
    """Run one op's torch semantics (the counterpart of `mlc.compiler.ir.ops.compute`)."""
    return apply_op(TORCH_OPS[op_name], inputs, resolve_attrs(OPS[op_name], attrs))
