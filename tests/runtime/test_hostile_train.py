"""`mlc train` against bad options, tampered plans and faults: a killed or interrupted launcher
leaves no process and no temp folder behind, a diverged run is an error, and every bad input
is a one-line error (exit 1 or 2), never an internal error or a `loss nan` result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from pipeline_models import CHAIN_EDGES, CHAIN_STAGES, branchy_graph, write_artifact

from mlc.cli.testing import run_cli
from mlc.compiler.errors import EXIT_VERDICT

MLC = [sys.executable, "-c", "from mlc.cli.entry import main; main()"]
MARK = "MLC_HOSTILE_TRAIN_MARK"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A two-stage plan of the small branchy graph (two worker processes)."""
    return write_artifact(tmp_path_factory.mktemp("train") / "chain", branchy_graph(),
                          CHAIN_STAGES, CHAIN_EDGES)


# ---- processes: found by a marker in their environment, which every descendant inherits -----
def _marked(mark: str) -> list[int]:
    """Live (not zombie) processes whose environment carries MARK=mark."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _start_training(directory, tmp_path):
    """`mlc train` for (practically) ever in its own session, with a private TMPDIR; returns
    (process, mark, tmpdir) once the launcher, the fork server, the resource tracker and both
    workers run."""
    mark, tmpdir = uuid.uuid4().hex, tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), MARK: mark}
    process = subprocess.Popen([*MLC, "train", str(directory), "--steps", "100000000"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    if not _wait(lambda: len(_marked(mark)) >= 5 or process.poll() is not None, 90):
        _kill(process, mark)
        pytest.fail("the workers did not start in 90 s")
    assert process.poll() is None, process.communicate()
    time.sleep(1.0)  # let the workers get into their training loop
    return process, mark, tmpdir


def _kill(process, mark) -> None:
    """Test cleanup: whatever is left of this run (only processes we started)."""
    for pid in _marked(mark) + [process.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def _leftovers(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith(("mlc-train-", "pymp-")))


@pytest.mark.slow
def test_kill_9_of_the_launcher_takes_workers_helpers_and_temp_folders_along(chain, tmp_path):
    process, mark, tmpdir = _start_training(chain, tmp_path)
    try:
        assert _leftovers(tmpdir), "the run should have made its temp folders"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert _wait(lambda: not _marked(mark), 10), f"still running: {_marked(mark)}"
        assert _wait(lambda: not _leftovers(tmpdir), 5), _leftovers(tmpdir)
    finally:
        _kill(process, mark)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_is_one_line_no_traceback_and_nothing_left(chain, tmp_path, how):
    process, mark, tmpdir = _start_training(chain, tmp_path)
    try:
        if how == "ctrl-c":  # a terminal sends SIGINT to the whole foreground group
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        stderr = stderr.decode()
        lines = [line for line in stderr.splitlines() if line.strip()]  # click ends ^C's line
        assert process.returncode == (130 if how == "ctrl-c" else 143), stderr
        assert lines[0].startswith("mlc: training") and len(lines) == 2, stderr
        assert lines[1] == ("mlc: interrupted (nothing was written)" if how == "ctrl-c" else
                            "mlc: terminated (workers stopped, nothing was written)")
        assert _wait(lambda: not _marked(mark), 10), f"still running: {_marked(mark)}"
        assert not _leftovers(tmpdir)
    finally:
        _kill(process, mark)


def test_next_run_sweeps_the_folders_of_a_killed_launcher(tmp_path):
    """A launcher killed before its workers started: its folders carry an owner record, and
    the next run removes them (and nothing that is not ours, or whose owner still runs)."""
    from mlc.runtime.pipeline.lifeline import record_owner, sweep_stale_runs

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, stale_mp = tmp_path / "mlc-train-stale", tmp_path / "pymp-stale"
    alive, other = tmp_path / "mlc-train-alive", tmp_path / "pymp-not-listed"
    for folder in (stale, stale_mp, alive, other):
        folder.mkdir()
    (stale / "launcher.json").write_text(json.dumps(
        {"pid": dead.pid, "start_time": None, "paths": [str(stale_mp), "/etc"]}))
    record_owner(str(alive), [str(other)])  # this process: alive
    removed = sweep_stale_runs(str(tmp_path))
    assert sorted(removed) == sorted([str(stale_mp), str(stale)])
    assert alive.exists() and other.exists() and Path("/etc").exists()


# ---- options: every number checked by click (exit 2) before anything starts -----------------
@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "'nan' is not a finite number"),
    (["--lr", "inf"], "'inf' is not a finite number"),
    (["--lr", "-0.1"], "x>0"),
    (["--lr", "0"], "x>0"),
    (["--steps", "0"], "1<=x<="),
    (["--steps", "-3"], "1<=x<="),
    (["--steps", "1e3"], "not a valid integer"),
    (["--seed", "-1"], "0<=x<="),
    (["--timeout", "nan"], "not a finite number"),
    (["--timeout", "0"], "0<x<="),
    (["--timeout", "1e300"], "x<=604800"),
    (["--optimizer", "lbfgs"], "'lbfgs' is not one of"),
])
def test_bad_options_are_usage_errors(chain, args, message):
    result = run_cli("train", chain, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_diverging_training_is_an_error_not_a_nan_result(chain):
    result = run_cli("train", chain, "--steps", "3", "--lr", "1e30", "--timeout", "60")
    assert result.returncode == 1, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged at step ") and "lower --lr" in line
    assert "nan" not in result.stdout


def test_failed_check_is_a_verdict_exit_3(chain, monkeypatch):
    import mlc.runtime.pipeline as pipeline

    report = {"planner": "graph_pipeline", "stages": 2, "processes": 2, "batch": 8,
              "micro_batch": 2, "losses": [1.0], "median_step_seconds": 0.01,
              "samples_per_second": 800.0,
              "check": {"ok": False, "loss_rel_error": 0.5, "max_grad_rel_error": 0.5,
                        "tolerance": 1e-5}}
    monkeypatch.setattr(pipeline, "train", lambda config: report)
    result = run_cli("train", chain, "--check")
    assert result.returncode == EXIT_VERDICT and "check: FAIL" in result.stdout


# ---- the folder and its plan.json: tampered files are one-line errors -------------------------
def _tampered(tmp_path, change) -> Path:
    directory = write_artifact(tmp_path / "plan", branchy_graph(), CHAIN_STAGES, CHAIN_EDGES)
    plan = json.loads((directory / "plan.json").read_text())
    text = change(plan)
    (directory / "plan.json").write_text(text if isinstance(text, str) else json.dumps(plan))
    return directory


def _set(key, value):
    return lambda plan: plan.__setitem__(key, value)


def _stage_set(key, value):
    return lambda plan: plan["stages"][0].__setitem__(key, value)


@pytest.mark.parametrize("change, message", [
    (_set("batch", -8), "batch: -8 must be at least 1"),
    (_set("batch", 8.5), "batch: expected a whole number"),
    (_set("batch", "8"), "batch: expected a number"),
    (_set("batch", True), "batch: expected a number"),
    (_set("micro_batch", 0), "micro_batch: 0 must be at least 1"),
    (_set("micro_batch", 10**30), "must be at most"),
    (_set("num_micro_batches", 3), "num_micro_batches 3 is not"),
    (lambda plan: plan.pop("stages"), "stages: missing"),
    (_set("stages", {}), "stages: expected a JSON array"),
    (_set("stages", []), "no stages"),
    (_set("stages", [7, 8]), "stages[0]: expected a JSON object"),
    (_stage_set("ops", "mm0"), "stages[0].ops: expected a JSON array"),
    (_stage_set("ops", [1, 2]), "stages[0].ops: expected node names"),
    (_stage_set("devices", [-1]), "stages[0].devices: -1 must be at least 0"),
    (_stage_set("devices", [0.5]), "expected a whole number"),
    (_stage_set("id", None), "stages[0].id: expected a number"),
    (_stage_set("in_flight", 0), "in_flight: 0 must be at least 1"),
    (_set("edges", [[0]]), "edges[0]: expected a pair"),
    (_set("edges", [["0", 1]]), "edges[0]: expected a number"),
    (_set("edges", 5), "edges: expected a JSON array"),
    (_set("schedule", []), "schedule: expected a JSON object"),
    (_set("schedule", {"order": {"0": [1, 2]}}), "tasks must be F<i> or B<i>"),
    (_set("schedule", {"order": {"0": "F0 B0"}}), "schedule.order[0]: expected a JSON array"),
    (_set("devices", -2), "devices: -2 must be at least 1"),
    (_set("kind", "serving-plan"), "not a partition plan"),
    (lambda plan: json.dumps(plan).replace('"batch": 8', '"batch": NaN'), "not valid JSON"),
    (lambda plan: json.dumps(plan).replace('"batch": 8', '"batch": Infinity'), "not valid JSON"),
    (lambda plan: "[" * 100000 + "]" * 100000, "nested too deeply"),
    (lambda plan: "[1, 2]", "not a partition plan"),
    (lambda plan: '{"kind": ', "not valid JSON"),
])
def test_tampered_plan_is_a_one_line_error(tmp_path, change, message):
    directory = _tampered(tmp_path, change)
    result = run_cli("train", directory)
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "plan.json" in line and message in line, line


def test_binary_plan_file_is_a_one_line_error(tmp_path):
    directory = write_artifact(tmp_path / "plan", branchy_graph(), CHAIN_STAGES, CHAIN_EDGES)
    (directory / "plan.json").write_bytes(b"\xff\xfe\x00binary\x80")
    result = run_cli("train", directory)
    assert result.returncode == 1 and "not UTF-8" in result.stderr, result.stderr


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such folder"),
    (lambda d: d.mkdir(), "no graph.json, so not a partition artifact"),
    (lambda d: (d.mkdir(), (d / "graph.json").write_text("{}")), "plan.json: no such file"),
    (lambda d: (d.mkdir(), (d / "plan.json").mkdir(), (d / "graph.json").write_text("{}")),
     "plan.json: no such file"),
])
def test_a_folder_that_is_not_a_partition_artifact(tmp_path, setup, message):
    setup(tmp_path / "d")
    result = run_cli("train", tmp_path / "d")
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_a_quantize_artifact_is_not_a_partition_artifact(tmp_path):
    directory = write_artifact(tmp_path / "plan", branchy_graph(), CHAIN_STAGES, CHAIN_EDGES)
    (directory / "plan.json").unlink()
    result = run_cli("train", directory)
    assert result.returncode == 1 and "not a partition artifact" in result.stderr


# ---- training data: checked before any worker starts ------------------------------------------
def _x(rows=8):
    return np.random.default_rng(0).standard_normal((rows, 16)).astype(np.float32)


@pytest.mark.parametrize("arrays, message", [
    ({}, "missing model input(s) ['x']"),
    ({"x": _x().astype(np.complex64), "targets": np.zeros((8, 4), np.float32)},
     "complex64 is not a real number type"),
    ({"x": np.where(_x() > 1, np.nan, _x()), "targets": np.zeros((8, 4), np.float32)},
     "NaN or infinite"),
    ({"x": _x(), "targets": np.full((8, 4), np.inf, np.float32)}, "NaN or infinite"),
    ({"x": _x(), "targets": np.zeros((8, 3), np.float32)}, "'targets' has shape (8, 3)"),
    ({"x": _x(), "labels": np.full(8, 4)}, "range from 4 to 4; the model has 4 classes"),
    ({"x": _x(), "labels": np.full(8, -1)}, "range from -1 to -1"),
    ({"x": _x(), "labels": np.zeros(8)}, "must be integer class ids"),
    ({"x": _x(0), "targets": np.zeros((0, 4), np.float32)}, "at least one batch"),
    ({"x": np.array(["a"] * 8), "targets": np.zeros((8, 4), np.float32)}, "not a real number"),
])
def test_bad_training_data_is_a_one_line_error(chain, tmp_path, arrays, message):
    np.savez(tmp_path / "data.npz", **arrays)
    result = run_cli("train", chain, "--data", tmp_path / "data.npz")
    assert result.returncode == 1, result.stderr
    assert message in result.stderr.strip().splitlines()[-1], result.stderr


def test_data_that_is_not_an_npz_archive(chain, tmp_path):
    np.save(tmp_path / "data.npy", _x())
    (tmp_path / "junk.npz").write_bytes(b"junk" * 100)
    for name, message in (("data.npy", "it is a .npy file"), ("junk.npz", "not an .npz")):
        result = run_cli("train", chain, "--data", tmp_path / name)
        assert result.returncode == 1 and message in result.stderr, result.stderr
