"""Tensor types of the IR: a static shape and a dtype name that numpy understands."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import ml_dtypes  # ships with onnx: bfloat16, float8, float4 and sub-byte ints for numpy
import numpy as np

LOW_BIT_FLOATS = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                  "float4_e2m1fn")
LOW_BIT_INTS = ("int4", "uint4", "int2", "uint2")
_EXTRA = {name: np.dtype(getattr(ml_dtypes, name))
          for name in ("bfloat16",) + LOW_BIT_FLOATS + LOW_BIT_INTS}

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64") + LOW_BIT_FLOATS
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
              "uint64") + LOW_BIT_INTS
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)


def np_dtype(name: str) -> np.dtype:
    """The numpy dtype for an IR dtype name, e.g. np_dtype("float32")."""
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; the IR knows {', '.join(DTYPES)}")
    return np.dtype(name)


def dtype_name(dtype) -> str:
    """The IR dtype name of a numpy dtype (or array)."""
    dtype = np.dtype(getattr(dtype, "dtype", dtype))
    for name, extra in _EXTRA.items():
        if dtype == extra:
            return name
    if dtype.name not in DTYPES:
        raise ValueError(f"dtype {dtype.name} is not supported by the mlc IR")
    return dtype.name


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


@dataclass(frozen=True)
class TensorType:
    """A tensor's static shape and dtype, e.g. TensorType((2, 4096), "float32")."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(_dim(d, self.shape) for d in self.shape))
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; the IR knows {', '.join(DTYPES)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)  # Python ints: a hostile 2^40 x 2^40 shape cannot wrap

    @property
    def nbytes(self) -> int:
        return self.numel * np_dtype(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"

    @staticmethod
    def of(array) -> TensorType:
        return TensorType(tuple(np.shape(array)), dtype_name(np.asarray(array).dtype))


def _dim(value, shape) -> int:
    """One dimension as an int; fractional, boolean and negative dims are errors, never
    truncated (a shape is a count of elements)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"shape {list(shape)}: dim {value!r} is not a whole number")
    if value < 0:
        raise ValueError(f"shape {list(shape)}: dim {value} is negative")
    return int(value)


def available_memory() -> int:
    """Bytes of memory this process may still allocate (MemAvailable on Linux; physical
    memory elsewhere): the bound every reader and executor checks before allocating."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40  # unknown platform: the allocation itself will tell


def format_bytes(count: int) -> str:
    """A byte count for people, e.g. format_bytes(3 * 2**30) == "3.0 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count} B"
        count /= 1024
    return f"{count} B"
