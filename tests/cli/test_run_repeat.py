"""`mlc run --repeat N [--warmup W]`: the timing report's fields and ordering, the path it names
for fused regions, outputs identical to an untimed run, and clean refusals of bad counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import refusal_line, run_cli
from mlc.runtime.timing import nearest_rank, summarize, time_calls, time_interleaved

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MLP, BLOCK = EXAMPLES / "mlp.onnx", EXAMPLES / "block.onnx"


@pytest.fixture(scope="module")
def block_artifact(tmp_path_factory):
    """examples/block.onnx optimized (fused regions become MuGraphCall nodes)."""
    out = tmp_path_factory.mktemp("repeat") / "block"
    result = run_cli("optimize", BLOCK, "--out", out, "--budget", "1", "--no-cache")
    assert result.returncode == 0, result.stderr
    graph = json.loads((out / "graph.json").read_text())
    assert any(node["op"] == "MuGraphCall" for node in graph["nodes"])
    return out


def run_outputs(model, tmp_path: Path, *extra) -> tuple[dict, dict[str, np.ndarray]]:
    """`mlc run model --random --json --output ...` plus `extra`: (report, outputs)."""
    saved = tmp_path / f"out{len(list(tmp_path.iterdir()))}.npz"
    result = run_cli("run", model, "--random", "--seed", "1", "--json", "--output", saved,
                     *extra)
    assert result.returncode == 0, result.stderr
    with np.load(saved) as arrays:
        return json.loads(result.stdout), dict(arrays)


def check_timing(report: dict, repeat: int, warmup: int, path: str) -> None:
    latency = report["latency_ms"]
    assert set(latency) == {"min", "median", "p90"}
    assert 0 < latency["min"] <= latency["median"] <= latency["p90"]
    assert (report["repeat"], report["warmup"], report["path"]) == (repeat, warmup, path)


@pytest.mark.parametrize("executor", ["torch", "reference"])
def test_repeat_on_plain_model_reports_latency_and_same_outputs(tmp_path, executor):
    plain, want = run_outputs(MLP, tmp_path, "--executor", executor)
    timed, got = run_outputs(MLP, tmp_path, "--executor", executor, "--repeat", "3")
    assert "latency_ms" not in plain
    check_timing(timed, 3, 3, "none")  # warm-up defaults to min(10, N)
    assert timed["outputs"] == plain["outputs"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


COMPILED = "cpu-kernels" if shutil.which("g++") or shutil.which("c++") else "torch-interpreted"


@pytest.mark.parametrize("executor, fused, path", [
    ("torch", "auto", COMPILED), ("torch", "interpret", "torch-interpreted"),
    ("reference", "auto", "reference-interpreted")])
def test_repeat_on_optimized_artifact_names_fused_path(block_artifact, tmp_path, monkeypatch,
                                                       executor, fused, path):
    monkeypatch.setenv("MLC_FUSED", fused)
    _, want = run_outputs(block_artifact, tmp_path, "--executor", executor)
    timed, got = run_outputs(block_artifact, tmp_path, "--executor", executor,
                             "--repeat", "3", "--warmup", "1")
    check_timing(timed, 3, 1, path)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_text_output_has_one_latency_line():
    result = run_cli("run", MLP, "--random", "--repeat", "2", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("latency over 2 calls (after 0 warm-up): min ")
    assert "fused regions: none" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("probs: float32[4, 10]")


@pytest.mark.parametrize("args, names", [
    (["--repeat", "0"], "--repeat"),
    (["--repeat", "-1"], "--repeat"),
    (["--repeat", "x"], "--repeat"),
    (["--repeat", "2", "--warmup", "-1"], "--warmup"),
    (["--warmup", "2"], "--warmup needs --repeat"),
])
def test_bad_counts_are_usage_errors(args, names):
    line = refusal_line(run_cli("run", MLP, "--random", *args), 2)
    assert names in line


def test_nearest_rank_against_definition():
    samples = [7.0, 1.0, 9.0, 3.0, 5.0, 2.0, 8.0, 4.0, 6.0, 10.0, 11.0]
    for percent in (1, 10, 50, 90, 99, 100):
        got = nearest_rank(samples, percent)
        # smallest sample with at least percent% of samples at or below it
        want = min(s for s in samples if sum(x <= s for x in samples) >= percent / 100 * 11)
        assert got == want
    assert nearest_rank([4.0], 90) == 4.0
    with pytest.raises(ValueError):
        nearest_rank([], 90)


def test_summarize_and_time_calls_count_calls():
    calls = []
    seconds = time_calls(lambda: calls.append(1), repeat=4, warmup=2)
    assert len(seconds) == 4 and len(calls) == 6 and all(s >= 0 for s in seconds)
    latency = summarize([0.004, 0.001, 0.002, 0.003])
    assert (latency.min, latency.median, latency.p90) == pytest.approx((1.0, 2.5, 4.0))


def test_time_interleaved_runs_round_robin_and_stops_on_time():
    order = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    times = time_interleaved(calls, repeat=3, warmup=1)
    assert order == ["a", "b"] * 4 and [len(t) for t in times.values()] == [3, 3]
    times = time_interleaved(calls, repeat=1000, warmup=0, max_seconds=0.0, min_repeat=2)
    assert [len(t) for t in times.values()] == [2, 2]


def test_repeat_on_compiled_artifact_names_triton_path(tmp_path):
    out = tmp_path / "rms"
    result = run_cli("compile", "fixture:rmsnorm_matmul_small", "--out", out, "--no-nvcc")
    assert result.returncode == 0, result.stderr
    _, want = run_outputs(out, tmp_path)
    timed, got = run_outputs(out, tmp_path, "--repeat", "2", "--warmup", "0")
    import torch
    check_timing(timed, 2, 0, "triton-kernels" if torch.cuda.is_available()
                 else "triton-interpreted")
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
