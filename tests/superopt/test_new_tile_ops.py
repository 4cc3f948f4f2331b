"""The tile ops real models need: activations, constant shifts, softmax and layer norm.

Float semantics against torch; the field check's uninterpreted functions and constants;
lowering and region selection of one-element constants and LayerNorm; the search finding
verified fused kernels for LayerNorm -> MatMul -> bias -> GELU and masked, scaled attention.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import FloatArith, KernelOp, MuGraph, run_mugraph
from mlc.compiler.superopt.mugraph.interpreter import row_layer_norm, row_softmax
from mlc.compiler.superopt.mugraph.unary import ACTIVATIONS
from mlc.compiler.superopt.regions import select_regions
from mlc.compiler.superopt.verify import lower_to_mugraph, verify
from mlc.compiler.superopt.verify.field import FieldArith, random_field_value

TORCH_REFERENCE = {
    "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "erf": torch.erf, "relu": torch.relu,
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_float_semantics_match_torch(name):
    x = np.linspace(-6, 6, 97)
    got = FloatArith().activation(name, x)
    want = TORCH_REFERENCE[name](torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_row_softmax_and_layer_norm_match_torch():
    x = np.random.default_rng(0).standard_normal((3, 5, 24)) * 4
    arith = FloatArith()
    np.testing.assert_allclose(row_softmax(arith, x),
                               torch.softmax(torch.tensor(x), -1).numpy(), rtol=1e-12)
    want = torch.nn.functional.layer_norm(torch.tensor(x), (24,), eps=1e-3).numpy()
    np.testing.assert_allclose(row_layer_norm(arith, x, 1e-3), want, rtol=1e-10, atol=1e-12)


def test_field_activations_are_consistent_functions():
    rng = np.random.default_rng(0)
    arith = FieldArith(seed=3)
    a = random_field_value(rng, (64,))
    gelu = arith.to_numpy(arith.activation("gelu", a))
    assert np.array_equal(gelu, arith.to_numpy(arith.activation("gelu", a)))  # same input
    assert not np.array_equal(gelu, arith.to_numpy(arith.activation("gelu_tanh", a)))
    other = FieldArith(seed=4)  # another trial draws another function
    assert not np.array_equal(gelu, other.to_numpy(other.activation("gelu", a)))


def test_field_constants_exact_when_rational_random_otherwise():
    arith = FieldArith(seed=1)
    a = arith.from_numpy(np.arange(10))
    assert np.array_equal(arith.to_numpy(arith.shift(a, 2)), np.arange(10) + 2)
    eps = arith.to_numpy(arith.shift(a, 1e-5))
    assert np.array_equal(eps, arith.to_numpy(arith.shift(a, 1e-5)))
    assert not np.array_equal(eps, arith.to_numpy(arith.shift(a, 1e-6)))


def _gelu_graph(approximate="none"):
    g = GraphBuilder("act")
    x = g.input("x", (8, 16))
    return g.build(g.op("Gelu", x, approximate=approximate, name="y"))


def _library(op, **attrs):
    return MuGraph("cand", {"x": (8, 16)}, (KernelOp(op, ("x",), ("y",), attrs, name="k"),),
                   ("y",))


def test_verifier_says_which_ops_it_only_checks_in_float():
    verdict = verify(_library("Gelu", approximate="none"), _gelu_graph())
    assert verdict.equivalent and verdict.stage == "float"
    assert verdict.uninterpreted == ("gelu",)


def test_verifier_tells_gelu_forms_apart():
    verdict = verify(_library("Gelu", approximate="tanh"), _gelu_graph("none"))
    assert not verdict.equivalent and verdict.stage == "field"


def _scaled_graph(factor):
    g = GraphBuilder("scaled")
    x = g.input("x", (8, 16))
    return g.build(g.op("Mul", x, g.const(np.float32(factor)), name="y"))


def test_one_element_constants_lower_to_scale_and_wrong_factors_are_rejected():
    graph = _scaled_graph(1 / np.sqrt(32))
    lowered = lower_to_mugraph(graph)
    assert [(op.op, op.attrs) for op in lowered.ops] == \
        [("Scale", {"scale": float(np.float32(1 / np.sqrt(32)))})]
    assert verify(lowered, graph).equivalent
    wrong = _library("Scale", scale=float(np.float32(1 / np.sqrt(31))))
    verdict = verify(wrong, graph)
    assert not verdict.equivalent and verdict.stage == "field"


def test_regions_leave_constants_out_of_inputs_and_keys_tell_them_apart():
    def model(factor):
        g = GraphBuilder("m")
        x, w = g.input("x", (8, 16)), g.input("w", (16, 16))
        y = g.op("Add", g.op("Mul", g.op("MatMul", x, w), g.const(np.float32(factor))),
                 g.const(np.float32(1.0)))
        return g.build(g.op("Gelu", y, name="out"))

    (one,), _ = select_regions(model(0.5))
    (two,), _ = select_regions(model(0.25))
    assert one.inputs == ("x", "w") and len(one.reference.weights) == 2
    assert one.key != two.key
    lowered = lower_to_mugraph(one.reference)
    assert [op.op for op in lowered.ops] == ["MatMul", "Scale", "Shift", "Gelu"]


def _layer_norm_block(rows=16, width=256, out=512):
    rng = np.random.default_rng(0)
    g = GraphBuilder("ln_gemm_gelu")
    x, w, b = g.input("x", (rows, width)), g.input("w", (width, out)), g.input("b", (out,))
    normed = g.op("LayerNormalization", x, g.weight("gamma", np.ones(width, np.float32)),
                  g.weight("beta", np.zeros(width, np.float32)), epsilon=1e-5)
    del rng
    return g.build(g.op("Gelu", g.op("Add", g.op("MatMul", normed, w), b), name="O"))


def test_layer_norm_lowering_matches_the_interpreter():
    g = GraphBuilder("ln")
    x = g.input("x", (4, 32))
    gamma = g.weight("gamma", np.linspace(0.5, 2, 32).astype(np.float32))
    graph = g.build(g.op("LayerNormalization", x, gamma, g.input("beta", (32,)),
                         epsilon=1e-3, name="y"))
    # a non-identity scale is a kernel input, not an absorbed constant
    with pytest.raises(Exception, match="weights"):
        lower_to_mugraph(graph)
    identity = _layer_norm_block(rows=4, width=32, out=8)
    feeds = {"x": np.random.default_rng(1).standard_normal((4, 32)),
             "w": np.random.default_rng(2).standard_normal((32, 8)),
             "b": np.random.default_rng(3).standard_normal(8)}
    got = run_mugraph(lower_to_mugraph(identity), feeds, FloatArith())["O"]
    want = interpret(identity, feeds, float64=True)["O"]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_layer_norm_gemm_gelu_gets_a_verified_fused_kernel():
    from mlc.compiler.superopt.search.driver import search
    found = search(_layer_norm_block(), budget_s=20, cache_dir=None, workers=1)
    best = [c for c in found.candidates if c.verified]
    assert best and best[0].est_time_us < found.baseline_est_time_us
    assert len(best[0].graph.ops) == 1 and best[0].graph.ops[0].op == "block"
    assert {op.op for op in best[0].graph.ops[0].block.ops} >= {"layer_norm", "matmul", "gelu"}


@pytest.mark.slow
def test_scaled_masked_attention_gets_a_verified_fused_kernel():
    from mlc.compiler.superopt.search.driver import search
    g = GraphBuilder("attention")
    q, k = g.input("q", (1, 4, 16, 32)), g.input("k", (1, 4, 32, 16))
    mask, v = g.input("mask", (1, 1, 16, 16)), g.input("v", (1, 4, 16, 32))
    scores = g.op("Mul", g.op("MatMul", q, k), g.const(np.float32(1 / np.sqrt(32))))
    probs = g.op("Softmax", g.op("Add", scores, mask), axis=-1)
    reference = g.build(g.op("MatMul", probs, v, name="O"))
    found = search(reference, budget_s=20, cache_dir=None)
    best = [c for c in found.candidates if c.verified]
    assert best and best[0].est_time_us < found.baseline_est_time_us
    assert "softmax" in {op.op for op in best[0].graph.ops[0].block.ops}
