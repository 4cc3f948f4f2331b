"""CUDA C++ backend: render a µGraph to one `.cu` source and compile-check it with nvcc.

Block graphs become `__global__` kernels over shared-memory fp32 tiles; library ops become
generic grid-stride kernels from `mlc_helpers.cuh`; every kernel gets an `extern "C"` launcher.
"""

from .block import BLOCK_EMIT
from .compile import HELPERS_DIR, HELPERS_HEADER, CudaCompileError, compile_cuda
from .library import LIBRARY_EMIT
from .render import SMEM_LIMIT_SM90, CudaModule, LaunchSpec, render_cuda, render_module

__all__ = ["BLOCK_EMIT", "HELPERS_DIR", "HELPERS_HEADER", "LIBRARY_EMIT", "SMEM_LIMIT_SM90",
           "CudaCompileError", "CudaModule", "LaunchSpec", "compile_cuda", "render_cuda",
           "render_module"]
