"""Torch semantics of the window ops (Conv, MaxPool, AveragePool), matching the numpy reference.

Pads are explicit (all begins, then all ends) and may be asymmetric, so every op pads first and
then runs an unpadded window computation. Conv and MaxPool use torch's fused kernels for 1-3
spatial dims of float tensors and fall back to an unfold + einsum/reduction over windows (the
reference's own algorithm) for other ranks and dtypes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlc.compiler.ir.shapes import window_out

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def torch_pads(widths) -> list[int]:
    """F.pad's flat list (last dim first) for per-dim (begin, end) widths of trailing dims."""
    flat: list[int] = []
    for begin, end in reversed(list(widths)):
        flat += [int(begin), int(end)]
    return flat


def lowest(dtype: torch.dtype):
    if dtype == torch.bool:
        return False
    return float("-inf") if dtype.is_floating_point else torch.iinfo(dtype).min


def windows(x: torch.Tensor, kernel, strides, dilations) -> torch.Tensor:
    """View of x (N, C, *spatial) as (N, C, *out, *kernel) windows (unfold, no copy)."""
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilations)):
        x = x.unfold(2 + i, (k - 1) * d + 1, s)[..., ::d]  # unfold appends the window dim
    return x


def _pad_spatial(x, widths, value=0):
    """Pad the spatial dims of x by per-dim (begin, end) widths with a constant."""
    if not any(b or e for b, e in widths):
        return x
    return F.pad(x, torch_pads(widths), value=value)


def conv(x, w, b=None, strides=(), pads=(), dilations=(), group=1):
    nd = x.ndim - 2
    widths = [(pads[i], pads[i + nd]) for i in range(nd)]
    if x.dtype.is_floating_point and nd in _CONV:
        symmetric = all(begin == end for begin, end in widths)
        padding = [begin for begin, _ in widths] if symmetric else 0
        xp = x if symmetric else _pad_spatial(x, widths)
        return _CONV[nd](xp, w, b, list(strides), padding, list(dilations), group)
    win = windows(_pad_spatial(x, widths), w.shape[2:], strides, dilations)
    n, c = x.shape[:2]
    m = w.shape[0]
    win = win.reshape((n, group, c // group) + tuple(win.shape[2:]))
    wg = w.reshape((group, m // group, c // group) + tuple(w.shape[2:]))
    letters = "opqrstuv"[:nd], "hijklxyz"[:nd]
    y = torch.einsum(f"ngc{letters[0]}{letters[1]},gmc{letters[1]}->ngm{letters[0]}", win, wg)
    y = y.reshape((n, m) + tuple(y.shape[3:]))
    if b is not None:
        y = y + b.reshape((1, m) + (1,) * nd)
    return y.to(x.dtype)


def _pool_padding(x, kernel, strides, pads, dilations, ceil_mode):
    """(begin, end, extra) per spatial dim; extra end padding makes ceil_mode windows whole."""
    nd = len(kernel)
    widths = []
    for i in range(nd):
        size = x.shape[2 + i]
        out = window_out(size, kernel[i], strides[i], pads[i], pads[i + nd], dilations[i],
                         ceil_mode)
        needed = (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
        extra = max(0, needed - (size + pads[i] + pads[i + nd]))
        widths.append((pads[i], pads[i + nd], extra))
    return widths


def max_pool(x, kernel_shape, strides, pads, dilations, ceil_mode=0):
    widths = _pool_padding(x, kernel_shape, strides, pads, dilations, ceil_mode)
    xp = _pad_spatial(x, [(b, e + extra) for b, e, extra in widths], lowest(x.dtype))
    nd = len(kernel_shape)
    if x.dtype.is_floating_point and nd in _MAX_POOL:
        return _MAX_POOL[nd](xp, list(kernel_shape), list(strides), 0, list(dilations))
    win = windows(xp, kernel_shape, strides, dilations)
    return win.amax(dim=tuple(range(-nd, 0)))


def average_pool(x, kernel_shape, strides, pads, dilations, ceil_mode=0, count_include_pad=0):
    widths = _pool_padding(x, kernel_shape, strides, pads, dilations, ceil_mode)
    pad_width = [(b, e + extra) for b, e, extra in widths]
    dims = tuple(range(-len(kernel_shape), 0))
    total = windows(_pad_spatial(x, pad_width), kernel_shape, strides, dilations).sum(dim=dims)
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=total.dtype, device=x.device)
    if count_include_pad:  # explicit pads count, the ceil_mode overhang does not
        ones = _pad_spatial(ones, [(b, e) for b, e, _ in widths], 1)
        count_pad = [(0, extra) for _, _, extra in widths]
    else:
        count_pad = pad_width
    count = windows(_pad_spatial(ones, count_pad), kernel_shape, strides, dilations).sum(dim=dims)
    return (total / count).to(x.dtype)
