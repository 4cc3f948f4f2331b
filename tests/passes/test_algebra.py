"""The algebraic canonicalizations: Pow, reciprocals, the softmax NaN guard, MatMul scales."""

from __future__ import annotations

import numpy as np
import pytest
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.passes.algebra import (
    drop_softmax_nan_guard,
    hoist_matmul_scales,
    reciprocal_to_div,
    simplify_pow,
)

POWERS = [(1.0, {"Neg": 1}), (2.0, {"Mul": 1, "Neg": 1}), (3.0, {"Mul": 2, "Neg": 1}),
          (0.5, {"Sqrt": 1, "Neg": 1}), (-1.0, {"Reciprocal": 1, "Neg": 1}),
          (-0.5, {"Sqrt": 1, "Reciprocal": 1, "Neg": 1})]


@pytest.mark.parametrize("exponent, ops", POWERS)
def test_pow_with_constant_exponent(exponent, ops):
    b = GraphBuilder("pow")
    x = b.op("Add", b.input("x", (3, 4)), b.const(40.0))  # positive, for the roots
    graph = b.build(b.op("Neg", b.op("Pow", x, b.const(exponent))))
    out = simplify_pow(graph)
    assert out.op_counts() == {**ops, "Add": 1}
    assert_same_function(graph, out)


def test_pow_kept_when_exponent_unusual_or_identity_is_an_output():
    b = GraphBuilder("keep")
    x = b.input("x", (3,))
    graph = b.build(b.op("Pow", x, b.const(1.7)), b.op("Pow", x, b.const(1.0)))
    assert simplify_pow(graph) is graph


def test_rsqrt_times_x_becomes_div():
    """Llama RMSNorm: x * Reciprocal(Sqrt(mean(x^2) + eps)) -> x / Sqrt(...), both readers."""
    b = GraphBuilder("rms")
    x = b.input("x", (2, 8))
    var = b.op("ReduceMean", b.op("Mul", x, x), axes=(-1,))
    inv = b.op("Reciprocal", b.op("Sqrt", b.op("Add", var, b.const(1e-6))))
    graph = b.build(b.op("Mul", x, inv), b.op("Mul", inv, b.input("y", (2, 8))))
    out = reciprocal_to_div(graph)
    ops = out.op_counts()
    assert ops["Div"] == 2 and "Reciprocal" not in ops and ops["Mul"] == 1
    assert_same_function(graph, out)


def test_one_over_y_feeding_mul_becomes_div_but_other_readers_block_it():
    b = GraphBuilder("div")
    x, y = b.input("x", (4,)), b.input("y", (4,))
    y = b.op("Add", b.op("Abs", y), b.const(1.0))
    graph = b.build(b.op("Mul", x, b.op("Div", b.const(1.0), y)))
    out = reciprocal_to_div(graph)
    assert [n.op for n in out.nodes] == ["Abs", "Add", "Div"]
    assert_same_function(graph, out)
    b = GraphBuilder("blocked")
    x = b.input("x", (4,))
    inv = b.op("Reciprocal", x)
    graph = b.build(b.op("Mul", x, inv), b.op("Neg", inv))
    assert reciprocal_to_div(graph) is graph


def _guarded_softmax(b, scores, zero=0.0):
    s = b.op("Softmax", scores, axis=-1)
    return b.op("Where", b.op("IsNaN", s), b.const([zero]), s)


def test_softmax_nan_guard_is_dropped():
    b = GraphBuilder("guard")
    p = _guarded_softmax(b, b.input("s", (2, 3, 5)))
    graph = b.build(b.op("MatMul", p, b.input("v", (2, 5, 4))))
    out = drop_softmax_nan_guard(graph)
    assert [n.op for n in out.nodes] == ["Softmax", "MatMul"]
    assert out.nodes[1].inputs[0] == out.nodes[0].outputs[0]
    assert_same_function(graph, out)


def test_guard_with_nonzero_fill_or_as_output_is_kept():
    b = GraphBuilder("fill")
    graph = b.build(b.op("Neg", _guarded_softmax(b, b.input("s", (2, 5)), zero=1.0)))
    assert drop_softmax_nan_guard(graph) is graph
    b = GraphBuilder("out")
    graph = b.build(_guarded_softmax(b, b.input("s", (2, 5))))
    assert drop_softmax_nan_guard(graph) is graph


def test_scalar_scales_of_both_matmul_operands_move_after_it():
    b = GraphBuilder("sdpa")
    q = b.op("Mul", b.input("q", (2, 4, 8)), b.const(0.5))
    k = b.op("Mul", b.const(0.25), b.input("k", (2, 8, 4)))
    graph = b.build(b.op("Softmax", b.op("MatMul", q, k)))
    out = hoist_matmul_scales(graph)
    assert [n.op for n in out.nodes] == ["MatMul", "Mul", "Softmax"]
    assert out.nodes[0].inputs == ("q", "k")
    assert float(out.weights[out.nodes[1].inputs[1]]) == 0.125
    assert_same_function(graph, out)


def test_scale_read_elsewhere_or_broadcasting_is_kept():
    b = GraphBuilder("kept")
    q = b.op("Mul", b.input("q", (4, 8)), b.const(0.5))
    graph = b.build(b.op("MatMul", q, b.input("k", (8, 4))), q)
    assert hoist_matmul_scales(graph) is graph
    b = GraphBuilder("lifted")
    q = b.op("Mul", b.input("q", (4, 8)), b.weight("c", np.full((1, 1, 1), 2.0, np.float32)))
    graph = b.build(b.op("MatMul", q, b.input("k", (8, 4))))
    assert hoist_matmul_scales(graph) is graph
