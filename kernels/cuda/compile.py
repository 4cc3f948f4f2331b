"""Compile a rendered CUDA source with nvcc into an object file (a compile check, or a build
step for a host program that links the `extern "C"` launchers)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HELPERS_DIR = Path(__file__).parent  # holds mlc_helpers.cuh
HELPERS_HEADER = HELPERS_DIR / "mlc_helpers.cuh"
NVCC_FLAGS = ("-std=c++17", "-O3")


class CudaCompileError(RuntimeError):
    """nvcc is missing or rejected a generated source; the message carries nvcc's stderr."""


def compile_cuda(source: str, arch: str = "sm_90", workdir=None) -> Path:
    """Write `source` to a `.cu` file in `workdir` (a fresh temp dir by default) and run
    `nvcc -c -arch=<arch>`; return the object file.

    >>> compile_cuda(render_cuda(graph), arch="sm_80", workdir=tmp)  # doctest: +SKIP
    PosixPath('.../mlc_3f2a9c1d0b7e.o')
    """
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise CudaCompileError(f"arch {arch!r} is not a CUDA SM name such as sm_80 or sm_90")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise CudaCompileError("nvcc is not on PATH; install the CUDA toolkit or add its bin/ "
                               "folder to PATH")
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mlc_cu_"))
    workdir.mkdir(parents=True, exist_ok=True)
    stem = "mlc_" + hashlib.sha256(source.encode()).hexdigest()[:12]
    cu, obj = workdir / f"{stem}.cu", workdir / f"{stem}_{arch}.o"
    cu.write_text(source)
    command = [nvcc, "-c", f"-arch={arch}", *NVCC_FLAGS, f"-I{HELPERS_DIR}", "-o", str(obj),
               str(cu)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise CudaCompileError(f"nvcc failed (exit {result.returncode}) on {cu}:\n"
                               f"{result.stderr.strip() or result.stdout.strip()}")
    return obj
