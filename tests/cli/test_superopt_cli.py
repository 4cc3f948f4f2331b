"""`mlc compile`, `mlc verify` and `mlc run` on compiled artifacts, run as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.ir import interpret
from mlc.specs.workloads import get_workload

MIRAGE = Path(__file__).resolve().parents[3] / "shared" / "data" / "mirage-mugraphs"
WRONG = Path(__file__).resolve().parents[2] / "specs" / "mugraphs" / "wrong"


def mlc(*args):
    return run_cli(*args)


def mlc_process(*args):
    """A fresh process: running Triton kernels needs TRITON_INTERPRET set before triton loads."""
    return subprocess.run([sys.executable, "-m", "mlc.cli.main", *map(str, args)],
                          capture_output=True, text=True)


def test_compile_then_run_matches_the_workload(tmp_path):
    out = tmp_path / "rms"
    result = mlc("compile", "fixture:rmsnorm_matmul_small", "--out", out, "--target", "h100")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (out / "kernels").iterdir()} >= {"mugraph.py", "mugraph.cu",
                                                              "mugraph.json"}
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "h100" and report["time_source"] == "estimated"
    assert report["est_time_us"] > 0 and report["kernels"][0]["kind"] == "block"
    if shutil.which("nvcc"):
        assert report["nvcc"]["status"] == "ok"
    workload = get_workload("rmsnorm_matmul:small")
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(t.shape).astype(np.float32)
             for n, t in workload.inputs.items()}
    np.savez(tmp_path / "in.npz", **feeds)
    result = mlc_process("run", out, "--inputs", tmp_path / "in.npz", "--output",
                         tmp_path / "o.npz")
    assert result.returncode == 0, result.stderr
    (got,) = np.load(tmp_path / "o.npz").values()
    (want,) = interpret(workload, feeds, float64=True).values()
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
    # the compiled artifact verifies against the model it implements
    result = mlc("verify", out, "--against", "workload:rmsnorm_matmul:small")
    assert result.returncode == 0 and "equivalent" in result.stdout


def test_verify_rejects_a_wrong_mugraph_with_exit_3():
    result = mlc("verify", WRONG / "gated_mlp_small.json", "--against",
                 "workload:gated_mlp:small", "--json")
    assert result.returncode == 3  # a negative verdict, not bad input
    (row,) = json.loads(result.stdout)
    assert row["equivalent"] is False and row["output"] == "O"


@pytest.mark.skipif(not MIRAGE.is_dir(), reason="../shared/data/mirage-mugraphs is absent")
def test_verify_every_candidate_of_a_mirage_checkpoint():
    result = mlc("verify", MIRAGE / "lora.json", "--against", "workload:lora", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and all(r["equivalent"] for r in rows)


@pytest.mark.parametrize("args, message", [
    (["compile", "nope.json", "--out", "x"], "nope.json: no such file"),
    (["compile", "fixture:nope", "--out", "x"], "unknown fixture"),
    (["compile", "fixture:rmsnorm_matmul", "--out", "x", "--target", "abacus"], "abacus"),
    (["verify", "fixture:gqa_small", "--against", "workload:lora:small"], "input"),
])
def test_superopt_user_errors_are_one_line(args, message, tmp_path):
    result = mlc(*args)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compile_refuses_malformed_and_oversized_mugraphs(tmp_path):
    doc = json.loads((WRONG.parent / "rmsnorm_matmul.json").read_text())
    del doc["kernels"][0]["block"]["inputs"][0]["imap"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    result = mlc("compile", tmp_path / "bad.json", "--out", tmp_path / "o")
    assert result.returncode == 1 and "missing field 'imap'" in result.stderr
    doc = json.loads((WRONG.parent / "rmsnorm_matmul.json").read_text())
    doc["kernels"][0]["block"]["grid"] = [1, 1, 1]
    doc["kernels"][0]["block"]["forloop_range"] = 1
    (tmp_path / "big.json").write_text(json.dumps(doc))
    result = mlc("compile", tmp_path / "big.json", "--out", tmp_path / "o")
    assert result.returncode == 1 and "shared memory" in result.stderr
    assert not (tmp_path / "o").exists()
