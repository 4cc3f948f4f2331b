"""CPU renderer: every generated kernel compiles with the system C++ compiler, runs through
ctypes and computes what the float32 µGraph interpreter computes (shipped fixtures, builders
covering every tile and library op, µGraphs the search finds); names from the model never
reach the source; the binary cache is keyed by content."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import test_new_ops
import test_triton

from mlc.compiler.errors import MlcError
from mlc.compiler.superopt.mugraph import (
    BLOCK_OPS,
    LIBRARY_OPS,
    FloatArith,
    KernelOp,
    MuGraph,
    MuGraphError,
    run_mugraph,
)
from mlc.compiler.superopt.mugraph.fixtures import list_fixtures, load_fixture
from mlc.kernels.cpu import BLOCK_EMIT, LIBRARY_EMIT, compile_mugraph, render_c
from mlc.kernels.cpu import compile as cpu_compile

R = -1  # imap/omap/fmap: replicate / unused / no loop
HAS_CXX = any(shutil.which(name) for name in ("g++", "c++", "clang++"))
needs_cxx = pytest.mark.skipif(not HAS_CXX, reason="no C++ compiler on PATH")

# exp overflow happens in the reference too; the comparison handles it
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    """Compiled kernels go to one cache folder per test session, never to ~/.cache."""
    monkeypatch.setenv("MLC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mlc_cache"))


def random_inputs(graph: MuGraph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)
            for name, shape in graph.inputs.items()}


def check_against_interpreter(graph: MuGraph, tolerance: float = 1e-5, seed: int = 0) -> None:
    """Every output within `tolerance` relative (to the output's largest magnitude) of the
    float32 interpreter, the reference semantics of every op."""
    inputs = random_inputs(graph, seed)
    got = compile_mugraph(graph)(*[inputs[name] for name in graph.inputs])
    want = run_mugraph(graph, inputs, FloatArith(np.float32))
    for name, value in zip(graph.outputs, got):
        assert value.shape == want[name].shape, name
        assert value.dtype == np.float32
        scale = max(float(np.abs(want[name]).max()), 1e-30)
        error = float(np.abs(value.astype(np.float64) - want[name]).max()) / scale
        assert error < tolerance, f"{graph.name} output {name}: relative error {error:.2e}"


# ---- the op tables -----------------------------------------------------------------------------

def test_every_op_has_an_emission_rule():
    assert set(BLOCK_EMIT) == set(BLOCK_OPS)
    assert set(LIBRARY_EMIT) == set(LIBRARY_OPS)


# ---- numerics against the interpreter -------------------------------------------------------

SMALL_FIXTURES = [name for name in list_fixtures() if name.endswith("_small")]


@needs_cxx
@pytest.mark.parametrize("name", SMALL_FIXTURES)
def test_shipped_small_fixtures_match_interpreter(name):
    check_against_interpreter(load_fixture(name))


@needs_cxx
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_fixtures() if not n.endswith("_small")])
def test_shipped_full_size_fixtures_match_interpreter(name):
    check_against_interpreter(load_fixture(name), tolerance=1e-4)  # sums over 4096 terms


BUILDERS = {**{f"triton_{k}": v for k, v in test_triton.GRAPHS.items()},
            **{f"new_ops_{k}": v for k, v in test_new_ops.GRAPHS.items()}}


@needs_cxx
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_graphs_match_interpreter(name):
    check_against_interpreter(BUILDERS[name]())


def test_builders_cover_every_op():
    """Guards the premise of the test above: together the builders use every op."""
    used = set()
    for build in BUILDERS.values():
        for kop in build().ops:
            used.add(kop.op)
            used.update(op.op for op in kop.block.ops) if kop.block else None
    assert set(BLOCK_OPS) - used == set()
    assert set(LIBRARY_OPS) - used - {"Relu"} == set()  # Relu: test_library_ops_at_odd_sizes


def _library_graph(op: str, attrs: dict, shapes: dict) -> MuGraph:
    names = tuple(shapes)
    return MuGraph(op.lower(), shapes, (KernelOp(op, names, ("Y",), attrs),), ("Y",))


LIBRARY_CASES = [
    ("MatMul", {}, {"A": (13, 37), "B": (37, 50)}),  # row and column tails of the micro-kernel
    ("MatMul", {}, {"A": (10, 300), "B": (300, 29)}),  # 8-wide and scalar tails, K slices
    ("MatMul", {}, {"A": (3, 7, 20), "B": (20, 70)}),  # a batch sharing one weight
    ("MatMul", {}, {"A": (2, 64, 96), "B": (2, 96, 80)}),  # a batch, parallel tasks
    ("Add", {}, {"A": (3, 1, 5), "B": (4, 1)}),  # broadcasting on both sides
    ("Div", {}, {"A": (300, 130), "B": (130,)}),  # large enough to go parallel
    ("Relu", {}, {"A": (7, 9)}),
    ("Gelu", {"approximate": "tanh"}, {"A": (5, 33)}),
    ("ReduceMax", {"dim": 0}, {"A": (6, 5, 4)}),
    ("ReduceMean", {"dim": 1}, {"A": (6, 5, 4)}),
]


@needs_cxx
@pytest.mark.parametrize("op, attrs, shapes", LIBRARY_CASES,
                         ids=[f"{c[0]}{i}" for i, c in enumerate(LIBRARY_CASES)])
def test_library_ops_at_odd_sizes(op, attrs, shapes):
    check_against_interpreter(_library_graph(op, attrs, shapes))


@needs_cxx
def test_rescale_by_a_tile_derived_from_the_running_max():
    """sum_i exp(x_i - m_i) * exp(m_i - m_final) rescaled by -2 * max (not accum_max_ld
    itself): the CPU kernel rescales by any tile computed from a running max."""
    kernel = test_new_ops.block_kernel(
        ["X"], ["S", "T"], (2, 1, 1), 4,
        [("x", 0, (0, R, R), 1)],
        [("accum_max_ld", ["x"], "m"), ("mul_scalar", ["m"], "m2", {"scale": -2.0}),
         ("sub", ["x", "m"], "d"), ("exp", ["d"], "e"),
         ("accum_sum_ld_rescale", ["e", "m"], "s"), ("accum_sum_rescale", ["e", "m2"], "t")],
        [("s", (0, R, R)), ("t", (0, R, R))])
    check_against_interpreter(MuGraph("rescale", {"X": (4, 32)}, (kernel,), ("S", "T")))


@needs_cxx
def test_outputs_that_are_inputs_or_repeated():
    graph = MuGraph("io", {"X": (3, 4)}, (KernelOp("Exp", ("X",), ("E",)),), ("E", "X", "E"))
    x = np.arange(12, dtype=np.float64).reshape(3, 4) / 10  # float64: converted on the way in
    e, same, e2 = compile_mugraph(graph)(x)
    np.testing.assert_allclose(e, np.exp(x), rtol=1e-6)
    assert np.array_equal(same, x.astype(np.float32)) and e2 is e


@needs_cxx
@pytest.mark.parametrize("workload", ["rmsnorm_matmul:small", "gqa:small"])
def test_searched_mugraphs_match_interpreter(workload, tmp_path):
    from mlc.compiler.superopt.search.driver import search
    from mlc.specs.workloads import get_workload
    result = search(get_workload(workload), budget_s=3, workers=1, seed=0,
                    cache_dir=tmp_path / "search")
    assert any(op.op == "block" for op in result.best.ops), "the search fused nothing"
    check_against_interpreter(result.best)


# ---- source hygiene, errors, cache -----------------------------------------------------------

def test_model_names_never_reach_the_source():
    hostile = 'x"); system("rm -rf /'
    graph = MuGraph(hostile, {hostile: (2, 3)}, (KernelOp("Exp", (hostile,), ("Y*/",)),),
                    ("Y*/",))
    source = render_c(graph)
    assert "rm -rf" not in source and "Y*/" not in source and hostile not in source


def test_rendering_is_deterministic():
    assert render_c(test_triton.misc_ops()) == render_c(test_triton.misc_ops())


def test_non_finite_scalar_is_a_clear_error():
    graph = _library_graph("Scale", {"scale": float("inf")}, {"A": (2, 2)})
    with pytest.raises(MuGraphError, match="not finite"):
        render_c(graph)


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cpu_compile.shutil, "which", lambda name: None)
    with pytest.raises(MlcError, match="no C.. compiler"):
        cpu_compile.build_library("int x;")


@needs_cxx
def test_wrong_input_shape_is_a_clear_error():
    kernel = compile_mugraph(_library_graph("Exp", {}, {"A": (2, 3)}))
    with pytest.raises(MlcError, match=r"shape \(3, 2\)"):
        kernel(np.zeros((3, 2), np.float32))


@needs_cxx
def test_library_cache_is_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("MLC_CACHE_DIR", str(tmp_path))
    source = render_c(_library_graph("Neg", {}, {"A": (4,)}))
    first = cpu_compile.build_library(source)
    stamp = first.stat().st_mtime_ns
    assert cpu_compile.build_library(source) == first and first.stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "cpu"
    other = cpu_compile.build_library(source.replace("-in0", "- in0"))
    assert other != first
    assert [p.name for p in (tmp_path / "cpu").iterdir() if not p.name.endswith(".so")] == []
