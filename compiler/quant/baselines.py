"""Same-bits quantizers to compare DGMS against, all returning one `Quantized` type.

`round_to_nearest` is uniform asymmetric per-channel quantization (min/max range, integer zero
point), `kmeans_sharing` is k-means weight sharing (Deep Compression without pruning), and
`gmm_quantized` reads a fitted `GMMQuantizer` into the same form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .gmm import GMMQuantizer
from .kmeans import assign_nearest, kmeans_1d

__all__ = ["Quantized", "gmm_quantized", "kmeans_sharing", "round_to_nearest"]


def _check_bits(bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Quantized:
    """A weight as `bits`-bit codebook indices.

    indices: uint8 with the weight's shape, each < K = codebook.shape[-1] <= 2**bits.
    codebook: float32[K] shared by all values (axis None), or float32[C, K] with one row per
    slice along `axis` (C = shape[axis]).
    """

    indices: np.ndarray
    codebook: np.ndarray
    axis: int | None
    bits: int

    def __post_init__(self):
        _check_bits(self.bits)
        indices, codebook = np.asarray(self.indices), np.asarray(self.codebook)
        if indices.dtype != np.uint8:
            raise ValueError(f"indices must be uint8, got {indices.dtype}")
        rows = () if self.axis is None else (indices.shape[self.axis],)
        if codebook.ndim != len(rows) + 1 or codebook.shape[:-1] != rows:
            raise ValueError(f"codebook shape {codebook.shape} should be {rows + ('K',)} for "
                             f"axis={self.axis} and indices of shape {indices.shape}")
        if not 1 <= codebook.shape[-1] <= 1 << self.bits:
            raise ValueError(f"codebook has {codebook.shape[-1]} entries; {self.bits} bits "
                             f"allow 1..{1 << self.bits}")
        if indices.size and int(indices.max()) >= codebook.shape[-1]:
            raise ValueError(f"index {int(indices.max())} is past the codebook's "
                             f"{codebook.shape[-1]} entries")

    def dequantize(self) -> np.ndarray:
        """float32 array of the weight's shape: each index replaced by its codebook value."""
        codebook = np.asarray(self.codebook, dtype=np.float32)
        if self.axis is None:
            return codebook[self.indices]
        channels = np.moveaxis(self.indices, self.axis, 0)
        rows = channels.reshape(channels.shape[0], -1).astype(np.int64)
        values = np.take_along_axis(codebook, rows, axis=1).reshape(channels.shape)
        return np.moveaxis(values, 0, self.axis)


def round_to_nearest(weight: np.ndarray, bits: int, axis: int | None = 0) -> Quantized:
    """Uniform asymmetric min/max quantization with 2**bits levels per channel along `axis`
    (None: one range for the whole tensor).

    Each channel's range is [min(lo, 0), max(hi, 0)] so 0 is exactly representable; its
    step is range / (K - 1), its integer zero point round(-min / step), and its codebook row
    step * (arange(K) - zero_point). Every value is then within half a step of its level.
    An all-zero channel gets step 0 (a row of zeros) and stays exact.
    """
    _check_bits(bits)
    levels = 1 << bits
    values = np.asarray(weight, dtype=np.float64)
    if axis is not None:
        if not -values.ndim <= axis < values.ndim:
            raise ValueError(f"axis {axis} is out of range for a weight of shape {values.shape}")
        axis = axis % values.ndim
    channels = values.reshape(1, -1) if axis is None else \
        np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    if channels.shape[1] == 0:
        low = high = np.zeros(channels.shape[0])
    else:
        low = np.minimum(channels.min(axis=1), 0.0)
        high = np.maximum(channels.max(axis=1), 0.0)
    step = (high - low) / (levels - 1)
    safe_step = np.where(step > 0, step, 1.0)
    zero_point = np.clip(np.round(-low / safe_step), 0, levels - 1)
    codes = np.round(channels / safe_step[:, None]) + zero_point[:, None]
    codes = np.clip(codes, 0, levels - 1).astype(np.uint8)
    codebook = (step[:, None] * (np.arange(levels) - zero_point[:, None])).astype(np.float32)
    if axis is None:
        return Quantized(codes.reshape(values.shape), codebook[0], None, bits)
    moved = np.moveaxis(values, axis, 0).shape
    return Quantized(np.moveaxis(codes.reshape(moved), 0, axis), codebook, axis, bits)


def kmeans_sharing(weight: np.ndarray, bits: int, *, seed: int = 0) -> Quantized:
    """k-means weight sharing: one codebook of 2**bits centres (no pinned zero) fitted to all
    of `weight`'s values, each value replaced by its nearest centre. Lossless when the weight
    has at most 2**bits distinct values (and at most kmeans_1d's max_samples values)."""
    _check_bits(bits)
    values = np.asarray(weight, dtype=np.float32)
    centres = kmeans_1d(values, 1 << bits, seed=seed)
    indices = assign_nearest(values, centres).astype(np.uint8)
    return Quantized(indices, centres.astype(np.float32), None, bits)


def gmm_quantized(quantizer: GMMQuantizer, weight: torch.Tensor) -> Quantized:
    """A GMM quantizer's hard weight as a `Quantized`: argmax-responsibility indices into its
    codebook (component means, codebook[0] == 0), one codebook for the tensor."""
    with torch.no_grad():
        indices = quantizer.hard_indices(weight).cpu().numpy().astype(np.uint8)
        codebook = quantizer.codebook().cpu().numpy()
    return Quantized(indices, codebook, None, quantizer.bits)
