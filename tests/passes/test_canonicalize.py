"""canonicalize_activations: exporter-expanded SiLU becomes the IR's Silu, nothing else moves."""

from __future__ import annotations

import numpy as np

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.passes.canonicalize import canonicalize_activations


def test_mul_of_sigmoid_becomes_silu_in_either_order():
    b = GraphBuilder("act")
    x = b.input("x", (3, 5))
    left = b.op("Mul", x, b.op("Sigmoid", x))
    right = b.op("Mul", b.op("Sigmoid", left), left)
    graph = b.build(right)
    out = canonicalize_activations(graph)
    assert [n.op for n in out.nodes] == ["Silu", "Silu"]
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)}
    np.testing.assert_allclose(interpret(out, feeds)[right], interpret(graph, feeds)[right],
                               rtol=1e-6)


def test_shared_or_mismatched_sigmoid_is_left_alone():
    b = GraphBuilder("keep")
    x, y = b.input("x", (4,)), b.input("y", (4,))
    s = b.op("Sigmoid", x)
    other = b.op("Mul", y, s)  # Sigmoid of x times y: not a SiLU
    again = b.op("Mul", x, s)  # a SiLU, but the Sigmoid is also read above
    graph = b.build(other, again)
    assert canonicalize_activations(graph) is graph
