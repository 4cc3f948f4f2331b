"""The CPU target's kernels: a µGraph rendered to C++ (OpenMP over grid blocks, register-blocked
matmul micro-kernel), compiled by the system compiler, cached by content, called via ctypes."""

from .block import BLOCK_EMIT
from .compile import CpuCompileError, CpuKernel, build_library, cache_dir, compile_mugraph
from .render import LIBRARY_EMIT, CpuModule, render_c, render_module

__all__ = ["BLOCK_EMIT", "LIBRARY_EMIT", "CpuCompileError", "CpuKernel", "CpuModule",
           "build_library", "cache_dir", "compile_mugraph", "render_c", "render_module"]
