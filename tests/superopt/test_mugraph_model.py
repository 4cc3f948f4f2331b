"""µGraph model: tile shapes, validation errors, JSON round-trip, and the float interpreter."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlc.compiler.superopt.mugraph import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    FloatArith,
    KernelOp,
    MuGraph,
    MuGraphError,
    kernel_shapes,
    load_mugraph,
    mugraph_from_json,
    mugraph_to_json,
    run_mugraph,
    save_mugraph,
    shared_memory_bytes,
    validate,
)

SCHEMA = Path(__file__).resolve().parents[2] / "specs" / "schemas" / "mugraph.schema.json"


def rmsnorm_matmul(rows=2, width=256, cols=384, grid=16, loop=8, ops=None):
    """Mirage's fused RMSNorm+MatMul: divide after the matmul."""
    block = BlockGraph(
        grid=(grid, 1, 1), forloop_range=loop,
        inputs=(BlockInput("x", 0, (-1, -1, -1), 1), BlockInput("w", 1, (1, -1, -1), 0)),
        ops=ops or (BlockOp("accum_rms_ld", ("x",), "r"), BlockOp("matmul", ("x", "w"), "xw"),
                    BlockOp("accum_sum", ("xw",), "acc"), BlockOp("div", ("acc", "r"), "y")),
        outputs=(BlockOutput("y", (1, -1, -1)),))
    return MuGraph("rms", {"X": (rows, width), "W": (width, cols)},
                   (KernelOp("block", ("X", "W"), ("Y",), block=block),), ("Y",))


def rms_reference(x, w):
    return (x / np.sqrt((x * x).mean(-1, keepdims=True))) @ w


def test_tile_shapes_follow_imap_fmap_and_grid():
    graph = rmsnorm_matmul()
    from mlc.compiler.superopt.mugraph import block_shapes
    info = block_shapes(graph.ops[0].block, [(2, 256), (256, 384)])
    assert info.tiles["x"] == (2, 32)      # replicated, loop walks 256 / 8
    assert info.tiles["w"] == (32, 24)     # loop walks rows, grid splits 384 / 16
    assert info.tiles["r"] == (2, 1) and info.tiles["y"] == (2, 24)
    assert info.phase["xw"] == "loop" and info.phase["y"] == "after"
    assert kernel_shapes(graph)["Y"] == (2, 384)


def test_fused_rmsnorm_matches_numpy_at_mirage_size():
    graph = rmsnorm_matmul(2, 4096, 6144, grid=256, loop=32)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4096)), rng.standard_normal((4096, 6144))
    got = run_mugraph(graph, {"X": x, "W": w}, FloatArith())["Y"]
    np.testing.assert_allclose(got, rms_reference(x, w), rtol=1e-10, atol=1e-10)


def test_normalizing_a_partial_tile_computes_something_else():
    wrong = rmsnorm_matmul(ops=(BlockOp("rms_norm", ("x",), "xn"),
                                BlockOp("matmul", ("xn", "w"), "xw"),
                                BlockOp("accum_sum", ("xw",), "y")))
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 256)), rng.standard_normal((256, 384))
    got = run_mugraph(wrong, {"X": x, "W": w}, FloatArith())["Y"]
    assert np.abs(got - rms_reference(x, w)).max() > 1e-2


def test_online_softmax_attention_matches_safe_softmax():
    block = BlockGraph(
        grid=(2, 1, 1), forloop_range=4,
        inputs=(BlockInput("q", 0, (0, -1, -1)), BlockInput("k", 1, (0, -1, -1), 2),
                BlockInput("v", 2, (0, -1, -1), 1)),
        ops=(BlockOp("matmul", ("q", "k"), "s"), BlockOp("accum_max_ld", ("s",), "m"),
             BlockOp("sub", ("s", "m"), "z"), BlockOp("exp", ("z",), "e"),
             BlockOp("accum_sum_ld_rescale", ("e", "m"), "l"),
             BlockOp("matmul", ("e", "v"), "ev"), BlockOp("accum_sum_rescale", ("ev", "m"), "o"),
             BlockOp("div", ("o", "l"), "y")),
        outputs=(BlockOutput("y", (0, -1, -1)),))
    graph = MuGraph("att", {"Q": (2, 8, 16), "K": (2, 16, 64), "V": (2, 64, 16)},
                    (KernelOp("block", ("Q", "K", "V"), ("O",), block=block),), ("O",))
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 8, 16)) * 10  # large scores: a naive exp would overflow f32
    k, v = rng.standard_normal((2, 16, 64)), rng.standard_normal((2, 64, 16))
    s = q @ k
    p = np.exp(s - s.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ v
    got = run_mugraph(graph, {"Q": q, "K": k, "V": v}, FloatArith())["O"]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_library_ops_and_two_kernels():
    graph = MuGraph("lib", {"A": (4, 8), "B": (8, 6)}, (
        KernelOp("MatMul", ("A", "B"), ("C",)),
        KernelOp("Exp", ("C",), ("E",)),
        KernelOp("ReduceSum", ("E",), ("S",), {"dim": -1}),
        KernelOp("Div", ("E", "S"), ("P",)),
    ), ("P",))
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 8)), rng.standard_normal((8, 6))
    e = np.exp(a @ b)
    np.testing.assert_allclose(run_mugraph(graph, {"A": a, "B": b}, FloatArith())["P"],
                               e / e.sum(-1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("change, message", [
    (dict(grid=(7, 1, 1)), "does not split into 7 blocks"),
    (dict(forloop_range=5), "does not split into forloop_range 5"),
    (dict(outputs=(BlockOutput("y", (-1, -1, -1)),)), "needs its own output dim"),
    (dict(ops=(BlockOp("matmul", ("x", "w"), "y"),)), "without passing an accumulator"),
    (dict(ops=(BlockOp("accum_sum", ("x",), "a"), BlockOp("accum_sum", ("a",), "y"))),
     "only one accumulator"),
    (dict(ops=(BlockOp("frobnicate", ("x",), "y"),)), "unknown tile op"),
    (dict(ops=(BlockOp("accum_rms_ld", ("x",), "r"), BlockOp("matmul", ("x", "w"), "xw"),
               BlockOp("div", ("xw", "r"), "y"))), "mixes in-loop and after-loop"),
])
def test_validation_errors_are_specific(change, message):
    graph = rmsnorm_matmul()
    bad = replace(graph, ops=(replace(graph.ops[0], block=replace(graph.ops[0].block,
                                                                  **change)),))
    with pytest.raises(MuGraphError, match=message):
        kernel_shapes(bad)


def test_use_before_definition_is_reported_as_a_cycle():
    graph = MuGraph("cyc", {"A": (2, 2)}, (KernelOp("Exp", ("B",), ("C",)),
                                           KernelOp("Exp", ("C",), ("B",))), ("C",))
    with pytest.raises(MuGraphError, match="before they are defined"):
        kernel_shapes(graph)


def test_shared_memory_limit():
    graph = rmsnorm_matmul(2, 4096, 6144, grid=256, loop=32)
    need = shared_memory_bytes(graph.ops[0].block, [(2, 4096), (4096, 6144)])
    # one fp32 slot per tile as the CUDA renderer lays them out, each aligned to 4 floats:
    # x, w, r (2 rounded up to 4), xw, acc, y
    assert need == 4 * (2 * 128 + 128 * 24 + 4 + 2 * 24 + 2 * 24 + 2 * 24)
    validate(graph, smem_limit_bytes=227 * 1024)
    with pytest.raises(MuGraphError, match="shared memory"):
        validate(rmsnorm_matmul(2, 4096, 6144, grid=8, loop=1), smem_limit_bytes=227 * 1024)


def test_json_round_trip_and_schema(tmp_path):
    graph = rmsnorm_matmul()
    save_mugraph(graph, tmp_path / "g.json")
    assert load_mugraph(tmp_path / "g.json") == graph
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(mugraph_to_json(graph), json.loads(SCHEMA.read_text()))


def test_malformed_json_names_the_field():
    doc = mugraph_to_json(rmsnorm_matmul())
    del doc["kernels"][0]["block"]["inputs"][1]["imap"]
    with pytest.raises(MuGraphError, match=r"kernels\[0\] \(block\)\.block\.inputs\[1\]: "
                                           "missing field 'imap'"):
        mugraph_from_json(doc)
    doc = mugraph_to_json(rmsnorm_matmul())
    doc["kernels"][0]["block"]["grid"] = [256, 1]
    with pytest.raises(MuGraphError, match="grid: expected three integers"):
        mugraph_from_json(doc)
