"""Region selection and the MuGraphCall rewrite: convex, deduplicated, and exact."""

from __future__ import annotations

import json

import numpy as np

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import mugraph_to_json
from mlc.compiler.superopt.regions import fuse_regions, select_regions
from mlc.compiler.superopt.verify.lowering import lower_to_mugraph
from mlc.runtime import random_inputs, run


def repeated_blocks(layers=3, width=16):
    """x -> [rms_norm -> matmul -> Abs (no µGraph op)] x layers: one region per layer."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("stack")
    x = b.input("x", (4, width))
    for layer in range(layers):
        w = b.weight(f"w{layer}", rng.standard_normal((width, width)).astype(np.float32))
        ms = b.op("ReduceMean", b.op("Mul", x, x), axes=(1,), keepdims=1)
        y = b.op("MatMul", b.op("Div", x, b.op("Sqrt", ms)), w)
        x = b.op("Abs", y)
    return b.build(x)


def lowered(region):
    return json.dumps(mugraph_to_json(lower_to_mugraph(region.reference)))


def test_repeated_layers_share_one_key_and_fusion_is_exact():
    graph = repeated_blocks()
    regions, notes = select_regions(graph)
    assert len(regions) == 3 and len({r.key for r in regions}) == 1 and not notes
    assert all(len(r.nodes) == 5 and len(r.inputs) == 2 for r in regions)
    fused = fuse_regions(graph, [(r, lowered(r)) for r in regions])
    assert [n.op for n in fused.nodes].count("MuGraphCall") == 3
    feeds = random_inputs(graph, seed=1)
    want = next(iter(interpret(graph, feeds, float64=True).values()))
    for executor in ("reference", "torch"):
        got = next(iter(run(fused, feeds, executor=executor).values()))
        assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


def test_regions_stay_convex():
    # m = x @ w; n = exp(m) is supported, but t = Abs(Relu(m)) is not and feeds back: the
    # region {matmul, add} must not swallow both sides of t.
    b = GraphBuilder("diamond")
    x = b.input("x", (4, 8))
    w = b.input("w", (8, 8))
    m = b.op("MatMul", x, w)
    t = b.op("Abs", b.op("Relu", m))
    out = b.op("Add", b.op("Exp", m), t)
    graph = b.build(out)
    regions, _ = select_regions(graph)
    for region in regions:
        members = set(region.nodes)
        assert not ({"matmul_1", "add_4"} <= members), region.nodes
    fused = fuse_regions(graph, [(r, lowered(r)) for r in regions])
    feeds = random_inputs(graph, seed=2)
    np.testing.assert_allclose(next(iter(run(fused, feeds, executor="reference").values())),
                               next(iter(interpret(graph, feeds).values())), rtol=1e-5)


def test_graph_without_supported_ops_is_left_alone_with_a_note():
    b = GraphBuilder("conv")
    x = b.input("x", (1, 2, 6, 6))
    w = b.input("w", (3, 2, 3, 3))
    graph = b.build(b.op("Conv", x, w, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1)))
    regions, notes = select_regions(graph)
    assert regions == [] and "left as it is" in notes[-1]


def test_regions_follow_matmul_siblings_and_cut_plain_chains():
    from pathlib import Path

    from mlc.compiler.frontends import load_model
    from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes
    block = Path(__file__).resolve().parents[2] / "examples" / "block.onnx"
    graph = run_passes(load_model(str(block)), OPTIMIZE_PASSES)
    regions, _ = select_regions(graph)
    shapes = [sorted(node.op for node in region.reference.nodes) for region in regions]
    assert shapes == [["Div", "MatMul", "Mul", "ReduceMean", "Sqrt"],  # rms_norm + W_in
                      ["MatMul", "MatMul", "Mul", "Silu"],  # the gated MLP's two projections
                      ["Add", "MatMul"],  # W_out + residual: a new region, not a chain
                      ["MatMul", "Softmax"]]  # the head
    assert all(len(region.inputs) <= 4 for region in regions)


def test_attention_keeps_its_matmul_chain_in_one_region():
    from mlc.specs.workloads import get_workload
    (region,) = select_regions(get_workload("gqa:small"))[0]
    assert [n.op for n in region.reference.nodes].count("MatMul") == 2
