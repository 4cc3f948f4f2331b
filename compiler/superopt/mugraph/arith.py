"""Arithmetic backends for the µGraph interpreter.

The interpreter never touches numbers itself: every value operation goes through an Arith, so
the same walk over a µGraph computes in float (FloatArith) or in a finite field (see
compiler/superopt/verify/field.py). Layout operations are part of the interface because a
finite-field value is not a single numpy array.
"""

from __future__ import annotations

import numpy as np

from .unary import NUMPY as NUMPY_ACTIVATIONS
from .unary import torch_activation


class FloatArith:
    """Plain numpy floating point (float64 for checks, float32 to mimic a kernel)."""

    def __init__(self, dtype=np.float64):
        self.dtype = np.dtype(dtype)

    # ---- conversion and layout ---------------------------------------------------------------
    def from_numpy(self, array):
        return np.asarray(array, dtype=self.dtype)

    def to_numpy(self, value) -> np.ndarray:
        return np.asarray(value)

    def shape(self, value) -> tuple[int, ...]:
        return tuple(value.shape)

    def reshape(self, value, shape):
        return value.reshape(shape)

    def transpose(self, value, perm):
        return value.transpose(perm)

    def broadcast_to(self, value, shape):
        return np.broadcast_to(value, shape)

    # ---- arithmetic ----------------------------------------------------------------------------
    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def exp(self, a):
        return np.exp(a)

    def sqrt(self, a):
        return np.sqrt(a)

    def silu(self, a):
        return a / (1.0 + np.exp(-a))

    def scale(self, a, factor: float):
        return a * self.dtype.type(factor)

    def shift(self, a, value: float):
        return a + self.dtype.type(value)

    def activation(self, name: str, a):
        """One of unary.ACTIVATIONS (gelu, gelu_tanh, sigmoid, tanh, erf)."""
        return NUMPY_ACTIVATIONS[name](a).astype(self.dtype, copy=False)

    def divide_by_count(self, a, count: int):
        """a / count for a positive integer count (a mean's denominator)."""
        return a / self.dtype.type(count)

    def matmul(self, a, b):
        return np.matmul(a, b)

    def sum(self, a, axes):
        return np.sum(a, axis=axes, keepdims=True)

    def max(self, a, axes):
        return np.max(a, axis=axes, keepdims=True)

    def running_max(self, a, axis):
        """Cumulative max along axis (the running max an online softmax keeps)."""
        return np.maximum.accumulate(a, axis=axis)


class TorchArith:
    """torch tensors (differentiable): how the torch executor runs a fused region's µGraph."""

    def __init__(self, dtype=None):
        import torch
        self.torch = torch
        self.dtype = dtype or torch.float32

    def from_numpy(self, array):
        return self.torch.as_tensor(np.asarray(array), dtype=self.dtype)

    def to_numpy(self, value) -> np.ndarray:
        return value.detach().cpu().numpy()

    def shape(self, value) -> tuple[int, ...]:
        return tuple(value.shape)

    def reshape(self, value, shape):
        return value.reshape(shape)

    def transpose(self, value, perm):
        return value.permute(perm)

    def broadcast_to(self, value, shape):
        return value.expand(shape)

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def exp(self, a):
        return self.torch.exp(a)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def silu(self, a):
        return self.torch.nn.functional.silu(a)

    def scale(self, a, factor: float):
        return a * factor

    def shift(self, a, value: float):
        return a + value

    def activation(self, name: str, a):
        return torch_activation(self.torch, name, a)

    def divide_by_count(self, a, count: int):
        return a / count

    def matmul(self, a, b):
        return self.torch.matmul(a, b)

    def sum(self, a, axes):
        return a.sum(dim=tuple(axes), keepdim=True)

    def max(self, a, axes):
        return a.amax(dim=tuple(axes), keepdim=True)

    def running_max(self, a, axis):
        return self.torch.cummax(a, dim=axis).values
