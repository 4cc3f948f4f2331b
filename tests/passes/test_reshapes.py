"""restore_unit_dims: GPT-2's flatten -> Linear -> view-back pairs go, nothing else does."""

from __future__ import annotations

import numpy as np
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.passes.reshapes import restore_unit_dims


def _conv1d_block(view_back=True, split=False):
    rng = np.random.default_rng(0)
    g = GraphBuilder("gpt2_mlp")
    x = g.input("x", (1, 16, 32))
    flat = g.op("Reshape", x, shape=(16, 32))
    h = g.op("Add", g.op("MatMul", flat, g.weight("w", rng.standard_normal((32, 48))
                                                  .astype(np.float32))),
             g.weight("b", rng.standard_normal(48).astype(np.float32)))
    if split:
        return g.build(g.op("Split", h, axis=1, split=(24, 24), outputs=2)[0])
    if not view_back:
        return g.build(g.op("Gelu", h, name="y"))
    back = g.op("Reshape", h, shape=(1, 16, 48))
    return g.build(g.op("Gelu", back, approximate="tanh", name="y"))


def test_flatten_and_view_back_around_a_linear_go():
    graph = _conv1d_block()
    rewritten = restore_unit_dims(graph)
    assert_same_function(graph, rewritten)
    assert [n.op for n in rewritten.nodes] == ["MatMul", "Add", "Gelu"]
    assert rewritten.types[rewritten.nodes[0].outputs[0]].shape == (1, 16, 48)


def test_a_flattened_value_that_escapes_or_meets_an_axis_op_stays():
    for graph in (_conv1d_block(view_back=False), _conv1d_block(split=True)):
        assert restore_unit_dims(graph) is graph
