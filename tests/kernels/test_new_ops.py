"""The activation, scalar and row-wise norm tile ops (gelu, gelu_tanh, sigmoid, tanh, erf,
add_scalar, softmax, layer_norm) and their library twins (Gelu, Sigmoid, Tanh, Erf, Scale,
Shift) in both renderers: generated Triton (interpreted on CPU) and generated CUDA (compiled
with nvcc, run on the CPU through cpu_shim.cuh) must match the µGraph interpreter in float32.

The widths are not powers of two on purpose: Triton pads register tiles, and ops that do not
map 0 to 0 (sigmoid, add_scalar, softmax) must not leak their padded lanes into a reduction
or into the K dim of a matmul."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from mlc.compiler.superopt.mugraph import (
    BLOCK_OPS,
    LIBRARY_OPS,
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    FloatArith,
    KernelOp,
    MuGraph,
    MuGraphError,
    run_mugraph,
)
from mlc.kernels.cuda import compile_cuda, render_cuda, render_module
from mlc.kernels.cuda.emulate import build_cpu_library, emulate_module
from mlc.kernels.triton import load_triton_module, render_triton
from mlc.kernels.triton.rules import KEEP_ZERO_PADDING

R = -1  # imap/omap/fmap: replicate / unused / no loop
DEVICE = "cuda" if os.environ.get("TRITON_INTERPRET") == "0" and torch.cuda.is_available() \
    else "cpu"
NEW_TILE_OPS = ("gelu", "gelu_tanh", "sigmoid", "tanh", "erf", "add_scalar", "softmax",
                "layer_norm")
NEW_LIBRARY_OPS = ("Gelu", "Sigmoid", "Tanh", "Erf", "Scale", "Shift")

# exp overflow and 0/0 happen in masked-off padding lanes; they never reach memory
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def block_kernel(inputs, outputs, grid, forloop_range, tiles, ops, saves) -> KernelOp:
    """A graph-defined kernel from compact rows: tiles (name, source, imap, fmap), ops (op,
    inputs, output[, attrs]), saves (tile, omap)."""
    block = BlockGraph(
        grid, forloop_range, tuple(BlockInput(*row) for row in tiles),
        tuple(BlockOp(op, tuple(ins), out, *rest) for op, ins, out, *rest in ops),
        tuple(BlockOutput(*row) for row in saves))
    return KernelOp("block", tuple(inputs), tuple(outputs), block=block)


# ---- µGraphs ---------------------------------------------------------------------------------

def activations() -> MuGraph:
    """Every activation on (3, 40) tiles (padded to (16, 64) in Triton), plus row sums of a
    zero-keeping one (gelu) and of two that are not (sigmoid, add_scalar)."""
    kernel = block_kernel(
        ["X"], ["Y1", "Y2", "Y3", "S1", "S2", "S3"], (2, 1, 1), 1,
        [("x", 0, (0, R, R), R)],
        [("accum_sum", ["x"], "a"),  # a one-iteration loop: the ops below run after it
         ("gelu", ["a"], "g"), ("gelu_tanh", ["a"], "gt"), ("sigmoid", ["a"], "s"),
         ("tanh", ["a"], "th"), ("erf", ["a"], "e"), ("add_scalar", ["a"], "sh",
                                                      {"value": 0.75}),
         ("relu", ["sh"], "r"),
         ("add", ["g", "gt"], "y1"), ("mul", ["s", "th"], "y2"), ("add", ["e", "r"], "y3"),
         ("reduce_sum", ["g"], "s1"), ("reduce_sum", ["s"], "s2"), ("reduce_sum", ["sh"], "s3")],
        [("y1", (0, R, R)), ("y2", (0, R, R)), ("y3", (0, R, R)), ("s1", (0, R, R)),
         ("s2", (0, R, R)), ("s3", (0, R, R))])
    return MuGraph("activations", {"X": (6, 40)}, (kernel,), ("Y1", "Y2", "Y3", "S1", "S2",
                                                               "S3"))


def sigmoid_matmul() -> MuGraph:
    """tanh(sigmoid(X) @ W - 0.5): the for-loop walks K in chunks of 20 (padded to 32), where
    sigmoid's padded lanes hold 0.5 and must not reach the product."""
    kernel = block_kernel(
        ["X", "W"], ["Y"], (1, 2, 1), 2,
        [("x", 0, (R, R, R), 1), ("w", 1, (R, 1, R), 0)],
        [("sigmoid", ["x"], "s"), ("matmul", ["s", "w"], "p"), ("accum_sum", ["p"], "acc"),
         ("add_scalar", ["acc"], "c", {"value": -0.5}), ("tanh", ["c"], "y")],
        [("y", (R, 1, R))])
    return MuGraph("sigmoid_matmul", {"X": (5, 40), "W": (40, 24)}, (kernel,), ("Y",))


def norms() -> MuGraph:
    """softmax and layer_norm over rows of 40 (padded to 64), and each followed by a matmul
    over those 40 lanes."""
    kernel = block_kernel(
        ["X", "W"], ["P", "N", "PW", "NW"], (3, 1, 1), 1,
        [("x", 0, (0, R, R), R), ("w", 1, (R, R, R), R)],
        [("softmax", ["x"], "p"), ("layer_norm", ["x"], "n", {"eps": 1e-3}),
         ("matmul", ["p", "w"], "pw"), ("matmul", ["n", "w"], "nw"),
         ("accum_sum", ["p"], "pa"), ("accum_sum", ["n"], "na"), ("accum_sum", ["pw"], "pwa"),
         ("accum_sum", ["nw"], "nwa")],
        [("pa", (0, R, R)), ("na", (0, R, R)), ("pwa", (0, R, R)), ("nwa", (0, R, R))])
    return MuGraph("norms", {"X": (6, 40), "W": (40, 12)}, (kernel,), ("P", "N", "PW", "NW"))


def softmax_attention() -> MuGraph:
    """softmax(Q K * 0.25) V with the whole key range in one tile: rank-3 tiles (the batch
    stays inside the block), 20 keys padded to 32."""
    kernel = block_kernel(
        ["Q", "K", "V"], ["Y"], (1, 1, 1), 1,
        [("q", 0, (R, R, R), R), ("k", 1, (R, R, R), R), ("v", 2, (R, R, R), R)],
        [("matmul", ["q", "k"], "s"), ("accum_sum", ["s"], "sa"), ("accum_sum", ["v"], "va"),
         ("mul_scalar", ["sa"], "ss", {"scale": 0.25}), ("softmax", ["ss"], "p"),
         ("matmul", ["p", "va"], "y")],
        [("y", (R, R, R))])
    shapes = {"Q": (2, 8, 12), "K": (2, 12, 20), "V": (2, 20, 12)}
    return MuGraph("softmax_attention", shapes, (kernel,), ("Y",))


def library_chain() -> MuGraph:
    """The new library ops, one kernel each: Gelu (both forms), Scale, Shift, Sigmoid, Tanh,
    Erf."""
    ops = (KernelOp("Gelu", ("X",), ("A",)),
           KernelOp("Scale", ("A",), ("B",), {"scale": 0.5}),
           KernelOp("Shift", ("B",), ("C",), {"value": -0.25}),
           KernelOp("Sigmoid", ("C",), ("D",)), KernelOp("Tanh", ("X",), ("E",)),
           KernelOp("Erf", ("E",), ("F",)), KernelOp("Add", ("D", "F"), ("Y",)),
           KernelOp("Gelu", ("X",), ("Z",), {"approximate": "tanh"}))
    return MuGraph("library_chain", {"X": (5, 7)}, ops, ("Y", "Z"))


GRAPHS = {build.__name__: build for build in (activations, sigmoid_matmul, norms,
                                              softmax_attention, library_chain)}


def random_inputs(graph: MuGraph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (2.0 * rng.standard_normal(shape)).astype(np.float32)
            for name, shape in graph.inputs.items()}


def assert_matches_interpreter(graph: MuGraph, got: dict[str, np.ndarray], inputs) -> None:
    """Every output within 1e-5 relative (to the output's largest magnitude) of the float32
    interpreter, the reference semantics of every tile op."""
    want = run_mugraph(graph, inputs, FloatArith(np.float32))
    for name in graph.outputs:
        assert got[name].shape == want[name].shape, name
        scale = max(float(np.abs(want[name]).max()), 1e-30)
        error = float(np.abs(got[name].astype(np.float64) - want[name]).max()) / scale
        assert error < 1e-5, f"{graph.name} output {name}: relative error {error:.2e}"


# ---- tables ------------------------------------------------------------------------------------

def test_the_new_ops_are_in_the_op_tables():
    """Guards the premise of this file: the lead's tables define every op tested here."""
    assert set(NEW_TILE_OPS) <= set(BLOCK_OPS)
    assert set(NEW_LIBRARY_OPS) <= set(LIBRARY_OPS)


def test_zero_padding_claims_hold():
    """An op may claim to keep zero padding only if it maps 0 to 0 (sigmoid and add_scalar
    do not; layer_norm does only for eps > 0, so none of them may claim it)."""
    for op in set(KEEP_ZERO_PADDING) & set(NEW_TILE_OPS):
        graph = MuGraph("zero", {"X": (2, 3)}, (block_kernel(
            ["X"], ["Y"], (1, 1, 1), 1, [("x", 0, (R, R, R), R)],
            [("accum_sum", ["x"], "a"), (op, ["a"], "y")], [("y", (R, R, R))]),), ("Y",))
        zeros = np.zeros((2, 3), np.float32)
        assert not run_mugraph(graph, {"X": zeros}, FloatArith())["Y"].any(), op
    assert not {"sigmoid", "add_scalar", "softmax", "layer_norm"} & set(KEEP_ZERO_PADDING)


# ---- Triton --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_triton_matches_interpreter(name):
    graph = GRAPHS[name]()
    inputs = random_inputs(graph)
    module = load_triton_module(render_triton(graph))
    outputs = module.run(*(torch.from_numpy(inputs[n]).to(DEVICE) for n in graph.inputs))
    got = {n: t.cpu().numpy() for n, t in zip(graph.outputs, outputs)}
    assert_matches_interpreter(graph, got, inputs)


def test_triton_refuses_a_non_finite_scalar():
    graph = MuGraph("inf", {"X": (4, 16)}, (block_kernel(
        ["X"], ["Y"], (1, 1, 1), 1, [("x", 0, (R, R, R), R)],
        [("accum_sum", ["x"], "a"), ("add_scalar", ["a"], "y", {"value": float("inf")})],
        [("y", (R, R, R))]),), ("Y",))
    with pytest.raises(MuGraphError, match="not finite"):
        render_triton(graph)
    library = MuGraph("inf", {"X": (4, 16)}, (KernelOp("Scale", ("X",), ("Y",),
                                                        {"scale": float("nan")}),), ("Y",))
    with pytest.raises(MuGraphError, match="not finite"):
        render_triton(library)


# ---- CUDA ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cuda_library(tmp_path_factory):
    """Every graph's kernels in one host-compiled library (CPU emulation of the CUDA)."""
    if shutil.which("g++") is None and shutil.which("clang++") is None:
        pytest.skip("no host C++ compiler for CPU emulation")
    modules = {name: render_module(build(), prefix=f"n{index}")
               for index, (name, build) in enumerate(sorted(GRAPHS.items()))}
    source = "\n".join(module.source for module in modules.values())
    return modules, build_cpu_library(source, tmp_path_factory.mktemp("new_ops_cpu"))


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_cuda_emulation_matches_interpreter(cuda_library, name):
    modules, library = cuda_library
    graph = GRAPHS[name]()
    inputs = random_inputs(graph)
    assert_matches_interpreter(graph, emulate_module(modules[name], graph, inputs, library),
                               inputs)


def test_cuda_source_compiles_with_nvcc(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH")
    source = "\n".join(render_cuda(build(), prefix=f"n{index}")
                       for index, build in enumerate(GRAPHS.values()))
    assert compile_cuda(source, arch="sm_90", workdir=tmp_path).is_file()


def test_cuda_refuses_a_non_finite_scalar():
    graph = MuGraph("inf", {"X": (4, 16)}, (KernelOp("Shift", ("X",), ("Y",),
                                                      {"value": float("-inf")}),), ("Y",))
    with pytest.raises(MuGraphError, match="not finite"):
        render_cuda(graph)


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_cuda_runs_on_gpu_through_cupy(name):
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as err:  # ImportError, CUDARuntimeError, a missing driver...
        pytest.skip(f"no usable CuPy/CUDA device: {err}")
    from mlc.compiler.superopt.mugraph import kernel_shapes
    from mlc.kernels.cuda import HELPERS_DIR
    graph = GRAPHS[name]()
    inputs = random_inputs(graph)
    module = render_module(graph)
    raw = cupy.RawModule(code=module.source, options=("-std=c++17", f"-I{HELPERS_DIR}"))
    shapes = kernel_shapes(graph)
    buffers = {t: cupy.zeros(shapes[t], dtype=cupy.float32) for t in module.graph_tensors}
    for t in graph.inputs:
        buffers[t] = cupy.asarray(inputs[t])
    for spec in module.kernels:
        kernel = raw.get_function(spec.name)
        kernel(spec.grid, (spec.threads, 1, 1),
               tuple(buffers[t] for t in spec.inputs + spec.outputs), shared_mem=spec.smem_bytes)
    got = {t: cupy.asnumpy(buffers[t]) for t in graph.outputs}
    assert_matches_interpreter(graph, got, inputs)
