"""lower_gemm: Gemm -> MatMul (+ Add), every attribute combination, against the reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from canon_check import assert_same_function

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.passes.gemm import lower_gemm

CASES = list(itertools.product((0, 1), (0, 1), (1.0, 0.5), (1.0, 2.0, 0.0), (True, False)))


@pytest.mark.parametrize("trans_a, trans_b, alpha, beta, const_b", CASES)
def test_gemm_lowers_to_matmul_with_the_same_value(trans_a, trans_b, alpha, beta, const_b):
    rng = np.random.default_rng(1)
    b = GraphBuilder("gemm")
    a = b.input("a", (5, 4) if trans_a else (4, 5))
    shape_b = (3, 5) if trans_b else (5, 3)
    w = b.weight("w", rng.standard_normal(shape_b).astype(np.float32)) if const_b \
        else b.input("w", shape_b)
    c = b.weight("c", rng.standard_normal(3).astype(np.float32))
    y = b.op("Gemm", a, w, c, alpha=alpha, beta=beta, transA=trans_a, transB=trans_b)
    graph = b.build(b.op("Relu", y))
    out = lower_gemm(graph)
    ops = out.op_counts()
    assert "Gemm" not in ops and ops["MatMul"] == 1
    assert ops.get("Transpose", 0) == trans_a + (trans_b and not const_b)
    assert ops.get("Add", 0) == (beta != 0.0)
    assert ops.get("Mul", 0) == (alpha != 1.0)
    assert "w" not in out.weights if (const_b and trans_b) else True  # the copy replaced it
    assert_same_function(graph, out)


def test_gemm_without_bias_keeps_its_output_name_and_graph_without_gemm_is_unchanged():
    b = GraphBuilder("plain")
    y = b.op("Gemm", b.input("a", (2, 3)), b.input("w", (3, 4)), name="fc")
    graph = b.build(y)
    out = lower_gemm(graph)
    assert [(n.op, n.name, n.outputs) for n in out.nodes] == [("MatMul", "fc", ("fc",))]
    assert lower_gemm(out) is out


def test_shared_transposed_weight_is_copied_once():
    b = GraphBuilder("shared")
    w = b.weight("w", np.ones((4, 3), np.float32))
    y1 = b.op("Gemm", b.input("a", (2, 3)), w, transB=1)
    y2 = b.op("Gemm", b.input("z", (2, 3)), w, transB=1)
    graph = b.build(y1, y2)
    out = lower_gemm(graph)
    assert list(out.weights) == ["w_T"]
    assert_same_function(graph, out)
