"""The IR: op table consistency, graph invariants, JSON round-trip, interpreter checks."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.errors import MlcError
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import Graph, IRError, Node, TensorType, interpret, load_graph, save_graph
from mlc.compiler.ir.analysis import graph_stats
from mlc.compiler.ir.ops import OPS, REQUIRED
from mlc.compiler.ir.text import format_graph


def small_transformer_block(seed=0) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("block")
    x = b.input("x", (2, 8, 16))
    wq = b.weight("wq", rng.standard_normal((16, 16)).astype(np.float32) * 0.3)
    gamma = b.weight("gamma", rng.standard_normal(16).astype(np.float32))
    h = b.op("LayerNormalization", x, gamma, axis=-1, epsilon=1e-5)
    q = b.op("MatMul", h, wq)
    heads = b.op("Transpose", b.op("Reshape", q, shape=(2, 8, 2, 8)), perm=(0, 2, 1, 3))
    scores = b.op("MatMul", heads, b.op("Transpose", heads, perm=(0, 1, 3, 2)))
    probs = b.op("Softmax", scores, axis=-1)
    ctx = b.op("Reshape", b.op("Transpose", b.op("MatMul", probs, heads), perm=(0, 2, 1, 3)),
               shape=(2, 8, 16))
    half = b.weight("half", np.float32(0.5))  # a 0-d weight must stay 0-d through JSON
    out = b.op("Add", x, b.op("Mul", half, b.op("Gelu", ctx)))
    return b.build(out)


def numpy_block(x, wq, gamma):
    mu = x.mean(-1, keepdims=True)
    h = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * gamma
    q = (h @ wq).reshape(2, 8, 2, 8).transpose(0, 2, 1, 3)
    s = q @ q.transpose(0, 1, 3, 2)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ctx = (p @ q).transpose(0, 2, 1, 3).reshape(2, 8, 16)
    from scipy.special import erf
    return x + 0.5 * (0.5 * ctx * (1 + erf(ctx / np.sqrt(2))))


def test_interpreter_matches_independent_numpy_in_float64():
    graph = small_transformer_block()
    x = np.random.default_rng(1).standard_normal((2, 8, 16))
    got = interpret(graph, {"x": x}, float64=True)
    want = numpy_block(x, graph.weights["wq"].astype(np.float64),
                       graph.weights["gamma"].astype(np.float64))
    (out,) = got.values()
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_float32_mode_is_close_to_float64():
    graph = small_transformer_block()
    x = np.random.default_rng(2).standard_normal((2, 8, 16)).astype(np.float32)
    lo = next(iter(interpret(graph, {"x": x}).values()))
    hi = next(iter(interpret(graph, {"x": x}, float64=True).values()))
    assert lo.dtype == np.float32
    np.testing.assert_allclose(lo, hi, rtol=1e-4, atol=1e-5)


def test_json_round_trip_preserves_graph_and_results(tmp_path):
    graph = small_transformer_block()
    save_graph(graph, tmp_path)
    assert (tmp_path / "weights.safetensors").is_file()
    loaded = load_graph(tmp_path / "graph.json")
    assert loaded.nodes == graph.nodes and loaded.types == graph.types
    assert loaded.weights["half"].shape == ()
    x = np.random.default_rng(3).standard_normal((2, 8, 16)).astype(np.float32)
    a = next(iter(interpret(graph, {"x": x}).values()))
    b = next(iter(interpret(loaded, {"x": x}).values()))
    np.testing.assert_array_equal(a, b)


def test_json_round_trip_keeps_infinite_attributes(tmp_path):
    b = GraphBuilder("clip")
    y = b.op("Clip", b.input("x", (3,)), min=float("-inf"), max=1.0)
    graph = b.build(y)
    save_graph(graph, tmp_path)
    assert load_graph(tmp_path / "graph.json").nodes[0].attrs["min"] == float("-inf")


def test_shape_inference_reports_node_and_shapes():
    b = GraphBuilder("bad")
    y = b.op("MatMul", b.input("a", (2, 3)), b.input("c", (4, 5)), name="fc")
    with pytest.raises(IRError, match=r"'fc' \(MatMul\).*inner dims"):
        b.build(y)


def test_lint_catches_use_before_definition_and_missing_output():
    t = TensorType((2,), "float32")
    with pytest.raises(IRError, match="not defined"):
        Graph.build("g", {"x": t}, [Node("Relu", ["y"], ["z"], {}, "r")], ["z"])
    with pytest.raises(IRError, match="never defined"):
        Graph.build("g", {"x": t}, [Node("Relu", ["x"], ["z"], {}, "r")], ["nope"])


def test_unknown_op_and_missing_attribute_are_ir_errors():
    t = TensorType((2,), "float32")
    with pytest.raises(IRError, match="unknown op"):
        Graph.build("g", {"x": t}, [Node("Frobnicate", ["x"], ["y"], {}, "f")], ["y"])
    with pytest.raises(IRError, match="needs attribute 'perm'"):
        Graph.build("g", {"x": t}, [Node("Transpose", ["x"], ["y"], {}, "t")], ["y"])


def test_interpreter_rejects_wrong_inputs_with_clear_message():
    graph = small_transformer_block()
    with pytest.raises(MlcError, match=r"input 'x' has shape \[2, 8\]"):
        interpret(graph, {"x": np.zeros((2, 8), np.float32)})
    with pytest.raises(MlcError, match="missing input 'x'"):
        interpret(graph, {})
    with pytest.raises(MlcError, match="unknown input"):
        interpret(graph, {"x": np.zeros((2, 8, 16)), "y": np.zeros(1)})


def test_op_table_rows_are_complete():
    for op in OPS.values():
        low, high = op.arity
        assert low >= 1 and (high is None or high >= low), op.name
        assert op.kind in {"elementwise", "reduction", "linalg", "norm", "conv", "movement",
                           "fused"}
        assert callable(op.infer) and callable(op.compute)
        assert all(isinstance(k, str) for k in op.attrs)
    assert REQUIRED in OPS["Reshape"].attrs.values()


@pytest.mark.parametrize("op", [n for n, o in OPS.items() if o.kind == "elementwise"
                                and o.arity == (1, 1) and n not in ("Cast", "Not")])
def test_unary_shape_rule_agrees_with_numpy(op):
    x = np.random.default_rng(0).uniform(0.1, 0.9, (3, 4)).astype(np.float32)
    b = GraphBuilder(op)
    y = b.op(op, b.input("x", x.shape))
    graph = b.build(y)
    (out,) = interpret(graph, {"x": x}, check_types=True).values()
    assert out.shape == graph.types[y].shape


def test_stats_and_text_form():
    graph = small_transformer_block()
    stats = graph_stats(graph)
    assert stats["params"] == 16 * 16 + 16 + 1
    # one 16x16 projection and two attention matmuls over 2 heads of 8x8 per batch of 2
    matmul_flops = 2 * (2 * 8 * 16 * 16) + 2 * 2 * (2 * 2 * 8 * 8 * 8)
    assert stats["flops"] >= matmul_flops
    text = format_graph(graph)
    assert "MatMul(%layernormalization_1, %wq)" in text and "float32[2, 8, 16]" in text
