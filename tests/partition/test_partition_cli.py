"""`mlc partition` end to end on the small multi-branch workload, and its one-line errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mlc.cli.main import cli
from mlc.cli.testing import run_cli
from mlc.compiler.ir.serialize import load_graph
from mlc.compiler.partition.plan_io import check_plan, graph_hash

PLAN_KEYS = {"format_version", "kind", "planner", "model", "graph_hash", "batch", "micro_batch",
             "num_micro_batches", "devices", "stages", "edges", "schedule"}


def test_partition_writes_plans(tmp_path):
    out = tmp_path / "part"
    result = CliRunner().invoke(cli, ["partition", "workload:multibranch_small", "--devices",
                                      "3", "--batch", "8", "--micro-batch", "2", "--out",
                                      str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    graph = load_graph(out / "graph.json")
    for sub, planner in (("", "graph_pipeline"), ("sequential", "sequential_pipeline")):
        plan = json.loads((out / sub / "plan.json").read_text())
        assert set(plan) == PLAN_KEYS
        assert plan["planner"] == planner and plan["kind"] == "partition-plan"
        assert plan["format_version"] == 1 and plan["model"] == "workload:multibranch_small"
        assert plan["graph_hash"] == graph_hash(graph)
        assert (plan["batch"], plan["micro_batch"], plan["num_micro_batches"]) == (8, 2, 4)
        assert check_plan(plan, graph) == []
        for stage in plan["stages"]:
            assert set(stage) == {"id", "ops", "devices", "micro_batch", "in_flight"}
            order = plan["schedule"]["order"][str(stage["id"])]
            assert sorted(order) == sorted([f"F{m}" for m in range(4)] +
                                           [f"B{m}" for m in range(4)])
        assert plan["schedule"]["kind"] == "1f1b-dag"
        assert report[planner]["throughput"] > 0 and report[planner]["peak_memory_bytes"] > 0
        assert report[planner]["search_seconds"] >= 0
    gp = json.loads((out / "plan.json").read_text())
    assert len(gp["stages"]) == 3 and gp["edges"] == [[0, 2], [1, 2]]
    assert (out / "report.md").read_text().startswith("# Partition of")
    assert (out / "gantt_graph_pipeline.svg").read_text().startswith("<svg")


def test_partition_errors_are_one_line():
    runner = CliRunner()
    result = runner.invoke(cli, ["partition", "workload:multibranch_small", "--devices", "15",
                                 "--batch", "8"])
    assert result.exit_code != 0 and "more than the model's 14 ops" in str(result.exception)
    result = runner.invoke(cli, ["partition", "workload:multibranch_small", "--devices", "2",
                                 "--batch", "8", "--micro-batch", "3"])
    assert "does not divide" in str(result.exception)
    result = runner.invoke(cli, ["partition", "workload:candle_uno", "--devices", "2",
                                 "--batch", "64", "--device-memory", "1GB"])
    assert "GB over" in str(result.exception) and "stage" in str(result.exception)


def test_partitioned_plans_train_and_match_single_process_training(tmp_path):
    """The planner's two plans run under `mlc train --check` (loss and every gradient within
    1e-5 of single-process training), each from its own directory."""
    out = tmp_path / "part"
    result = CliRunner().invoke(cli, ["partition", "workload:multibranch_small", "--devices",
                                      "3", "--batch", "8", "--micro-batch", "2", "--out",
                                      str(out)])
    assert result.exit_code == 0, result.output
    for folder in (out, out / "sequential"):
        run = run_cli("train", folder, "--steps", 1, "--check")
        assert run.returncode == 0, run.stderr
        assert "check: PASS" in run.stdout
