"""`mlc partition --profile`: op times measured with torch replace the roofline estimates."""

from __future__ import annotations

import json

import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.partition.cost import CostModel, Machine
from mlc.compiler.partition.plan_io import check_plan
from mlc.runtime.profile_ops import profile_ops
from mlc.specs.workloads import get_workload

V100 = Machine(peak_flops=125e12, dram_bandwidth=900e9, memory_bytes=16 * 10**9)


@pytest.fixture(scope="module")
def measured():
    graph = get_workload("multibranch_small")
    return graph, profile_ops(graph, repeats=1)


def test_every_op_is_timed_at_the_graph_batch(measured):
    graph, times = measured
    assert set(times) == {node.name for node in graph.nodes}
    batch = next(iter(graph.inputs.values())).shape[0]
    for name, (at, fwd, bwd, fwd_1, bwd_1) in times.items():
        assert at == batch
        assert fwd > 0 and fwd_1 > 0 and bwd >= 0 and bwd_1 >= 0, name


def test_cost_model_interpolates_the_measurements(measured):
    graph, times = measured
    model = CostModel(graph, V100, times)
    for name, (batch, fwd, _bwd, fwd_1, bwd_1) in times.items():
        assert model.forward_time(name, 1) == pytest.approx(fwd_1)
        assert model.backward_time(name, 1) == pytest.approx(bwd_1)
        assert model.forward_time(name, batch) == pytest.approx(max(fwd, fwd_1))
        middle = model.forward_time(name, (batch + 1) / 2)
        assert fwd_1 - 1e-12 <= middle <= max(fwd, fwd_1) + 1e-12


def test_cli_profile_writes_valid_plans(tmp_path):
    out = tmp_path / "part"
    result = run_cli("partition", "workload:multibranch_small", "--devices", 3, "--batch", 8,
                     "--micro-batch", 2, "--profile", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["op_times"].startswith("profiled")
    graph = get_workload("multibranch_small")
    for folder in (out, out / "sequential"):
        assert check_plan(json.loads((folder / "plan.json").read_text()), graph) == []
