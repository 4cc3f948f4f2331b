"""Hand-written Triton helpers that rendered µGraph kernels call (tile loads and stores, small
matmuls, the reduce-to-dimx fold), so the generated source stays short and reviewable.

Tiles live in fp32 registers with every dim padded to a power of two (at least 16, or exactly 1
for a size-1 dim); loads fill the padding with zeros and stores mask it off.
"""

import triton
import triton.language as tl

__all__ = ["dot", "fold_last", "gelu", "gelu_tanh", "layer_norm_rows", "load_tile_1d",
           "load_tile_2d", "load_tile_3d", "outer_matmul", "silu", "softmax_rows",
           "store_tile_1d", "store_tile_2d", "store_tile_3d", "tanh"]

# ---- global <-> register tiles (strides, true sizes, padded sizes are compile-time) -----------


@triton.jit
def load_tile_1d(ptr, STRIDE0: tl.constexpr, SIZE0: tl.constexpr, PAD0: tl.constexpr):
    r0 = tl.arange(0, PAD0)
    return tl.load(ptr + r0 * STRIDE0, mask=r0 < SIZE0, other=0.0).to(tl.float32)


@triton.jit
def load_tile_2d(ptr, STRIDE0: tl.constexpr, STRIDE1: tl.constexpr, SIZE0: tl.constexpr,
                 SIZE1: tl.constexpr, PAD0: tl.constexpr, PAD1: tl.constexpr):
    r0 = tl.arange(0, PAD0)[:, None]
    r1 = tl.arange(0, PAD1)[None, :]
    mask = (r0 < SIZE0) & (r1 < SIZE1)
    return tl.load(ptr + r0 * STRIDE0 + r1 * STRIDE1, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def load_tile_3d(ptr, STRIDE0: tl.constexpr, STRIDE1: tl.constexpr, STRIDE2: tl.constexpr,
                 SIZE0: tl.constexpr, SIZE1: tl.constexpr, SIZE2: tl.constexpr,
                 PAD0: tl.constexpr, PAD1: tl.constexpr, PAD2: tl.constexpr):
    r0 = tl.arange(0, PAD0)[:, None, None]
    r1 = tl.arange(0, PAD1)[None, :, None]
    r2 = tl.arange(0, PAD2)[None, None, :]
    mask = (r0 < SIZE0) & (r1 < SIZE1) & (r2 < SIZE2)
    offsets = r0 * STRIDE0 + r1 * STRIDE1 + r2 * STRIDE2
    return tl.load(ptr + offsets, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store_tile_1d(ptr, value, STRIDE0: tl.constexpr, SIZE0: tl.constexpr, PAD0: tl.constexpr):
    r0 = tl.arange(0, PAD0)
    tl.store(ptr + r0 * STRIDE0, value, mask=r0 < SIZE0)


@triton.jit
def store_tile_2d(ptr, value, STRIDE0: tl.constexpr, STRIDE1: tl.constexpr,
                  SIZE0: tl.constexpr, SIZE1: tl.constexpr, PAD0: tl.constexpr,
                  PAD1: tl.constexpr):
    r0 = tl.arange(0, PAD0)[:, None]
    r1 = tl.arange(0, PAD1)[None, :]
    mask = (r0 < SIZE0) & (r1 < SIZE1)
    tl.store(ptr + r0 * STRIDE0 + r1 * STRIDE1, value, mask=mask)


@triton.jit
def store_tile_3d(ptr, value, STRIDE0: tl.constexpr, STRIDE1: tl.constexpr,
                  STRIDE2: tl.constexpr, SIZE0: tl.constexpr, SIZE1: tl.constexpr,
                  SIZE2: tl.constexpr, PAD0: tl.constexpr, PAD1: tl.constexpr,
                  PAD2: tl.constexpr):
    r0 = tl.arange(0, PAD0)[:, None, None]
    r1 = tl.arange(0, PAD1)[None, :, None]
    r2 = tl.arange(0, PAD2)[None, None, :]
    mask = (r0 < SIZE0) & (r1 < SIZE1) & (r2 < SIZE2)
    tl.store(ptr + r0 * STRIDE0 + r1 * STRIDE1 + r2 * STRIDE2, value, mask=mask)


# ---- tile arithmetic --------------------------------------------------------------------------


@triton.jit
def dot(a, b):
    """Tensor-core matmul of fp32 tiles (every dim >= 16), exact fp32 rather than tf32."""
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def outer_matmul(a, b):
    """Matmul as broadcast-multiply-sum: for tiles with a size-1 dim, which tl.dot rejects."""
    return tl.sum(tl.expand_dims(a, -1) * tl.expand_dims(b, -3), axis=-2)


@triton.jit
def silu(x):
    return x / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    """tanh from exp (the interpreter has no libdevice tanh): (1 - e) / (1 + e) with
    e = exp(-2|x|) never overflows; below |x| = 1/16 that form cancels, so a Taylor
    polynomial (next term < 1e-11 relative) takes over."""
    a = tl.abs(x)
    e = tl.exp(-2.0 * a)
    big = (1.0 - e) / (1.0 + e)
    a2 = a * a
    small = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0))))
    return tl.where(x < 0.0, -1.0, 1.0) * tl.where(a < 0.0625, small, big)


@triton.jit
def gelu(x):
    """GELU, erf form: x * Phi(x)."""
    return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def gelu_tanh(x):
    """GELU, tanh form: 0.5 x (1 + tanh(u)) written as x * sigmoid(2u), which is the same
    function without the cancellation of 1 + tanh(u) for negative x."""
    u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return x / (1.0 + tl.exp(-2.0 * u))


@triton.jit
def softmax_rows(x, SIZE: tl.constexpr, PAD: tl.constexpr):
    """Safe softmax over the last axis; padded lanes are -inf before the max, so they add
    exp(-inf) = 0 to the sum and come out 0."""
    x = tl.where(tl.arange(0, PAD) < SIZE, x, float("-inf"))
    e = tl.exp(x - tl.max(x, axis=-1, keep_dims=True))
    return e / tl.sum(e, axis=-1, keep_dims=True)


@triton.jit
def layer_norm_rows(x, SIZE: tl.constexpr, PAD: tl.constexpr, EPS: tl.constexpr):
    """(x - mean) / sqrt(var + eps) over the last axis's SIZE true lanes; padded lanes
    come out 0 (they are selected off, whatever they held)."""
    live = tl.arange(0, PAD) < SIZE
    x = tl.where(live, x, 0.0)
    centered = tl.where(live, x - tl.sum(x, axis=-1, keep_dims=True) / SIZE, 0.0)
    variance = tl.sum(centered * centered, axis=-1, keep_dims=True) / SIZE
    return centered / tl.sqrt(variance + EPS)


@triton.jit
def fold_last(x, SIZE: tl.constexpr, PAD: tl.constexpr, WIDTH: tl.constexpr,
              WIDTH_PAD: tl.constexpr):
    """out[..., j] = sum_k x[..., k * WIDTH + j]: the reduce-to-dimx step, as a 0/1 matmul."""
    rows = tl.arange(0, PAD)[:, None]
    cols = tl.arange(0, WIDTH_PAD)[None, :]
    fold = ((rows % WIDTH) == cols) & (rows < SIZE)
    x = tl.where(tl.arange(0, PAD) < SIZE, x, 0.0)  # padding may hold inf/nan: select, not scale
    return tl.sum(tl.expand_dims(x, -1) * fold.to(tl.float32), axis=-2)
