"""canonicalize_activations: elementwise cones that compute GELU / SiLU / sigmoid / tanh of one
tensor become that named op, recognized by evaluation whatever the spelling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.passes.canonicalize import canonicalize_activations


def _bert_gelu(b, x):
    """HF BERT: x * 0.5 * (1 + erf(x / sqrt2)) as torchscript exports it."""
    inner = b.op("Add", b.op("Erf", b.op("Div", x, b.const(1.4142135))), b.const(1.0))
    return b.op("Mul", b.op("Mul", x, inner), b.const(0.5))


def _bert_gelu_reordered(b, x):
    """Same function, other order: 0.5 * x first, erf(x * (1/sqrt2)), constant on the left."""
    half_x = b.op("Mul", b.const(0.5), x)
    inner = b.op("Add", b.const(1.0), b.op("Erf", b.op("Mul", x, b.const(1 / math.sqrt(2)))))
    return b.op("Mul", half_x, inner)


def _gelu_new(b, x):
    """GPT-2 gelu_new: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3))))."""
    cube = b.op("Pow", x, b.const(3.0))
    inner = b.op("Add", x, b.op("Mul", b.const(0.044715), cube))
    t = b.op("Tanh", b.op("Mul", b.const(math.sqrt(2 / math.pi)), inner))
    return b.op("Mul", b.op("Mul", b.const(0.5), x), b.op("Add", b.const(1.0), t))


def _silu(b, x):
    return b.op("Mul", b.op("Sigmoid", x), x)


def _sigmoid(b, x):
    """1 / (1 + exp(-x))."""
    return b.op("Reciprocal", b.op("Add", b.op("Exp", b.op("Neg", x)), b.const(1.0)))


SPELLINGS = [  # (builder, expected op, expected attrs)
    (_bert_gelu, "Gelu", {"approximate": "none"}),
    (_bert_gelu_reordered, "Gelu", {"approximate": "none"}),
    (_gelu_new, "Gelu", {"approximate": "tanh"}),
    (_silu, "Silu", {}),
    (_sigmoid, "Sigmoid", {}),
]


@pytest.mark.parametrize("spell, op, attrs", SPELLINGS, ids=lambda v: getattr(v, "__name__", ""))
def test_spelled_activation_becomes_one_named_op(spell, op, attrs):
    b = GraphBuilder("act")
    x = b.op("MatMul", b.input("a", (4, 6)), b.input("w", (6, 8)))
    y = b.op("MatMul", spell(b, x), b.input("w2", (8, 3)))
    graph = b.build(y)
    out = canonicalize_activations(graph)
    assert [n.op for n in out.nodes] == ["MatMul", op, "MatMul"]
    assert out.nodes[1].attrs == attrs and out.nodes[1].inputs == (x,)
    assert len(out.weights) == 0  # the scalar constants died with their cone
    assert_same_function(graph, out)


def test_erf_and_tanh_gelu_are_told_apart():
    """The tanh formula with the erf constant set must not pass for erf-GELU, and vice versa."""
    b = GraphBuilder("apart")
    x = b.input("x", (5,))
    graph = b.build(_gelu_new(b, x), _bert_gelu(b, b.input("z", (5,))))
    out = canonicalize_activations(graph)
    assert [n.attrs["approximate"] for n in out.nodes] == ["tanh", "none"]


def test_near_miss_constant_is_not_rewritten():
    """0.5 * x * (1 + erf(x / 1.5)) is no GELU: left alone (same graph object)."""
    b = GraphBuilder("miss")
    x = b.input("x", (5,))
    inner = b.op("Add", b.op("Erf", b.op("Div", x, b.const(1.5))), b.const(1.0))
    graph = b.build(b.op("Mul", b.op("Mul", x, inner), b.const(0.5)))
    assert canonicalize_activations(graph) is graph


def test_cone_value_read_outside_or_graph_output_is_left_alone():
    b = GraphBuilder("escape")
    x = b.input("x", (5,))
    erf = b.op("Erf", b.op("Div", x, b.const(1.4142135)))
    gelu = b.op("Mul", b.op("Mul", x, b.op("Add", erf, b.const(1.0))), b.const(0.5))
    graph = b.build(gelu, b.op("Neg", erf))  # erf is read by Neg too
    assert canonicalize_activations(graph) is graph
    b2 = GraphBuilder("output")
    x = b2.input("x", (5,))
    sig = b2.op("Sigmoid", x)
    graph = b2.build(b2.op("Mul", x, sig), sig)  # the sigmoid is a graph output
    assert canonicalize_activations(graph) is graph


def test_largest_cone_wins_and_leaf_can_be_elementwise():
    """x = 2 * h feeds a SiLU: the cone stops at x (silu(2h) is not silu(h))."""
    b = GraphBuilder("leaf")
    h = b.input("h", (3, 4))
    x = b.op("Mul", h, b.const(2.0))
    graph = b.build(_silu(b, x))
    out = canonicalize_activations(graph)
    assert [n.op for n in out.nodes] == ["Mul", "Silu"]
    assert_same_function(graph, out)


def test_mul_of_sigmoid_becomes_silu_in_either_order():
    b = GraphBuilder("act")
    x = b.input("x", (3, 5))
    left = b.op("Mul", x, b.op("Sigmoid", x))
    right = b.op("Mul", b.op("Sigmoid", left), left)
    graph = b.build(right)
    out = canonicalize_activations(graph)
    assert [n.op for n in out.nodes] == ["Silu", "Silu"]
    assert_same_function(graph, out)


def test_shared_or_mismatched_sigmoid_is_left_alone():
    b = GraphBuilder("keep")
    x, y = b.input("x", (4,)), b.input("y", (4,))
    s = b.op("Sigmoid", x)
    other = b.op("Mul", y, s)  # Sigmoid of x times y: not a SiLU
    again = b.op("Mul", x, s)  # a SiLU, but the Sigmoid is also read above
    graph = b.build(other, again)
    assert canonicalize_activations(graph) is graph


def test_broadcasting_constant_is_not_a_scalar_activation():
    """A [1, 1, 1] 'scalar' that lifts x to rank 3 would change the output type: left alone."""
    b = GraphBuilder("rank")
    x = b.input("x", (4,))
    sig = b.op("Sigmoid", b.op("Mul", x, b.weight("one", np.ones((1, 1, 1), np.float32))))
    graph = b.build(b.op("Mul", x, sig))
    assert canonicalize_activations(graph) is graph
