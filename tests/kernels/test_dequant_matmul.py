"""Codebook dequant + matmul: the Triton kernel (run by Triton's interpreter on CPU, see
conftest) and its CUDA twin (CPU emulation, nvcc compile check) match float64 numpy x @ W for
every index width and both codebook kinds; bad arguments fail with messages that say what."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mlc.kernels.quant import dequant_matmul as dq
from mlc.kernels.quant.dequant_matmul import (
    codebook_matmul,
    compile_check,
    cuda_kernel,
    cuda_source,
    emulate_cuda,
    reference_codebook_matmul,
    reference_dequantize,
    unpack_indices,
)

NO_NVCC = "nvcc is not on PATH: CUDA compile checks need the CUDA toolkit"
NO_HOST_CXX = "no g++/clang++ on PATH: CPU emulation of the CUDA kernel needs one"
RTOL, ATOL = 1e-4, 1e-5


# ---- the format, written straight from its definition ----------------------------------------

def pack(indices: np.ndarray, bits: int) -> np.ndarray:
    """Field i (row-major) at bits [i * bits, (i + 1) * bits) of one little-endian integer."""
    stream = 0
    for i, index in enumerate(np.asarray(indices).ravel()):
        stream |= int(index) << (i * bits)
    size = (indices.size * bits + 7) // 8
    return np.frombuffer(stream.to_bytes(size, "little"), np.uint8).copy()


def make_case(m, k, n, bits, per_channel, seed=0, levels=None):
    """(x, packed, codebook, want): random data and x @ W in float64, W looked up directly."""
    rng = np.random.default_rng(seed)
    levels = levels or 2 ** bits
    indices = rng.integers(0, levels, (k, n))
    x = rng.standard_normal((m, k)).astype(np.float32)
    if per_channel:
        codebook = rng.standard_normal((n, levels)).astype(np.float32)
        weight = codebook[np.arange(n)[None, :], indices]
    else:
        codebook = rng.standard_normal(levels).astype(np.float32)
        weight = codebook[indices]
    want = x.astype(np.float64) @ weight.astype(np.float64)
    return x, pack(indices, bits), codebook, want


def run_triton(x, packed, codebook, bits, k, n, **blocks) -> np.ndarray:
    y = codebook_matmul(torch.from_numpy(x), torch.from_numpy(packed),
                        torch.from_numpy(codebook), bits, k, n, **blocks)
    return y.numpy()


def test_pack_pins_the_bit_order():
    # 5 | 3 << 3 | 7 << 6 | 1 << 9 = 0x3dd; the 7 straddles bytes 0 and 1
    packed = pack(np.array([5, 3, 7, 1]), 3)
    assert packed.tolist() == [0xDD, 0x03]
    assert unpack_indices(packed, 3, 4).tolist() == [5, 3, 7, 1]


@pytest.mark.parametrize("bits", range(1, 9))
def test_unpack_inverts_pack(bits):
    indices = np.random.default_rng(bits).integers(0, 2 ** bits, 37)
    assert unpack_indices(pack(indices, bits), bits, 37).tolist() == indices.tolist()


@pytest.mark.parametrize("per_channel", [False, True])
def test_reference_matches_direct_lookup(per_channel):
    x, packed, codebook, want = make_case(3, 9, 7, 3, per_channel)
    got = reference_codebook_matmul(x, packed, codebook, 3, 9, 7)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert reference_dequantize(packed, codebook, 3, 9, 7).shape == (9, 7)


# ---- Triton ----------------------------------------------------------------------------------

@pytest.mark.parametrize("m,k,n", [(5, 33, 17), (16, 64, 32)])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_triton_matches_numpy(bits, per_channel, m, k, n):
    x, packed, codebook, want = make_case(m, k, n, bits, per_channel, seed=bits)
    got = run_triton(x, packed, codebook, bits, k, n)
    assert got.shape == (m, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bits,per_channel", [(1, True), (5, False), (6, True), (7, False)])
def test_triton_other_widths_blocks_layouts_short_codebooks(bits, per_channel):
    # codebook shorter than 2**bits, 32-wide blocks, a transposed (strided) float64 x
    levels = max(2, 2 ** bits - 3)
    x, packed, codebook, want = make_case(19, 40, 45, bits, per_channel, bits, levels)
    x_strided = torch.from_numpy(np.ascontiguousarray(x.T, np.float64)).T
    y = codebook_matmul(x_strided, torch.from_numpy(packed), torch.from_numpy(codebook), bits,
                        40, 45, block_m=32, block_n=16, block_k=32)
    np.testing.assert_allclose(y.numpy(), want, rtol=RTOL, atol=ATOL)


def test_triton_no_rows():
    x, packed, codebook, _ = make_case(0, 8, 4, 4, False)
    assert run_triton(x, packed, codebook, 4, 8, 4).shape == (0, 4)


def _args(**change):
    """Valid arguments for a [5, 33] @ [33, 17] product at 3 bits, with some replaced."""
    x, packed, codebook, _ = make_case(5, 33, 17, 3, False)
    args = dict(x=torch.from_numpy(x), packed=torch.from_numpy(packed),
                codebook=torch.from_numpy(codebook), bits=3, k=33, n=17)
    return {**args, **change}


BAD_ARGUMENTS = [
    # bits and sizes
    (dict(bits=0), "bits must be an integer in 1..8"),
    (dict(bits=9), "bits must be an integer in 1..8"),
    (dict(bits=True), "bits must be an integer in 1..8"),
    (dict(k=0), "k must be an integer >= 1"),
    # the bitstream
    (dict(packed=torch.zeros(210, dtype=torch.uint8)), r"211 bytes .* got shape \[210\]"),
    (dict(packed=torch.zeros(211, dtype=torch.int32)), "packed must be a uint8"),
    (dict(packed=torch.zeros(1, 211, dtype=torch.uint8)), "packed must be 1-D"),
    (dict(bits=4), "packed must be 1-D with 281 bytes"),
    # codebooks
    (dict(codebook=torch.zeros(9)), r"2\*\*bits = 8, got \(9,\)"),
    (dict(codebook=torch.zeros(0)), r"codebook must have shape \(L,\) or \(n, L\)"),
    (dict(codebook=torch.zeros(16, 8)), r"\(n, L\) = \(17, L\)"),
    (dict(codebook=torch.zeros(2, 17, 8)), "codebook must have shape"),
    (dict(codebook=torch.zeros(8, dtype=torch.int64)), "codebook must be a floating-point"),
    # x and launch settings
    (dict(x=torch.zeros(5, 32)), r"x must be 2-D \[m, k\] with k = 33"),
    (dict(x=torch.zeros(33)), "x must be 2-D"),
    (dict(x=np.zeros((5, 33), np.float32)), "x must be a floating-point torch.Tensor"),
    (dict(block_m=8), "block_m must be an integer >= 16"),
    (dict(block_k=24), "block_k must be a power of two"),
    (dict(codebook=torch.zeros(8, device="meta")), "must be on one device"),
]


@pytest.mark.parametrize("change,message", BAD_ARGUMENTS,
                         ids=[f"{','.join(c)}-{i}" for i, (c, _) in enumerate(BAD_ARGUMENTS)])
def test_bad_arguments_raise_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        codebook_matmul(**_args(**change))


def _compiled_kernel():
    pass


def test_cpu_tensors_without_interpreter_say_what_to_set(monkeypatch):
    import triton
    monkeypatch.setattr(dq, "codebook_matmul_kernel", triton.runtime.JITFunction(_compiled_kernel))
    with pytest.raises(RuntimeError, match="set TRITON_INTERPRET=1 before triton"):
        codebook_matmul(**_args())


def test_reference_and_emulation_validate_too():
    x, packed, codebook, _ = make_case(2, 8, 4, 4, True)
    with pytest.raises(ValueError, match="packed must be 1-D with 16 bytes"):
        reference_codebook_matmul(x, packed[:-1], codebook, 4, 8, 4)
    with pytest.raises(ValueError, match=r"\(n, L\) = \(4, L\)"):
        emulate_cuda(x, packed, codebook[:3], 4, 8, 4)
    with pytest.raises(ValueError, match="bits must be"):
        cuda_source(0, False)


# ---- CUDA ------------------------------------------------------------------------------------

def test_cuda_source_is_self_contained():
    source = cuda_source(5, per_channel=True)
    kernel = cuda_kernel(5, per_channel=True)
    assert f'extern "C" __global__ void __launch_bounds__(256) {kernel.name}(' in source
    assert f'extern "C" cudaError_t {kernel.launcher}(' in source
    assert "mlc_quant::codebook_matmul<5, true, 32, 32, 32, 256>" in source
    assert "#include" not in source and "{{" not in source
    assert source.index("#ifndef __CUDACC_RTC__") < source.index(kernel.launcher + "(")
    # 32 codebooks of 32 levels, a 32x32 x tile and a 32x32 W tile, in floats
    assert kernel.smem_bytes == 4 * (32 * 32 + 32 * 32 + 32 * 32) <= 48 * 1024
    assert cuda_kernel(8, True).smem_bytes <= 48 * 1024  # no opt-in needed at any width
    assert kernel.grid(5, 33) == (2, 1, 1)


@pytest.mark.parametrize("bits,per_channel,shape", [
    (2, False, (5, 33, 17)), (3, True, (5, 33, 17)), (4, True, (40, 70, 50)),
    (8, False, (16, 64, 32))])
def test_cuda_emulation_matches_numpy(bits, per_channel, shape):
    if shutil.which("g++") is None and shutil.which("clang++") is None:
        pytest.skip(NO_HOST_CXX)
    m, k, n = shape
    x, packed, codebook, want = make_case(m, k, n, bits, per_channel, seed=bits)
    np.testing.assert_allclose(emulate_cuda(x, packed, codebook, bits, k, n), want, rtol=RTOL,
                               atol=ATOL)


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_nvcc_compiles_for_sm90(bits, per_channel):
    if shutil.which("nvcc") is None:
        pytest.skip(NO_NVCC)
    result = compile_check(bits, per_channel)
    assert result.ok and not result.skipped, result.message


def test_compile_check_returns_nvcc_errors(monkeypatch):
    if shutil.which("nvcc") is None:
        pytest.skip(NO_NVCC)
    monkeypatch.setattr(dq, "cuda_source", lambda bits, per_channel: "int broken(;\n")
    result = compile_check(3, False)
    assert not result.ok and not result.skipped
    assert "nvcc failed" in result.message and "error" in result.message


def test_compile_check_without_nvcc_is_skipped(monkeypatch):
    monkeypatch.setattr(dq.shutil, "which", lambda name: None)
    result = compile_check(3, False)
    assert result.skipped and not result.ok and "nvcc is not on PATH" in result.message


# ---- on a GPU --------------------------------------------------------------------------------

# The Triton kernel compiled for the GPU: a fresh interpreter, since this process may have
# defined the kernel for Triton's interpreter (TRITON_INTERPRET=1 is read at definition).
GPU_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from mlc.kernels.quant.dequant_matmul import codebook_matmul
    data = np.load(sys.argv[1])
    x, packed, codebook = (torch.from_numpy(data[name]).cuda()
                           for name in ("x", "packed", "codebook"))
    bits, k, n = (int(data[name]) for name in ("bits", "k", "n"))
    y = codebook_matmul(x, packed, codebook, bits, k, n, block_m=32, block_n=32, block_k=32)
    np.save(sys.argv[2], y.cpu().numpy())
""")


@pytest.mark.gpu
@pytest.mark.parametrize("bits,per_channel", [(3, True), (4, False), (8, True)])
def test_triton_on_gpu(bits, per_channel, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    m, k, n = 70, 300, 130
    x, packed, codebook, want = make_case(m, k, n, bits, per_channel, seed=bits)
    np.savez(tmp_path / "in.npz", x=x, packed=packed, codebook=codebook, bits=bits, k=k,
             n=n)
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    subprocess.run([sys.executable, "-c", GPU_SCRIPT, str(tmp_path / "in.npz"),
                    str(tmp_path / "y.npy")], env=env, check=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=RTOL, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("bits,per_channel", [(3, True), (8, False)])
def test_cuda_on_gpu_through_cupy(bits, per_channel):
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as err:  # ImportError, CUDARuntimeError, a missing driver...
        pytest.skip(f"no usable CuPy/CUDA device: {err}")
    m, k, n = 70, 300, 130
    x, packed, codebook, want = make_case(m, k, n, bits, per_channel, seed=bits)
    spec = cuda_kernel(bits, per_channel)
    kernel = cupy.RawModule(code=cuda_source(bits, per_channel)).get_function(spec.name)
    y = cupy.zeros((m, n), cupy.float32)
    levels = np.int32(codebook.shape[-1])
    kernel(spec.grid(m, n), (spec.threads, 1, 1),
           (cupy.asarray(x), cupy.asarray(packed), cupy.asarray(codebook), y, np.int32(m),
            np.int32(n), np.int32(k), levels), shared_mem=spec.smem_bytes)
    np.testing.assert_allclose(cupy.asnumpy(y), want, rtol=RTOL, atol=1e-4)
