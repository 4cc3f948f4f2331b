"""Kernels for quantized weights: codebook-dequantize + matmul (Triton and CUDA).

Names are loaded on first use, so importing this package does not import triton (which reads
TRITON_INTERPRET when a kernel is defined).

>>> from mlc.kernels.quant import codebook_matmul  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__all__ = ["CompileResult", "CudaKernel", "codebook_matmul", "codebook_matmul_kernel",
           "compile_check", "cuda_kernel", "cuda_source", "emulate_cuda", "packed_length",
           "reference_codebook_matmul", "reference_dequantize", "unpack_indices"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".dequant_matmul", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
