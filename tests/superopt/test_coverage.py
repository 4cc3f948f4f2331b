"""Coverage of an optimize result: hand-counted FLOPs / bytes, and the CLI's report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.superopt.coverage import coverage_line, coverage_of
from mlc.compiler.superopt.optimize import OptimizeResult, RegionResult
from mlc.compiler.superopt.regions import Region

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "block.onnx"


def two_layers():
    """x(4,8) -> MatMul w1(8,8) -> Relu -> MatMul w2(8,4) -> Exp, nodes named by hand."""
    b = GraphBuilder("two_layers")
    x = b.input("x", (4, 8))
    w1 = b.weight("w1", np.ones((8, 8), np.float32))
    w2 = b.weight("w2", np.ones((8, 4), np.float32))
    h = b.op("Relu", b.op("MatMul", x, w1, name="mm1"), name="relu")
    return b.build(b.op("Exp", b.op("MatMul", h, w2, name="mm2"), name="exp"))


def region_result(nodes: tuple[str, ...], verified: bool, instances: int = 1) -> RegionResult:
    """A RegionResult carrying only what coverage reads (nodes of each region, the verdict)."""
    regions = [Region(nodes, (), (), None, "k") for _ in range(instances)]
    return RegionResult("k", regions, None, verified, 1.0, 2.0, 0, 0, 0, 0.0, False)


# Hand counts (float32, 4 bytes): mm1 2*4*8*8 = 512 FLOPs, (32+64+32)*4 = 512 B;
# relu 32 FLOPs, 64*4 = 256 B; mm2 2*4*4*8 = 256 FLOPs, (32+32+16)*4 = 320 B;
# exp 4 FLOPs/element * 16 = 64 FLOPs, 32*4 = 128 B. Totals 864 FLOPs, 1216 B.
@pytest.mark.parametrize("results, flops, nbytes, fused", [
    ([], 0, 0, 0),
    ([region_result(("mm1", "relu"), True)], 544, 768, 2),
    ([region_result(("mm1", "relu"), True), region_result(("mm2", "exp"), False)], 544, 768, 2),
    ([region_result(("mm1", "relu"), True), region_result(("mm2", "exp"), True)], 864, 1216, 4),
    ([region_result(("mm1", "relu", "mm2", "exp"), False)], 0, 0, 0),
])
def test_coverage_counts_only_verified_regions(results, flops, nbytes, fused):
    graph = two_layers()
    coverage = coverage_of(OptimizeResult(graph, results, source=graph))
    assert coverage == {"flops_fraction": round(flops / 864, 4),
                        "bytes_fraction": round(nbytes / 1216, 4),
                        "ops_fused": fused, "ops_total": 4}


def test_coverage_line_and_empty_graph():
    line = coverage_line({"flops_fraction": 0.8312, "bytes_fraction": 0.41, "ops_fused": 96,
                          "ops_total": 246})
    assert line == "Coverage: 83% of FLOPs, 41% of bytes, 96/246 ops in verified fused kernels"
    b = GraphBuilder("identity")
    graph = b.build(b.op("Identity", b.input("x", (2,))))
    assert coverage_of(OptimizeResult(graph, [], source=graph))["flops_fraction"] == 0.0


def test_optimize_report_has_consistent_coverage(tmp_path):
    out = tmp_path / "block"
    result = run_cli("optimize", EXAMPLE, "--out", out, "--budget", "3", "--no-cache")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    coverage = report["coverage"]
    assert 0 <= coverage["flops_fraction"] <= 1 and 0 <= coverage["bytes_fraction"] <= 1
    verified = [row for row in report["kernels"] if row["verified"]]
    # Every verified region's nodes are fused; distinct regions never share a node.
    assert coverage["ops_fused"] == sum(len(row["region"]) * row["instances"]
                                        for row in verified)
    assert coverage["ops_fused"] <= coverage["ops_total"]
    assert (coverage["ops_fused"] > 0) == (coverage["flops_fraction"] > 0 or
                                           coverage["bytes_fraction"] > 0)
    assert coverage_line(coverage) in (out / "report.md").read_text().splitlines()[2]
    assert coverage_line(coverage) in result.stdout
    jsonschema = pytest.importorskip("jsonschema")
    schema = Path(__file__).resolve().parents[2] / "specs" / "schemas" / "report.schema.json"
    jsonschema.validate(report, json.loads(schema.read_text()))
