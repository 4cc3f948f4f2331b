"""`mlc train` end to end: local processes on gloo, checked against single-process training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pipeline_models import (
    BATCH,
    CHAIN_EDGES,
    CHAIN_STAGES,
    DAG_EDGES,
    DAG_STAGES,
    branchy_graph,
    write_artifact,
)

from mlc.cli.main import cli
from mlc.compiler.errors import MlcError
from mlc.runtime.torch_executor import TorchGraphModule


def _train(*args, env=None):
    """`mlc train ARGS` in this process (so its workers are our children); errors and exit codes
    as the CLI would print them (MlcError: 1, any other exception: 70)."""
    result = CliRunner().invoke(cli, ["train", *map(str, args)], env=env)
    output = result.output
    if isinstance(result.exception, MlcError):
        output += f"error: {result.exception}\n"
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        # what cli.common.handle_errors makes of any other exception: an internal error
        output += f"internal error: {type(result.exception).__name__}: {result.exception}\n"
        return 70, output
    return result.exit_code, output


def _train_regression(directory, tmp_path, seed: int, steps: int):
    """`mlc train --check --json` at lr 0.1 on random regression data: (report, x, targets)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, 16)).astype(np.float32)
    targets = rng.standard_normal((BATCH, 4)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, targets=targets)
    code, output = _train(directory, "--steps", steps, "--lr", 0.1, "--data",
                          tmp_path / "data.npz", "--check", "--json")
    assert code == 0, output
    return json.loads(output[output.index("{"):]), x, targets


def _single_process_losses(graph, x, targets, steps, lr):
    """Full-batch SGD on the whole graph in this process: the independent reference."""
    module = TorchGraphModule(graph)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((module(x=torch.from_numpy(x))["head"] - torch.from_numpy(targets)) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.slow
def test_dag_plan_four_processes_matches_single_process(tmp_path):
    graph = branchy_graph()
    order = {"0": ["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3"],  # 1F1B over the stage DAG
             "1": ["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3"],
             "2": ["F0", "F1", "F2", "F3", "B0", "B1", "B2", "B3"],  # GPipe-like also works
             "3": ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3"]}
    directory = write_artifact(tmp_path / "dag", graph, DAG_STAGES, DAG_EDGES, micro_batch=2,
                               order=order)
    report, x, targets = _train_regression(directory, tmp_path, seed=3, steps=3)
    assert report["processes"] == 4 and report["check"]["ok"]
    assert report["check"]["max_grad_rel_error"] <= 1e-5
    assert set(report["check"]["grad_rel_errors"]) == {"w0", "w1", "w2", "w_head"}
    expected = _single_process_losses(graph, x, targets, steps=3, lr=0.1)
    np.testing.assert_allclose(report["losses"], expected, rtol=1e-5)
    assert report["losses"][2] < report["losses"][0]
    assert len(report["step_seconds"]) == 3 and report["median_step_seconds"] > 0


@pytest.mark.slow
def test_chain_plan_cross_entropy_adam(tmp_path):
    directory = write_artifact(tmp_path / "chain", branchy_graph(), CHAIN_STAGES, CHAIN_EDGES,
                               micro_batch=4)
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((2 * BATCH, 16)).astype(np.float32),
             labels=rng.integers(0, 4, 2 * BATCH))
    code, output = _train(directory, "--steps", 2, "--optimizer", "adam", "--data",
                          tmp_path / "data.npz", "--check")
    assert code == 0, output
    assert "check: PASS" in output and "2 stages on 2 processes" in output


@pytest.mark.slow
def test_dag_plan_with_data_parallel_head_five_processes(tmp_path):
    graph = branchy_graph()
    directory = write_artifact(tmp_path / "dp", graph, DAG_STAGES, DAG_EDGES, micro_batch=4,
                               degrees=[1, 1, 1, 2])
    report, x, targets = _train_regression(directory, tmp_path, seed=7, steps=2)
    assert report["processes"] == 5 and report["check"]["ok"], report["check"]
    assert set(report["check"]["grad_rel_errors"]) == {"w0", "w1", "w2", "w_head"}
    expected = _single_process_losses(graph, x, targets, steps=2, lr=0.1)
    np.testing.assert_allclose(report["losses"], expected, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("degrees", [[2, 1], [1, 2]])
def test_chain_plan_with_data_parallel_stage(tmp_path, degrees):
    directory = write_artifact(tmp_path / "chain", branchy_graph(), CHAIN_STAGES, CHAIN_EDGES,
                               micro_batch=4, degrees=degrees)
    code, output = _train(directory, "--steps", 2, "--check")
    assert code == 0, output
    assert "check: PASS" in output and "2 stages on 3 processes" in output


def _children() -> list[int]:
    """Pids of live processes descending from this test process (workers fork from
    multiprocessing's fork server); the fork server and resource tracker themselves, which live
    as long as this process, aside."""
    parent, command = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command[int(entry)] = cmdline.read()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parent[int(entry)] = int(fields[1])
    found, frontier = [], [os.getpid()]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                frontier.append(child)
                helper = b"resource_tracker" in command[child] or b"forkserver" in command[child]
                if not helper:
                    found.append(child)
    return found


@pytest.mark.slow
def test_worker_failure_stops_everyone(tmp_path):
    directory = write_artifact(tmp_path / "chain", branchy_graph(), CHAIN_STAGES, CHAIN_EDGES)
    before = set(_children())
    code, output = _train(directory, "--steps", 2, "--timeout", 30,
                          env={"MLC_TRAIN_FAIL_RANK": "1"})
    assert code == 70  # a worker's bug is an internal error, not bad input
    assert "rank 1 (stage 1) failed: RuntimeError: injected failure" in output
    assert "other workers were stopped" in output
    assert set(_children()) <= before


def test_plan_for_another_model_is_a_one_line_error(tmp_path):
    directory = write_artifact(tmp_path / "dag", branchy_graph(), DAG_STAGES, DAG_EDGES)
    plan = json.loads((directory / "plan.json").read_text())
    plan["graph_hash"] = "0" * 64
    (directory / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run([sys.executable, "-m", "mlc.cli.main", "train", str(directory)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("error: plan file is for another model")
