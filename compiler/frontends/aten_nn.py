"""aten rules for linear algebra, normalization, convolution and pooling (the torch frontend's
neural-network ops); aten_table.py holds the elementwise, reduction and data-movement rules and
the table that refers to both.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .aten_common import Unsupported, as_list, pairs

aten = torch.ops.aten

# ---- linear algebra -------------------------------------------------------------------------

def _linear(cx, x, weight, bias=None):
    if cx.rank(x) == 2:
        inputs = (x, weight) if bias is None else (x, weight, bias)
        return cx.op("Gemm", *inputs, transB=1)
    y = cx.op("MatMul", x, cx.op("Transpose", weight, perm=(1, 0)))
    return y if bias is None else cx.op("Add", y, bias)


def _addmm(cx, bias, a, b, beta=1, alpha=1):
    return cx.op("Gemm", a, b, bias, alpha=alpha, beta=beta)


def _matmul(cx, a, b, *_):
    return cx.op("MatMul", a, b)


def _sdpa(cx, q, k, v, mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    """softmax(q @ k^T * scale + mask) @ v; bool masks keep True, as in torch."""
    if dropout_p:
        raise Unsupported("attention dropout (dropout_p > 0 is random even in eval mode)")
    dtype = cx.out_dtype
    q_shape, k_shape = cx.shape(q), cx.shape(k)
    rank = len(q_shape)
    if enable_gqa and q_shape[-3] != k_shape[-3]:
        k, v = (_repeat_heads(cx, t, q_shape[-3] // k_shape[-3]) for t in (k, v))
    perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    scores = cx.op("MatMul", q, cx.op("Transpose", k, perm=perm))
    scale = 1 / math.sqrt(q_shape[-1]) if scale is None else scale
    scores = cx.op("Mul", scores, cx.tensor(scale, dtype))
    if is_causal:
        length, source = q_shape[-2], k_shape[-2]
        mask = torch.ones(length, source, dtype=torch.bool).tril()
    if mask is not None:
        if cx.dtype(mask) == "bool":
            scores = cx.op("Where", mask, scores, cx.tensor(-math.inf, dtype))
        else:
            scores = cx.op("Add", scores, cx.tensor(mask, dtype))
    return cx.op("MatMul", cx.op("Softmax", scores, axis=-1), v)


def _repeat_heads(cx, t, times):
    shape = cx.shape(t)
    heads = len(shape) - 3
    expanded = cx.op("Expand", cx.op("Unsqueeze", t, axes=(heads + 1,)),
                     shape=shape[:heads + 1] + (times,) + shape[heads + 1:])
    return cx.op("Reshape", expanded,
                 shape=shape[:heads] + (shape[heads] * times,) + shape[heads + 1:])


# ---- normalization --------------------------------------------------------------------------

def _ones(cx, shape):
    return cx.tensor(torch.ones(tuple(shape)), cx.out_dtype)


def _layer_norm(cx, x, normalized_shape, weight=None, bias=None, eps=1e-5, *_):
    scale = _ones(cx, normalized_shape) if weight is None else weight
    inputs = (x, scale) if bias is None else (x, scale, bias)
    outputs = len(cx.out) if isinstance(cx.out, tuple) else 1
    return cx.op("LayerNormalization", *inputs, axis=-len(normalized_shape), epsilon=eps,
                 num_outputs=outputs, outputs=outputs)


def _rms_norm(cx, x, normalized_shape, weight=None, eps=None):
    scale = _ones(cx, normalized_shape) if weight is None else weight
    if eps is None:
        eps = float(np.finfo(np.float32 if cx.dtype(x) != "float64" else np.float64).eps)
    return cx.op("RMSNormalization", x, scale, axis=-len(normalized_shape), epsilon=eps)


def _batch_norm_eval(cx, x, weight, bias, mean, var, momentum, eps):
    channels = (cx.shape(x)[1],)
    scale = _ones(cx, channels) if weight is None else weight
    shift = cx.tensor(torch.zeros(channels), cx.out_dtype) if bias is None else bias
    y = cx.op("BatchNormalization", x, scale, shift, mean, var, epsilon=eps)
    return y, None, None


def _group_norm(cx, x, weight, bias, n, channels, spatial, groups, eps):
    shape = cx.shape(x)
    grouped = cx.op("Reshape", x, shape=(n, groups, int(np.prod(shape)) // (n * groups)))
    ones = cx.tensor(torch.ones(cx.shape(grouped)[-1:]), cx.dtype(x))
    y = cx.op("LayerNormalization", grouped, ones, axis=-1, epsilon=eps)
    y = cx.op("Reshape", y, shape=shape)
    affine = (channels,) + (1,) * (len(shape) - 2)
    if weight is not None:
        y = cx.op("Mul", y, cx.op("Reshape", weight, shape=affine))
    if bias is not None:
        y = cx.op("Add", y, cx.op("Reshape", bias, shape=affine))
    return y, None, None


def _softmax(op):
    def rule(cx, x, dim, *_):
        return cx.op(op, cx.tensor(x, cx.out_dtype), axis=dim)
    return rule


# ---- convolution and pooling ----------------------------------------------------------------

def _convolution(cx, x, weight, bias, stride, padding, dilation, transposed, output_padding,
                 groups):
    if transposed:
        raise Unsupported("transposed convolution")
    nd = cx.rank(x) - 2
    pads = pairs(padding, nd)
    inputs = (x, weight) + (() if bias is None else (bias,))
    return cx.op("Conv", *inputs, strides=pairs(stride, nd), pads=pads + pads,
                 dilations=pairs(dilation, nd), group=groups)


def _window(cx, x, kernel, stride, padding):
    nd = cx.rank(x) - 2
    kernel = pairs(kernel, nd)
    pads = pairs(padding, nd)
    return {"kernel_shape": kernel, "strides": pairs(stride or kernel, nd),
            "pads": pads + pads}


def _max_pool(cx, x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
    nd = cx.rank(x) - 2
    window = _window(cx, x, kernel, stride, as_list(padding))
    y = cx.op("MaxPool", x, **window, dilations=pairs(as_list(dilation), nd),
              ceil_mode=int(ceil_mode))
    return (y, None) if isinstance(cx.out, tuple) else y


def _avg_pool(cx, x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None):
    if divisor_override is not None:
        raise Unsupported("avg_pool with divisor_override")
    nd = cx.rank(x) - 2
    return cx.op("AveragePool", x, **_window(cx, x, kernel, stride, as_list(padding)),
                 dilations=[1] * nd, ceil_mode=int(ceil_mode),
                 count_include_pad=int(count_include_pad))


def _adaptive_avg_pool(cx, x, output_size):
    spatial = cx.shape(x)[2:]
    output_size = [s if o is None else o for s, o in zip(spatial, output_size)]
    if all(o == 1 for o in output_size):
        return cx.op("GlobalAveragePool", x)
    if any(s % o for s, o in zip(spatial, output_size)):
        raise Unsupported("adaptive pooling to a size that does not divide the input")
    kernel = [s // o for s, o in zip(spatial, output_size)]
    return cx.op("AveragePool", x, kernel_shape=kernel, strides=kernel,
                 pads=[0] * 2 * len(kernel), dilations=[1] * len(kernel))
