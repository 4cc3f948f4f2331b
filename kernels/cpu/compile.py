"""Compile a rendered µGraph with the system C++ compiler into a shared library, cache it by
content, and call it through ctypes.

The cache key is the sha256 of the source, the helper header, the flags, the compiler's
version and the host CPU's feature flags (-march=native code from one machine must not run on
another). Libraries are written atomically (compile to a temp name, then os.replace), so
concurrent processes never load a half-written file.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from mlc.compiler.errors import MlcError
from mlc.compiler.superopt.mugraph.model import MuGraph, kernel_shapes

from .render import CpuModule, render_module

HELPERS_DIR = Path(__file__).parent  # holds mlc_cpu.h
HEADER = HELPERS_DIR / "mlc_cpu.h"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17",
         "-fno-math-errno", "-w")

_loaded: dict[str, ctypes.CDLL] = {}  # per-process: library digest -> loaded library
_lock = threading.Lock()


class CpuCompileError(MlcError):
    """No C++ compiler, or it rejected a generated source (carries the compiler's stderr)."""


def find_compiler() -> str:
    """The system C++ compiler (g++, then c++, then clang++) or a CpuCompileError."""
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    raise CpuCompileError("no C++ compiler (g++, c++ or clang++) on PATH; install gcc (e.g. "
                          "`apt-get install g++`) to run µGraphs on the CPU")


@functools.cache
def _compiler_identity(compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    try:
        cpu_flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        cpu_flags = os.uname().machine
    return version + cpu_flags


def cache_dir() -> Path:
    """$MLC_CACHE_DIR/cpu, or ~/.cache/mlc/cpu."""
    root = os.environ.get("MLC_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "mlc") / "cpu"


def build_library(source: str) -> Path:
    """The shared library of a rendered source, compiled unless the cache holds it."""
    compiler = find_compiler()
    key = hashlib.sha256("\0".join([source, HEADER.read_text(), " ".join(FLAGS),
                                    _compiler_identity(compiler)]).encode()).hexdigest()
    folder = cache_dir()
    library = folder / f"mlc_{key[:32]}.so"
    if library.is_file():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build_") as work:
        cpp, temp = Path(work) / "kernel.cpp", Path(work) / "kernel.so"
        cpp.write_text(source)
        command = [compiler, *FLAGS, f"-I{HELPERS_DIR}", str(cpp), "-o", str(temp)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise CpuCompileError(f"{Path(compiler).name} rejected a generated CPU kernel "
                                  f"(exit {result.returncode}):\n{result.stderr.strip()[-4000:]}")
        os.replace(temp, library)
    return library


def _load(library: Path) -> ctypes.CDLL:
    with _lock:
        handle = _loaded.get(library.name)
        if handle is None:
            handle = _loaded[library.name] = ctypes.CDLL(str(library))
            handle.mlc_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            handle.mlc_run.restype = None
        return handle


class CpuKernel:
    """A compiled µGraph: `kernel(*arrays)` takes the inputs in graph.inputs order and returns
    the outputs (float32 numpy arrays) in graph.outputs order.

    >>> kernel = compile_mugraph(graph)       # doctest: +SKIP
    >>> (y,) = kernel(x, w)                   # doctest: +SKIP
    """

    def __init__(self, graph: MuGraph, module: CpuModule, library: Path):
        shapes = kernel_shapes(graph)
        self.graph, self.module, self.library = graph, module, library
        self._input_shapes = [tuple(shapes[n]) for n in module.inputs]
        self._output_shapes = [tuple(shapes[n]) for n in module.outputs]
        self._run = _load(library).mlc_run

    def __call__(self, *arrays) -> list[np.ndarray]:
        if len(arrays) != len(self._input_shapes):
            raise MlcError(f"the µGraph takes {len(self._input_shapes)} inputs, got "
                           f"{len(arrays)}")
        inputs = []
        for n, (array, shape) in enumerate(zip(arrays, self._input_shapes)):
            array = np.ascontiguousarray(array, dtype=np.float32)
            if array.shape != shape:
                raise MlcError(f"input #{n} has shape {array.shape}, the µGraph expects {shape}")
            inputs.append(array)
        outputs = [np.empty(shape, np.float32) for shape in self._output_shapes]
        in_ptrs = (ctypes.c_void_p * max(1, len(inputs)))(*[a.ctypes.data for a in inputs])
        out_ptrs = (ctypes.c_void_p * max(1, len(outputs)))(*[a.ctypes.data for a in outputs])
        self._run(in_ptrs, out_ptrs)
        by_name = dict(zip(self.module.inputs, inputs)) | dict(zip(self.module.outputs, outputs))
        return [by_name[name] if name in self.module.outputs else by_name[name].copy()
                for name in self.graph.outputs]


_kernels: dict[str, CpuKernel] = {}  # per-process: source digest -> kernel


def compile_mugraph(graph: MuGraph) -> CpuKernel:
    """Render, compile (or fetch from the cache) and load a µGraph for the host CPU."""
    module = render_module(graph)
    digest = hashlib.sha256(module.source.encode()).hexdigest()
    kernel = _kernels.get(digest)
    if kernel is None or kernel.graph.outputs != graph.outputs \
            or tuple(kernel.graph.inputs) != tuple(graph.inputs):
        kernel = _kernels[digest] = CpuKernel(graph, module, build_library(module.source))
    return kernel
