"""Codebook-dequantize + matmul, y = x @ W, for a weight stored as packed low-bit indices into a
float codebook: a Triton kernel, its CUDA C++ twin and a numpy reference. Neither kernel writes
the float W to global memory; each unpacks one [BK, BN] tile of indices at a time.

The format: W of shape [k, n] (the right operand) is `packed`, a uint8 little-endian bitstream
in which W[r, c] is field i = r * n + c, bits [i * bits, (i + 1) * bits) (bit j of the stream is
bit j % 8 of byte j // 8), and `codebook`, float32 of shape (L,) or (n, L) (one codebook per
output column) with L <= 2**bits: W[r, c] = codebook[idx] or codebook[c, idx]. Indices at or
past L read as 0 in both kernels (the reference raises IndexError).

Triton picks interpreter or compiler when a kernel is defined, so for CPU tensors set
TRITON_INTERPRET=1 before this module (or triton) is first imported.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import torch
import triton
import triton.language as tl

from mlc.kernels.cuda.compile import CudaCompileError, compile_cuda
from mlc.kernels.triton.helpers import dot

__all__ = ["CompileResult", "CudaKernel", "codebook_matmul", "codebook_matmul_kernel",
           "compile_check", "cuda_kernel", "cuda_source", "emulate_cuda", "packed_length",
           "reference_codebook_matmul", "reference_dequantize", "unpack_indices"]

MAX_BITS = 8
CUDA_TILE = (32, 32, 32)  # block_m, block_n, block_k of the CUDA kernel
CUDA_THREADS = 256
HERE = Path(__file__).parent
DEVICE_HEADER = HERE / "codebook_matmul.cuh"


# ---- the format ------------------------------------------------------------------------------

def packed_length(k: int, n: int, bits: int) -> int:
    """Bytes in the bitstream of a [k, n] weight at `bits` per index.

    >>> packed_length(33, 17, 3)
    211
    """
    return (k * n * bits + 7) // 8


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low \
            or (high is not None and value > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")


def _check_format(bits, k, n, packed_shape, codebook_shape, x_shape=None) -> int:
    """Validate shapes against the format; return the codebook length L."""
    _check_int("bits", bits, 1, MAX_BITS)
    _check_int("k", k, 1)
    _check_int("n", n, 1)
    want = packed_length(k, n, bits)
    if len(packed_shape) != 1 or packed_shape[0] != want:
        raise ValueError(f"packed must be 1-D with {want} bytes for a [{k}, {n}] weight at {bits} "
                         f"bits (ceil({k} * {n} * {bits} / 8)), got shape {list(packed_shape)}")
    levels = codebook_shape[-1] if len(codebook_shape) in (1, 2) else 0
    per_channel_ok = len(codebook_shape) == 1 or codebook_shape[0] == n
    if not per_channel_ok or not 1 <= levels <= 2 ** bits:
        raise ValueError(f"codebook must have shape (L,) or (n, L) = ({n}, L) with "
                         f"1 <= L <= 2**bits = {2 ** bits}, got {tuple(codebook_shape)}")
    if x_shape is not None and (len(x_shape) != 2 or x_shape[1] != k):
        raise ValueError(f"x must be 2-D [m, k] with k = {k}, got shape {list(x_shape)}")
    return int(levels)


# ---- numpy reference -------------------------------------------------------------------------

def unpack_indices(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first `count` fields of a `bits`-bit little-endian bitstream, as int64.

    >>> unpack_indices(np.array([0b11100100], np.uint8), 2, 4).tolist()
    [0, 1, 2, 3]
    """
    stream = np.unpackbits(np.asarray(packed, np.uint8), bitorder="little")[: count * bits]
    return stream.reshape(count, bits).astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64))


def reference_dequantize(packed, codebook, bits: int, k: int, n: int) -> np.ndarray:
    """The float64 [k, n] weight a packed bitstream and codebook stand for."""
    codebook = np.asarray(codebook, np.float64)
    _check_format(bits, k, n, np.shape(packed), codebook.shape)
    index = unpack_indices(packed, bits, k * n).reshape(k, n)
    if codebook.ndim == 1:
        return codebook[index]
    return np.take_along_axis(codebook, index.T, axis=1).T  # W[r, c] = codebook[c, index[r, c]]


def reference_codebook_matmul(x, packed, codebook, bits: int, k: int, n: int) -> np.ndarray:
    """x @ W in float64, W dequantized in full: the ground truth for both kernels.

    >>> reference_codebook_matmul(np.ones((1, 2)), np.array([0b0110], np.uint8),
    ...                           np.array([0.0, 1.0, 2.0, 3.0]), 2, 2, 1).tolist()
    [[3.0]]
    """
    x = np.asarray(x, np.float64)
    _check_format(bits, k, n, np.shape(packed), np.shape(codebook), x.shape)
    return x @ reference_dequantize(packed, codebook, bits, k, n)


# ---- Triton ----------------------------------------------------------------------------------

@triton.jit
def _codebook_tile(packed_ptr, codebook_ptr, rk, rn, N, K, LEVELS, BITS: tl.constexpr,
                   PER_CHANNEL: tl.constexpr):
    """W[rk, rn] as an fp32 tile: each index unpacked from the bitstream, then looked up."""
    inside = (rk[:, None] < K) & (rn[None, :] < N)
    bit = (rk[:, None].to(tl.int64) * N + rn[None, :]) * BITS
    byte = bit >> 3
    shift = (bit & 7).to(tl.int32)
    word = tl.load(packed_ptr + byte, mask=inside, other=0).to(tl.int32)
    if 8 % BITS != 0:  # 3, 5, 6, 7 bits: a field may cross into the next byte (read only then)
        crosses = inside & (shift + BITS > 8)
        word = word | (tl.load(packed_ptr + byte + 1, mask=crosses, other=0).to(tl.int32) << 8)
    index = (word >> shift) & ((1 << BITS) - 1)
    valid = inside & (index < LEVELS)
    if PER_CHANNEL:
        index = rn[None, :].to(tl.int64) * LEVELS + index
    return tl.load(codebook_ptr + index, mask=valid, other=0.0)


@triton.jit
def codebook_matmul_kernel(x_ptr, packed_ptr, codebook_ptr, y_ptr, M, N, K, LEVELS,
                           stride_xm, stride_xk, BITS: tl.constexpr, PER_CHANNEL: tl.constexpr,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One [BLOCK_M, BLOCK_N] tile of y = x @ W per program, grid (cdiv(M, BM), cdiv(N, BN));
    y is contiguous fp32, W is unpacked per K-tile and accumulated in fp32."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        x_mask = (rm[:, None] < M) & (rk[None, :] < K)
        x = tl.load(x_ptr + rm[:, None] * stride_xm + rk[None, :] * stride_xk, mask=x_mask,
                    other=0.0)
        w = _codebook_tile(packed_ptr, codebook_ptr, rk, rn, N, K, LEVELS, BITS, PER_CHANNEL)
        acc += dot(x, w)
    y_mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(y_ptr + rm[:, None] * N + rn[None, :], acc, mask=y_mask)


def _check_tensor(name: str, value, dtypes: tuple[torch.dtype, ...], what: str) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype not in dtypes:
        got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a {what} torch.Tensor, got {got}")


def codebook_matmul(x: torch.Tensor, packed: torch.Tensor, codebook: torch.Tensor, bits: int,
                    k: int, n: int, *, block_m: int = 16, block_n: int = 16,
                    block_k: int = 16) -> torch.Tensor:
    """y = x @ W as fp32 [m, n], W unpacked tile by tile from `packed` + `codebook` in Triton.

    Runs where the tensors live: CUDA, or CPU under TRITON_INTERPRET=1. Block sizes are powers
    of two >= 16 (tl.dot's minimum); m, n, k need not be multiples of them.

    >>> y = codebook_matmul(x, packed, codebook, bits=3, k=33, n=17)  # doctest: +SKIP
    """
    floats = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    _check_tensor("x", x, floats, "floating-point")
    _check_tensor("packed", packed, (torch.uint8,), "uint8")
    _check_tensor("codebook", codebook, floats, "floating-point")
    levels = _check_format(bits, k, n, tuple(packed.shape), tuple(codebook.shape),
                           tuple(x.shape))
    for name, size in (("block_m", block_m), ("block_n", block_n), ("block_k", block_k)):
        _check_int(name, size, 16)
        if size & (size - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {size}")
    devices = {t.device for t in (x, packed, codebook)}
    if len(devices) != 1:
        raise ValueError(f"x, packed and codebook must be on one device, got "
                         f"{sorted(map(str, devices))}")
    if x.device.type == "cpu" and isinstance(codebook_matmul_kernel, triton.runtime.JITFunction):
        raise RuntimeError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before "
                           "triton is first imported, or move the tensors to a CUDA device")
    m = x.shape[0]
    x = x.to(torch.float32)
    codebook = codebook.to(torch.float32).contiguous()
    y = torch.empty((m, n), dtype=torch.float32, device=x.device)
    if m == 0:
        return y
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    codebook_matmul_kernel[grid](x, packed.contiguous(), codebook, y, m, n, k, levels,
                                 x.stride(0), x.stride(1), BITS=bits,
                                 PER_CHANNEL=codebook.dim() == 2, BLOCK_M=block_m,
                                 BLOCK_N=block_n, BLOCK_K=block_k)
    return y


# ---- CUDA ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaKernel:
    """How to launch the CUDA kernel for one (bits, per_channel): `name(x, packed, codebook, y,
    m, n, k, levels)` on grid(m, n) blocks of `threads` threads with `smem_bytes` of dynamic
    shared memory, or the host function `launcher(..., levels, stream)`."""

    bits: int
    per_channel: bool
    name: str
    launcher: str
    threads: int
    smem_bytes: int
    block_m: int
    block_n: int
    block_k: int

    def grid(self, m: int, n: int) -> tuple[int, int, int]:
        """Blocks to launch for an [m, n] output."""
        return (-(-n // self.block_n), -(-m // self.block_m), 1)


def cuda_kernel(bits: int, per_channel: bool) -> CudaKernel:
    """Launch parameters of the CUDA kernel `cuda_source(bits, per_channel)` defines.

    >>> cuda_kernel(4, False).name
    'mlc_codebook_matmul_b4_shared'
    """
    _check_int("bits", bits, 1, MAX_BITS)
    block_m, block_n, block_k = CUDA_TILE
    books = block_n if per_channel else 1
    smem_floats = books * 2 ** bits + block_m * block_k + block_k * block_n
    suffix = f"b{bits}_{'per_channel' if per_channel else 'shared'}"
    return CudaKernel(bits, bool(per_channel), f"mlc_codebook_matmul_{suffix}",
                      f"mlc_launch_codebook_matmul_{suffix}", CUDA_THREADS, 4 * smem_floats,
                      block_m, block_n, block_k)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)


def cuda_source(bits: int, per_channel: bool) -> str:
    """A self-contained `.cu` source: the device helpers of `codebook_matmul.cuh`, an
    `extern "C"` kernel (see `cuda_kernel`) and, outside NVRTC, its host launcher.

    >>> "codebook_matmul<3, true," in cuda_source(3, per_channel=True)
    True
    """
    kernel = cuda_kernel(bits, per_channel)
    return _environment().get_template("codebook_matmul.cu.j2").render(
        helpers=DEVICE_HEADER.read_text(), bits=bits, per_channel=kernel.per_channel,
        name=kernel.name, launcher=kernel.launcher, threads=kernel.threads,
        smem_bytes=kernel.smem_bytes, block_m=kernel.block_m, block_n=kernel.block_n,
        block_k=kernel.block_k)


@dataclass(frozen=True)
class CompileResult:
    """What `nvcc -c` said about one source: ok, or its error text in `message`; `skipped`
    when nvcc is not on PATH (then nothing was compiled and ok is False)."""

    ok: bool
    message: str
    skipped: bool = False


def compile_check(bits: int, per_channel: bool, arch: str = "sm_90") -> CompileResult:
    """Compile `cuda_source(bits, per_channel)` with `nvcc -c -arch=<arch>` in a temp folder.

    >>> compile_check(3, per_channel=False)  # doctest: +SKIP
    CompileResult(ok=True, message='', skipped=False)
    """
    source = cuda_source(bits, per_channel)
    if shutil.which("nvcc") is None:
        return CompileResult(False, "nvcc is not on PATH; install the CUDA toolkit", True)
    with tempfile.TemporaryDirectory(prefix="mlc_quant_cu_") as workdir:
        try:
            compile_cuda(source, arch=arch, workdir=workdir)
        except CudaCompileError as err:
            return CompileResult(False, str(err))
    return CompileResult(True, "")


# The CPU shim calls kernels through float pointers only: an entry point in that form passes
# the packed bytes through a float* and m, n, k, levels through an int array.
_CPU_ENTRY = """
extern "C" void mlc_quant_cpu_entry(float* x, float* packed, float* codebook, float* y,
                                    float* dims) {{
  const int* d = reinterpret_cast<const int*>(dims);
  {name}(x, reinterpret_cast<const unsigned char*>(packed), codebook, y, d[0], d[1], d[2],
         d[3]);
}}
"""


@functools.lru_cache(maxsize=None)
def _cpu_library(bits: int, per_channel: bool) -> ctypes.CDLL:
    from mlc.kernels.cuda.emulate import build_cpu_library
    source = cuda_source(bits, per_channel) + _CPU_ENTRY.format(
        name=cuda_kernel(bits, per_channel).name)
    return ctypes.CDLL(str(build_cpu_library(source)))


def emulate_cuda(x, packed, codebook, bits: int, k: int, n: int) -> np.ndarray:
    """The CUDA kernel's fp32 y = x @ W, run on the CPU through mlc.kernels.cuda's CPU shim
    (one thread per CUDA thread; slow, keep shapes small). Needs g++ or clang++.

    >>> emulate_cuda(x, packed, codebook, bits=3, k=33, n=17)  # doctest: +SKIP
    """
    x = np.ascontiguousarray(x, np.float32)
    packed = np.ascontiguousarray(packed, np.uint8)
    codebook = np.ascontiguousarray(codebook, np.float32)
    levels = _check_format(bits, k, n, packed.shape, codebook.shape, x.shape)
    kernel = cuda_kernel(bits, codebook.ndim == 2)
    m = x.shape[0]
    y = np.zeros((m, n), np.float32)
    if m == 0:
        return y
    dims = np.array([m, n, k, levels], np.int32)
    library = _cpu_library(bits, kernel.per_channel)
    arrays = (x, packed, codebook, y, dims)
    pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    entry = ctypes.cast(library.mlc_quant_cpu_entry, ctypes.c_void_p)
    launch = library.mlc_cpu_launch
    launch.restype = ctypes.c_int
    status = launch(entry, *map(ctypes.c_uint, kernel.grid(m, n)), ctypes.c_uint(kernel.threads),
                    ctypes.c_int(len(arrays)), pointers)
    if status != 0:
        raise CudaCompileError(f"CPU emulation cannot launch {kernel.name}")
    return y
