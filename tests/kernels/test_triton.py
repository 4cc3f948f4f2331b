"""Triton renderer: every generated module runs (under TRITON_INTERPRET=1 on CPU, see conftest)
and matches the µGraph interpreter in float64; two rendered modules are golden files."""

from __future__ import annotations

import os
from pathlib import Path

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
from mlc.kernels.triton import load_triton_module, render_triton
from mlc.kernels.triton.render import wrap
from mlc.kernels.triton.rules import ACCUMULATORS, LIBRARY_EXPRS, TILE_OPS

GOLDEN = Path(__file__).parent / "golden"
DEVICE = "cuda" if os.environ.get("TRITON_INTERPRET") == "0" and torch.cuda.is_available() \
    else "cpu"
R = -1  # imap/omap/fmap: replicate / unused / no loop

# 0/0 and exp overflow happen in masked-off padding lanes; they never reach memory
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ---- µGraphs -----------------------------------------------------------------------------------

def block_kernel(inputs, outputs, grid, forloop_range, tiles, ops, saves, **extra) -> KernelOp:
    """A graph-defined kernel from compact rows: tiles (name, source, imap, fmap), ops (op,
    inputs, output[, attrs]), saves (tile, omap)."""
    block = BlockGraph(
        grid, forloop_range, tuple(BlockInput(*row) for row in tiles),
        tuple(BlockOp(op, tuple(ins), out, *rest) for op, ins, out, *rest in ops),
        tuple(BlockOutput(*row) for row in saves), **extra)
    return KernelOp("block", tuple(inputs), tuple(outputs), block=block)


def rms_matmul() -> MuGraph:
    """Y = rms_norm(X) @ W fused: the norm is an accumulator, divided out after the loop."""
    kernel = block_kernel(
        ["X", "W"], ["Y"], (4, 1, 1), 4,
        [("x", 0, (R, R, R), 1), ("w", 1, (1, R, R), 0)],
        [("accum_rms_ld", ["x"], "r"), ("matmul", ["x", "w"], "xw"),
         ("accum_sum", ["xw"], "acc"), ("div", ["acc", "r"], "y")],
        [("y", (1, R, R))])
    return MuGraph("rms_matmul", {"X": (4, 64), "W": (64, 96)}, (kernel,), ("Y",))


def gated_mlp() -> MuGraph:
    kernel = block_kernel(
        ["X", "W1", "W2"], ["Y"], (2, 1, 1), 4,
        [("x", 0, (R, R, R), 1), ("w1", 1, (1, R, R), 0), ("w2", 2, (1, R, R), 0)],
        [("matmul", ["x", "w1"], "a"), ("matmul", ["x", "w2"], "b"),
         ("accum_sum", ["a"], "sa"), ("accum_sum", ["b"], "sb"),
         ("silu", ["sa"], "g"), ("mul", ["g", "sb"], "y")],
        [("y", (1, R, R))])
    shapes = {"X": (4, 64), "W1": (64, 64), "W2": (64, 64)}
    return MuGraph("gated_mlp", shapes, (kernel,), ("Y",))


def lora() -> MuGraph:
    """Y = X W + (X A) B: kernel 1 computes X A, kernel 2 both products in one loop."""
    down = block_kernel(
        ["X", "A"], ["XA"], (1, 1, 1), 4,
        [("x", 0, (R, R, R), 1), ("a", 1, (R, R, R), 0)],
        [("matmul", ["x", "a"], "xa"), ("accum_sum", ["xa"], "s")],
        [("s", (R, R, R))])
    fused = block_kernel(
        ["X", "W", "XA", "B"], ["Y"], (4, 1, 1), 4,
        [("x", 0, (R, R, R), 1), ("w", 1, (1, R, R), 0), ("xa", 2, (R, R, R), 1),
         ("b", 3, (1, R, R), 0)],
        [("matmul", ["x", "w"], "p"), ("matmul", ["xa", "b"], "q"), ("add", ["p", "q"], "s"),
         ("accum_sum", ["s"], "y")],
        [("y", (1, R, R))])
    shapes = {"X": (8, 64), "W": (64, 64), "A": (64, 16), "B": (16, 64)}
    return MuGraph("lora", shapes, (down, fused), ("Y",))


ONLINE_SOFTMAX = [
    ("matmul", ["q", "k"], "s"), ("mul_scalar", ["s"], "ss", {"scale": 0.25}),
    ("accum_max_ld", ["ss"], "m"), ("sub", ["ss", "m"], "d"), ("exp", ["d"], "e"),
    ("accum_sum_ld_rescale", ["e", "m"], "l"), ("matmul", ["e", "v"], "ev"),
    ("accum_sum_rescale", ["ev", "m"], "o")]


def attention(grid_x: int = 2) -> MuGraph:
    """softmax(Q K / 4) V with an online softmax over 4 chunks of keys; grid over the batch
    (grid_x=1 keeps the batch inside the tile: rank-3 registers, batched dots)."""
    kernel = block_kernel(
        ["Q", "K", "V"], ["Y"], (grid_x, 1, 1), 4,
        [("q", 0, (0, R, R), R), ("k", 1, (0, R, R), 2), ("v", 2, (0, R, R), 1)],
        ONLINE_SOFTMAX + [("div", ["o", "l"], "y")],
        [("y", (0, R, R))])
    shapes = {"Q": (2, 16, 16), "K": (2, 16, 64), "V": (2, 64, 16)}
    return MuGraph("attention", shapes, (kernel,), ("Y",))


def split_kv_attention() -> MuGraph:
    """Flash-decoding: kernel 1 keeps per-split (max, sum, output) partials, grid y over two
    key splits; library ops merge them. Rank-4 tensors, tiles (1, 1, rows, cols)."""
    partial = block_kernel(
        ["Q", "K", "V"], ["O", "M", "L"], (2, 2, 1), 2,
        [("q", 0, (0, R, R), R), ("k", 1, (0, 3, R), 3), ("v", 2, (0, 2, R), 2)],
        ONLINE_SOFTMAX,
        [("o", (0, 1, R)), ("m", (0, 1, R)), ("l", (0, 1, R))])
    merge = [
        KernelOp("ReduceMax", ("M",), ("Mx",), {"dim": 1}),
        KernelOp("Sub", ("M", "Mx"), ("Md",)), KernelOp("Exp", ("Md",), ("Wt",)),
        KernelOp("Mul", ("L", "Wt"), ("Lw",)), KernelOp("ReduceSum", ("Lw",), ("Ls",), {"dim": 1}),
        KernelOp("Mul", ("O", "Wt"), ("Ow",)), KernelOp("ReduceSum", ("Ow",), ("Os",), {"dim": 1}),
        KernelOp("Div", ("Os", "Ls"), ("Y",))]
    shapes = {"Q": (2, 1, 16, 16), "K": (2, 1, 16, 64), "V": (2, 1, 64, 16)}
    return MuGraph("split_kv_attention", shapes, (partial, *merge), ("Y",))


def todimx_then_library() -> MuGraph:
    """Row sums of exp(X) folded to 16 partial lanes by accum_sum_todimx, finished by torch."""
    kernel = block_kernel(
        ["X"], ["P"], (2, 1, 1), 2,
        [("x", 0, (0, R, R), 1)],
        [("exp", ["x"], "e"), ("accum_sum_todimx", ["e"], "p")],
        [("p", (0, R, R))], reduction_dimx=16)
    finish = [KernelOp("ReduceSum", ("P",), ("S",), {"dim": -1}), KernelOp("Div", ("P", "S"),
                                                                           ("Y",))]
    return MuGraph("todimx", {"X": (4, 128)}, (kernel, *finish), ("Y", "S"))


def misc_ops(forloop_range: int = 3) -> MuGraph:
    """The remaining tile ops on a padded tile (2, 72 / forloop_range): norms, reductions over
    either axis, a running max used inside the loop and (scaled) after it."""
    kernel = block_kernel(
        ["X"], ["R", "XM", "DX"], (2, 1, 1), forloop_range,
        [("x", 0, (0, R, R), 1)],
        [("rms_norm", ["x"], "n"), ("square", ["n"], "sq"), ("neg", ["sq"], "ng"),
         ("exp", ["ng"], "e"), ("reduce_max", ["e"], "mx", {"dim": -1}),
         ("reduce_sum", ["e"], "sm", {"dim": 0}), ("add", ["mx", "sm"], "p"),
         ("accum_sum", ["p"], "ac"), ("sqrt", ["ac"], "r"),
         ("accum_max_ld", ["x"], "xm"), ("mul_scalar", ["xm"], "xm2", {"scale": 2.0}),
         ("sub", ["x", "xm"], "dx"), ("accum_sum_ld", ["dx"], "sdx")],
        [("r", (0, R, R)), ("xm2", (0, R, R)), ("sdx", (0, R, R))])
    return MuGraph("misc", {"X": (4, 72)}, (kernel,), ("R", "XM", "DX"))


def gemv() -> MuGraph:
    """A one-row matmul: tl.dot needs every dim >= 16, so it becomes a broadcast-sum."""
    kernel = block_kernel(
        ["X", "W"], ["Y"], (2, 1, 1), 4,
        [("x", 0, (R, R, R), 1), ("w", 1, (1, R, R), 0)],
        [("matmul", ["x", "w"], "xw"), ("accum_sum", ["xw"], "y")],
        [("y", (1, R, R))])
    return MuGraph("gemv", {"X": (1, 64), "W": (64, 40)}, (kernel,), ("Y",))


def vector() -> MuGraph:
    """Rank-1 tensors: 1-d register tiles."""
    kernel = block_kernel(
        ["X"], ["Y"], (4, 1, 1), 2,
        [("x", 0, (0, R, R), R)],
        [("exp", ["x"], "e"), ("accum_sum", ["e"], "a"),
         ("mul_scalar", ["a"], "y", {"scale": 0.5})],
        [("y", (0, R, R))])
    return MuGraph("vector", {"X": (48,)}, (kernel,), ("Y",))


def library_only() -> MuGraph:
    ops = [
        KernelOp("MatMul", ("X", "W"), ("H",)), KernelOp("Add", ("H", "B"), ("H2",)),
        KernelOp("Silu", ("H2",), ("S",)), KernelOp("Exp", ("S",), ("E",)),
        KernelOp("Sqrt", ("E",), ("Q",)), KernelOp("Neg", ("Q",), ("N",)),
        KernelOp("Sub", ("N", "H"), ("D",)), KernelOp("Mul", ("D", "S"), ("P",)),
        KernelOp("Div", ("P", "E"), ("F",)),
        KernelOp("ReduceSum", ("F",), ("RS",), {"dim": 0}),
        KernelOp("ReduceMean", ("F",), ("RM",), {"dim": -1}),
        KernelOp("ReduceMax", ("F",), ("RX",), {"dim": 1})]
    shapes = {"X": (4, 8), "W": (8, 6), "B": (1, 6)}
    return MuGraph("library", shapes, tuple(ops), ("RS", "RM", "RX", "F"))


GRAPHS = {
    "rms_matmul": rms_matmul, "gated_mlp": gated_mlp, "lora": lora, "attention": attention,
    "attention_3d_tiles": lambda: attention(grid_x=1), "split_kv_attention": split_kv_attention,
    "todimx_then_library": todimx_then_library, "misc_ops": misc_ops,
    "misc_ops_one_iteration": lambda: misc_ops(forloop_range=1), "gemv": gemv,
    "vector": vector, "library_only": library_only,
}


# ---- checks -------------------------------------------------------------------------------------

def random_inputs(graph: MuGraph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)
            for name, shape in graph.inputs.items()}


def check_against_interpreter(graph: MuGraph, tolerance: float = 1e-4) -> None:
    inputs = random_inputs(graph)
    expected = run_mugraph(graph, {k: v.astype(np.float64) for k, v in inputs.items()},
                           FloatArith(np.float64))
    module = load_triton_module(render_triton(graph))
    outputs = module.run(*(torch.from_numpy(inputs[name]).to(DEVICE) for name in graph.inputs))
    assert len(outputs) == len(graph.outputs)
    for name, got in zip(graph.outputs, outputs):
        want = expected[name]
        got = got.cpu().double().numpy()
        assert got.shape == want.shape, name
        error = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
        assert error < tolerance, f"{graph.name} output {name}: relative error {error:.2e}"


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_generated_module_matches_interpreter(name):
    check_against_interpreter(GRAPHS[name]())


def _small_fixtures() -> list[str]:
    try:
        from mlc.compiler.superopt.mugraph.fixtures import list_fixtures
    except ImportError:
        return []
    return [name for name in list_fixtures() if name.endswith("_small")]


@pytest.mark.parametrize("fixture", _small_fixtures() or [
    pytest.param(None, marks=pytest.mark.skip(reason="no shipped µGraph fixtures"))])
def test_shipped_small_fixtures_match_interpreter(fixture):
    from mlc.compiler.superopt.mugraph.fixtures import load_fixture
    check_against_interpreter(load_fixture(fixture))


@pytest.mark.parametrize("name", ["rms_matmul", "attention"])
def test_golden_source(name):
    source = render_triton(GRAPHS[name]())
    path = GOLDEN / f"{name}.py"
    if os.environ.get("MLC_UPDATE_GOLDEN") == "1":
        path.write_text(source)
    assert path.exists(), f"missing {path}: run with MLC_UPDATE_GOLDEN=1 to create it"
    assert source == path.read_text(), \
        f"rendered source changed; review, then regenerate with MLC_UPDATE_GOLDEN=1 ({path})"


def test_rendering_is_deterministic():
    assert render_triton(attention()) == render_triton(attention())


def test_every_op_has_an_emission_rule():
    assert set(BLOCK_OPS) == set(TILE_OPS) | set(ACCUMULATORS)
    assert not set(TILE_OPS) & set(ACCUMULATORS)
    assert set(LIBRARY_OPS) == set(LIBRARY_EXPRS)


def test_model_names_never_reach_the_source():
    hostile = "__import__('os').system('x')"
    graph = rms_matmul()
    kernel = graph.ops[0]
    renamed = MuGraph(hostile + "g", {hostile: (4, 64), "W; rm": (64, 96)},
                      (KernelOp("block", (hostile, "W; rm"), ("Y\n",), block=kernel.block,
                                name=hostile),), ("Y\n",))
    source = render_triton(renamed)
    assert "__import__" not in source and "W; rm" not in source
    assert source == render_triton(graph)  # names only, so the same module


def test_unsupported_tile_rank_is_a_clear_error():
    kernel = block_kernel(
        ["X"], ["Y"], (1, 1, 1), 1, [("x", 0, (R, R, R), R)],
        [("accum_sum", ["x"], "y")], [("y", (R, R, R))])
    graph = MuGraph("rank4", {"X": (2, 2, 2, 16)}, (kernel,), ("Y",))
    with pytest.raises(MuGraphError, match="rank 1 to 3"):
        render_triton(graph)


def test_rescale_needs_a_running_max():
    kernel = block_kernel(
        ["X"], ["Y"], (1, 1, 1), 2, [("x", 0, (R, R, R), 1)],
        [("accum_sum_rescale", ["x", "x"], "y")], [("y", (R, R, R))])
    graph = MuGraph("bad_rescale", {"X": (16, 32)}, (kernel,), ("Y",))
    with pytest.raises(MuGraphError, match="running max"):
        render_triton(graph)


def test_load_triton_module_caches_by_content(tmp_path):
    source = render_triton(library_only())
    first = load_triton_module(source, tmp_path)
    assert load_triton_module(source, tmp_path) is first
    assert hasattr(first, "run")


def test_wrap_breaks_long_calls_at_top_level_commas():
    line = "t1 = f(" + ", ".join(f"g(a{i}, b{i})" for i in range(12)) + ")"
    wrapped = wrap(line, 60)
    assert all(len(part) <= 60 for part in wrapped.splitlines())
    assert wrapped.replace("\n", " ").split() == line.split()


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["ntrans", "lora"])
def test_full_size_fixtures_match_interpreter(fixture):
    pytest.importorskip("mlc.compiler.superopt.mugraph.fixtures")
    from mlc.compiler.superopt.mugraph.fixtures import load_fixture
    check_against_interpreter(load_fixture(fixture))
