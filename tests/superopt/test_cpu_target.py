"""`--target cpu`: this host as a spec, candidates ranked by timing their compiled kernels,
artifacts that carry C++ sources, and `mlc run` executing the compiled kernels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.errors import MlcError
from mlc.compiler.superopt.cost import host as host_module
from mlc.compiler.superopt.cost import load_gpu

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="the CPU target needs a C++ compiler")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_host_spec_is_measured_once_and_cached(cache, monkeypatch):
    calls = []
    real = host_module.measure_peaks

    def counted():
        calls.append(1)
        return real()
    monkeypatch.setattr(host_module, "measure_peaks", counted)
    spec = load_gpu("cpu")
    assert spec.name == "cpu" and spec.sm_count >= 1 and spec.fp32_flops > 1e9
    assert spec.dram_bandwidth > 1e8 and spec.smem_per_block > 0
    assert load_gpu("cpu") == spec and len(calls) == 1  # the second load reads the cache


def _fast_host(monkeypatch):
    monkeypatch.setattr(host_module, "measure_peaks", lambda: (2e11, 3e10))


def test_optimize_for_cpu_writes_cpp_and_measures(cache, tmp_path, monkeypatch):
    _fast_host(monkeypatch)
    out = tmp_path / "block_cpu"
    done = run_cli("optimize", "examples/block.onnx", "--out", out, "--target", "cpu",
                   "--budget", "10", "--no-cache")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "cpu" and report["time_source"] == "measured"
    for row in report["kernels"]:
        assert row["measured_us"] > 0 and row["baseline_measured_us"] > 0
        assert row["cost_model_error"] is not None
        if row["verified"]:  # chosen by measurement: never slower than the unfused lowering
            assert row["measured_us"] < row["baseline_measured_us"]
        assert (out / "kernels" / f"{row['kernel']}.cpp").is_file()
        assert not (out / "kernels" / f"{row['kernel']}.cu").exists()
    assert "measured here" in done.stdout


def test_run_executes_compiled_kernels_and_matches_the_interpreter(cache, tmp_path,
                                                                    monkeypatch):
    from mlc.compiler.ir.serialize import load_graph
    from mlc.runtime import fused, random_inputs, run
    _fast_host(monkeypatch)
    out = tmp_path / "block_cpu"
    assert run_cli("optimize", "examples/block.onnx", "--out", out, "--target", "cpu",
                   "--budget", "5", "--no-cache").returncode == 0
    graph = load_graph(out / "graph.json")
    assert any(n.op == "MuGraphCall" for n in graph.nodes)
    feeds = random_inputs(graph, seed=3)
    results = {}
    for mode in ("cpu", "interpret"):
        monkeypatch.setenv("MLC_FUSED", mode)
        fused.reset_paths()
        results[mode] = run(graph, feeds)
        assert set(fused.PATHS) == {fused.CPU if mode == "cpu" else fused.INTERPRET}
    for name, want in results["interpret"].items():
        got = results["cpu"][name]
        assert np.abs(got - want).max() <= 1e-5 * max(np.abs(want).max(), 1e-30)


def test_a_bad_fused_mode_is_refused(monkeypatch):
    from mlc.runtime.fused import fused_mode
    monkeypatch.setenv("MLC_FUSED", "gpu")
    with pytest.raises(MlcError, match="MLC_FUSED"):
        fused_mode()
