"""Run a µGraph's generated CUDA on the CPU (cpu_shim.cuh + the host C++ compiler), so that
every generated kernel can be checked numerically on a machine without a GPU.

One OS thread per CUDA thread: correct for the barrier and shuffle patterns the helpers use,
and slow, so keep shapes small. The GPU path (CuPy) runs the same source unchanged.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mlc.compiler.superopt.mugraph.model import MuGraph, kernel_shapes

from .compile import HELPERS_DIR, CudaCompileError
from .render import CudaModule, render_module

CPU_SHIM = HELPERS_DIR / "cpu_shim.cuh"


def build_cpu_library(source: str, workdir=None) -> Path:
    """Compile a rendered source with the CPU shim into a shared library."""
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        raise CudaCompileError("no host C++ compiler (g++ or clang++) on PATH for CPU emulation")
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mlc_cpu_"))
    workdir.mkdir(parents=True, exist_ok=True)
    stem = "mlc_cpu_" + hashlib.sha256(source.encode()).hexdigest()[:12]
    cu, library = workdir / f"{stem}.cu", workdir / f"{stem}.so"
    if library.is_file():  # same source, same library
        return library
    cu.write_text(source)
    command = [compiler, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
               "-Wno-unknown-pragmas", "-include", str(CPU_SHIM), f"-I{HELPERS_DIR}",
               "-x", "c++", str(cu), "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise CudaCompileError(f"host compile of {cu} for CPU emulation failed:\n"
                               f"{result.stderr.strip()}")
    return library


def emulate_module(module: CudaModule, graph: MuGraph, inputs: dict[str, np.ndarray],
                   library: Path) -> dict[str, np.ndarray]:
    """Launch a rendered module's kernels from a CPU library built from its source (possibly
    together with other modules' sources, under distinct prefixes)."""
    handle = ctypes.CDLL(str(library))
    shapes = kernel_shapes(graph)
    buffers = {name: np.zeros(shapes[name], np.float32) for name in module.graph_tensors}
    for name in graph.inputs:
        buffers[name][...] = inputs[name]
    launch = handle.mlc_cpu_launch
    launch.restype = ctypes.c_int
    for spec in module.kernels:
        tensors = [buffers[t] for t in spec.inputs + spec.outputs]
        pointers = (ctypes.c_void_p * len(tensors))(*[t.ctypes.data for t in tensors])
        kernel = ctypes.cast(getattr(handle, spec.name), ctypes.c_void_p)
        status = launch(kernel, *map(ctypes.c_uint, spec.grid), ctypes.c_uint(spec.threads),
                        ctypes.c_int(len(tensors)), pointers)
        if status != 0:
            raise CudaCompileError(f"CPU emulation cannot launch {spec.name} "
                                   f"({len(tensors)} arguments)")
    return {name: buffers[name].copy() for name in graph.outputs}


def emulate_mugraph(graph: MuGraph, inputs: dict[str, np.ndarray],
                    workdir=None) -> dict[str, np.ndarray]:
    """Outputs of the µGraph computed by its generated CUDA kernels, emulated on the CPU.

    >>> emulate_mugraph(graph, {"X": x, "W": w})["Y"]    # doctest: +SKIP
    """
    module = render_module(graph)
    return emulate_module(module, graph, inputs, build_cpu_library(module.source, workdir))
