"""The ONNX backend node test cases shipped with `onnx`, for every op the frontend claims."""

from __future__ import annotations

from mlc.compiler.frontends.onnx_conformance import run_all


def test_backend_node_cases_pass_for_claimed_ops():
    result = run_all()
    assert result["total"] > 1000  # the suite really ran
    rate = result["passed"] / result["total"]
    assert rate >= 0.95, result["failures"][:20]
    # ops central to the IR pass every case
    for op in ("MatMul", "Gemm", "Conv", "Softmax", "LayerNormalization", "Reshape", "Gather",
               "Slice", "Concat", "Split", "Transpose", "Where", "ReduceMean", "Expand"):
        counts = result["per_op"][op]
        assert counts["passed"] == counts["total"], (op, counts)
