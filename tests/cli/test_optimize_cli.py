"""`mlc optimize` end to end, run as a user would: the artifact runs with `mlc run` and matches
the original model, the report has its fields, the cache makes a rerun instant, an exhausted
budget still writes a valid artifact, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

BLOCK = Path(__file__).resolve().parents[2] / "examples" / "block.onnx"
ROW_FIELDS = {"kernel", "region", "instances", "verified", "est_time_us",
              "baseline_est_time_us", "candidates", "search_seconds", "budget_exhausted",
              "cached", "search", "verification"}


def mlc(*args, cache: Path, **kwargs):
    env = {**os.environ, "MLC_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "mlc.cli.main", *map(str, args)],
                          capture_output=True, text=True, env=env, **kwargs)


def onnxruntime_outputs(feeds):
    session = ort.InferenceSession(str(BLOCK), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def run_artifact(out: Path, feeds: dict, tmp_path: Path, cache: Path) -> np.ndarray:
    np.savez(tmp_path / "in.npz", **feeds)
    result = mlc("run", out, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz",
                 cache=cache)
    assert result.returncode == 0, result.stderr
    (got,) = np.load(tmp_path / "o.npz").values()
    return got


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    """examples/block.onnx optimized once (the demo's model), with its own cache."""
    root = tmp_path_factory.mktemp("optimize")
    out, cache = root / "block", root / "cache"
    result = mlc("optimize", BLOCK, "--out", out, "--budget", "60", "--json", cache=cache)
    assert result.returncode == 0, result.stderr
    return out, cache, json.loads(result.stdout)


def test_artifact_runs_and_matches_onnxruntime(optimized, tmp_path):
    out, cache, _ = optimized
    graph = json.loads((out / "graph.json").read_text())
    assert any(node["op"] == "MuGraphCall" for node in graph["nodes"])
    feeds = {"x": np.random.default_rng(3).standard_normal((16, 64)).astype(np.float32)}
    got = run_artifact(out, feeds, tmp_path, cache)
    (want,) = onnxruntime_outputs(feeds)
    assert np.abs(got - want).max() < 1e-5


def test_report_lists_every_fused_kernel(optimized):
    out, _, printed = optimized
    report = json.loads((out / "report.json").read_text())
    assert report == printed and report["command"] == "optimize"
    assert report["search_seconds"] > 0 and report["target"] == "h100"
    rows = report["kernels"]
    assert len(rows) == 4  # rms_norm+matmul, gated MLP, out-projection+residual, head+softmax
    for row in rows:
        assert ROW_FIELDS <= set(row)
        assert row["est_time_us"] <= row["baseline_est_time_us"]
        assert set(row["candidates"]) == {"enumerated", "pruned", "verified"}
        assert row["search"] == "symbolic"  # the default
        if row["verified"]:
            assert row["candidates"]["verified"] >= 1
            assert row["est_time_us"] < row["baseline_est_time_us"]
            assert row["verification"] in ("formal", "probabilistic")
        else:
            assert row["verification"] == "none"
        for suffix in (".json", ".py", ".cu", ".svg"):
            assert (out / "kernels" / f"{row['kernel']}{suffix}").is_file()
    assert sum(row["verified"] for row in rows) >= 3
    table = (out / "report.md").read_text()
    assert all(f"| {row['kernel']} |" in table for row in rows)
    assert "kernels/region_0.svg" in table


def test_rerun_reads_the_cache(optimized, tmp_path):
    out, cache, first = optimized
    result = mlc("optimize", BLOCK, "--out", tmp_path / "again", "--budget", "60", "--json",
                 cache=cache)
    assert result.returncode == 0, result.stderr
    second = json.loads(result.stdout)
    assert all(row["cached"] for row in second["kernels"])  # nothing was searched again
    assert [r["est_time_us"] for r in second["kernels"]] == \
        [r["est_time_us"] for r in first["kernels"]]
    assert (tmp_path / "again" / "graph.json").read_text() == (out / "graph.json").read_text()


@pytest.mark.parametrize("mode, check", [("symbolic", "formal"),
                                         ("concrete", "probabilistic")])
def test_search_mode_and_its_check_are_reported(mode, check, tmp_path):
    from mlc.cli.testing import run_cli
    out = tmp_path / mode
    result = run_cli("optimize", "workload:prism_rms_norm:small", "--out", out, "--budget",
                     "20", "--search", mode, "--no-cache", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["kernels"]
    assert row["search"] == mode and row["verified"] and row["verification"] == check
    assert f"| {mode} | {check} |" in (out / "report.md").read_text()


def test_exhausted_budget_still_writes_a_runnable_artifact(tmp_path):
    out = tmp_path / "tiny"
    result = mlc("optimize", BLOCK, "--out", out, "--budget", "0.2", "--json",
                 cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert any(row["budget_exhausted"] for row in report["kernels"])
    feeds = {"x": np.random.default_rng(4).standard_normal((16, 64)).astype(np.float32)}
    got = run_artifact(out, feeds, tmp_path, tmp_path / "cache")
    (want,) = onnxruntime_outputs(feeds)
    assert np.abs(got - want).max() < 1e-5


def test_interrupt_leaves_no_partial_artifact(tmp_path):
    out = tmp_path / "stopped"
    env = {**os.environ, "MLC_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlc.cli.main", "optimize", "workload:qknorm", "--out", str(out),
         "--budget", "120", "--no-cache"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # well into the search (qknorm searches for much longer)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".stopped", "stopped"))]


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "--budget"),
    (["--target", "tpu9"], "tpu9"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path):
    result = mlc("optimize", BLOCK, "--out", tmp_path / "x", *args, cache=tmp_path / "c")
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()
