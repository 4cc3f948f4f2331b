"""Bad input and faults for `mlc optimize`, `mlc verify` and `mlc compile` (issue 15): options
that would hang or mean nothing, unusable cache folders, hostile µGraph JSON, an edited search
cache, and Ctrl-C during the search. Each ends with its documented exit code and one line on
stderr, writes nothing, and never lies about what was verified."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import refusal_line, run_cli
from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import FloatArith, load_mugraph, mugraph_to_json, run_mugraph
from mlc.compiler.superopt.mugraph.fixtures import load_fixture
from mlc.specs.workloads import get_workload

WORKLOAD = "workload:rmsnorm_matmul:small"


def assert_one_line_error(result, code: int, *needles: str) -> None:
    refusal_line(result, code)
    for needle in needles:
        assert needle in result.stderr, result.stderr


# ---- options -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--budget", "nan"], "--budget"),
    (["--budget", "inf"], "--budget"),
    (["--budget", "-inf"], "--budget"),
    (["--budget", "0"], "--budget"),
    (["--budget", "-1"], "--budget"),
    (["--budget", "1e9"], "--budget"),
    (["--max-block-ops", "-1"], "--max-block-ops"),
    (["--max-block-ops", "0"], "--max-block-ops"),
    (["--max-block-ops", "1000000"], "--max-block-ops"),
    (["--max-kernel-ops", "0"], "--max-kernel-ops"),
    (["--max-kernel-ops", "99"], "--max-kernel-ops"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "1e3"], "--seed"),
])
def test_optimize_refuses_options_that_hang_or_mean_nothing(args, needle, tmp_path):
    result = run_cli("optimize", WORKLOAD, "--out", tmp_path / "out", "--no-cache", *args)
    assert_one_line_error(result, 2, needle)
    assert not (tmp_path / "out").exists()


def test_unknown_target_lists_the_known_ones(tmp_path):
    result = run_cli("optimize", WORKLOAD, "--out", tmp_path / "out", "--target", "tpu9")
    assert_one_line_error(result, 1, "'tpu9'", "h100", "a100-80gb")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["option", "env"])
@pytest.mark.parametrize("make, needle", [
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is not a folder"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "cache", "cannot be created"),
])
def test_a_named_cache_folder_that_cannot_be_used_is_an_error(where, make, needle, tmp_path):
    cache = make(tmp_path)
    args = ["--cache-dir", cache] if where == "option" else []
    env = {**os.environ, "MLC_CACHE_DIR": str(cache)} if where == "env" else None
    result = run_cli("optimize", WORKLOAD, "--out", tmp_path / "out", *args, env=env)
    assert_one_line_error(result, 1, needle, "--cache-dir" if where == "option"
                          else "$MLC_CACHE_DIR", "--no-cache")
    assert not (tmp_path / "out").exists()


def test_an_unusable_default_cache_costs_only_the_cache(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k != "MLC_CACHE_DIR"}
    result = run_cli("optimize", WORKLOAD, "--out", tmp_path / "out", "--budget", "1",
                     "--json", env={**env, "HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "warning: search cache" in result.stderr
    assert "running without a cache" in json.loads(result.stdout)["notes"][0]


@pytest.mark.parametrize("args", [["--trials", "0"], ["--trials", "-2"],
                                  ["--trials", "1000000"], ["--seed", "-1"]])
def test_verify_refuses_bad_trials_and_seeds(args):
    result = run_cli("verify", "fixture:rmsnorm_matmul_small", "--against", WORKLOAD, *args)
    assert_one_line_error(result, 2, args[0])


# ---- µGraph JSON ---------------------------------------------------------------------------

def _block(doc):
    return doc["kernels"][0]["block"]


MUTATIONS = {
    "bool grid": (lambda d: _block(d).update(grid=[True, 1, 1]), "block.grid[0]"),
    "float grid": (lambda d: _block(d).update(grid=[4.0, 1, 1]), "block.grid[0]"),
    "huge grid": (lambda d: _block(d).update(grid=[10**12, 1, 1]), "block.grid[0]"),
    "zero loop": (lambda d: _block(d).update(forloop_range=0), "forloop_range"),
    "string loop": (lambda d: _block(d).update(forloop_range="4"), "forloop_range"),
    "threads": (lambda d: _block(d).update(threads=10**6), "threads"),
    "negative shape": (lambda d: d["inputs"][0].update(shape=[-2, 32]), "inputs[0].shape[0]"),
    "fractional shape": (lambda d: d["inputs"][0].update(shape=[2.5, 32]),
                         "inputs[0].shape[0]"),
    "rank 20": (lambda d: d["inputs"][0].update(shape=[1] * 20), "inputs[0].shape"),
    "dtype": (lambda d: d.update(dtype="int4"), "dtype"),
    "kind": (lambda d: d.update(kind="model"), "kind"),
    "version": (lambda d: d.update(format_version=True), "format_version"),
    "tile op": (lambda d: _block(d)["ops"][0].update(op="system"), "ops[0].op"),
    "kernel op": (lambda d: d["kernels"][0].update(op="Eval"), "kernels[0].op"),
    "attr": (lambda d: _block(d)["ops"][0].update(attrs={"scale": "1); import os; ("}),
             "attrs"),
    "imap": (lambda d: _block(d)["inputs"][0].update(imap=[0, 99, -1]), "imap[1]"),
    "imap rank": (lambda d: _block(d)["inputs"][0].update(imap=[-1, 5, -1]), "imap"),
    "fmap": (lambda d: _block(d)["inputs"][0].update(fmap=-7), "fmap"),
    "omap": (lambda d: _block(d)["outputs"][0].update(omap=[1, -1, 3]), "omap"),
    "source": (lambda d: _block(d)["inputs"][0].update(source=9), "kernel input #9"),
    "inputs type": (lambda d: _block(d)["ops"][0].update(inputs="x"), "ops[0].inputs"),
    "missing": (lambda d: _block(d)["inputs"][1].pop("imap"), "missing field 'imap'"),
    "unknown": (lambda d: _block(d).update(forloop_rang=4), "forloop_rang"),
    "duplicate input": (lambda d: d["inputs"].append(dict(d["inputs"][0])), "listed twice"),
    "duplicate tile": (lambda d: _block(d)["inputs"][1].update(tile="x"), "defined twice"),
    "outputs": (lambda d: d.update(outputs=[None]), "outputs[0]"),
    "not an object": (lambda d: d["kernels"].__setitem__(0, 7), "kernels[0]"),
}


@pytest.fixture(scope="module")
def good_doc():
    return mugraph_to_json(load_fixture("rmsnorm_matmul_small"))


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_compile_refuses_malformed_mugraph_json_naming_the_field(name, good_doc, tmp_path):
    mutate, needle = MUTATIONS[name]
    doc = copy.deepcopy(good_doc)
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    result = run_cli("compile", path, "--out", tmp_path / "out", "--no-nvcc")
    assert_one_line_error(result, 1, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, needle", [
    ('{"a": ' * 500 + "1" + "}" * 500, "nested"),
    ("\xff\xfe\x00garbage", "not UTF-8"),
    ('{"format_version": NaN}', "not a number JSON allows"),
    ("[1, 2", "not valid JSON"),
])
def test_unreadable_mugraph_files_are_one_line_errors(text, needle, tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(text.encode("latin-1"))
    for argv in (["compile", path, "--out", tmp_path / "out", "--no-nvcc"],
                 ["verify", path, "--against", WORKLOAD]):
        assert_one_line_error(run_cli(*argv), 1, needle)
    assert not (tmp_path / "out").exists()


def test_verify_refuses_a_malformed_candidate_and_gives_a_verdict_on_a_wrong_one(good_doc,
                                                                              tmp_path):
    bad = copy.deepcopy(good_doc)
    _block(bad)["grid"] = [True, 1, 1]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = run_cli("verify", tmp_path / "bad.json", "--against", WORKLOAD)
    assert_one_line_error(result, 1, "grid[0]")
    wrong = copy.deepcopy(good_doc)
    for op in _block(wrong)["ops"]:
        op["op"] = "mul" if op["op"] == "div" else op["op"]
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    result = run_cli("verify", tmp_path / "wrong.json", "--against", WORKLOAD)
    assert result.returncode == 3 and "NOT equivalent" in result.stdout, result.stderr


# ---- an edited search cache ----------------------------------------------------------------

def matches_reference(kernel_json: Path) -> bool:
    """The artifact's µGraph against the numpy reference interpreter, in float64."""
    reference = get_workload(WORKLOAD.removeprefix("workload:"))
    graph = load_mugraph(kernel_json)
    rng = np.random.default_rng(11)
    inputs = {name: rng.standard_normal(t.shape) for name, t in reference.inputs.items()}
    want = interpret(reference, inputs, float64=True)
    got = run_mugraph(graph, dict(zip(graph.inputs, inputs.values())), FloatArith(np.float64))
    return all(np.allclose(got[ours], want[theirs], rtol=1e-6, atol=1e-9)
               for ours, theirs in zip(graph.outputs, reference.outputs))


def test_an_edited_checkpoint_never_reaches_the_artifact(tmp_path):
    cache = tmp_path / "cache"

    def optimize(out: str):
        result = run_cli("optimize", WORKLOAD, "--out", tmp_path / out, "--budget", "10",
                         "--cache-dir", cache, "--json")
        assert result.returncode == 0, result.stderr
        (row,) = json.loads(result.stdout)["kernels"]
        return row, json.loads(result.stdout)["notes"]

    first, notes = optimize("first")
    assert first["verification"] == "formal" and not first["cached"] and not notes
    (checkpoint,) = (cache / "symbolic").glob("*.json")
    clean = checkpoint.read_text()
    again, notes = optimize("again")  # untampered: reused, still formal
    assert again["cached"] and again["verification"] == "formal" and not notes
    assert "div" in clean
    checkpoint.write_text(clean.replace('"op": "div"', '"op": "mul"'))
    tampered, notes = optimize("tampered")
    assert not tampered["cached"] and tampered["verification"] == "formal"
    assert any("failed re-verification" in note for note in notes)
    assert matches_reference(tmp_path / "tampered" / "kernels" / "region_0.json")
    assert "failed re-verification" in (tmp_path / "tampered" / "report.md").read_text()


# ---- Ctrl-C --------------------------------------------------------------------------------

def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2,
                    reason="needs Linux /proc and at least two cores (a worker pool)")
def test_ctrl_c_during_the_search_is_one_line_and_exit_130(tmp_path):
    """Ctrl-C at a terminal reaches the whole process group, workers included: they must
    ignore it, the parent ends them and prints one line."""
    mlc = Path(sys.executable).parent / "mlc"
    if not mlc.is_file():
        pytest.skip("the mlc console script is not installed beside this Python")
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "out"
    process = subprocess.Popen(
        [str(mlc), "optimize", "workload:qknorm", "--out", str(out), "--budget", "120",
         "--no-cache"], env={**os.environ, "TMPDIR": str(temp)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 12
        while not _children(process.pid) and time.monotonic() < deadline \
                and process.poll() is None:
            time.sleep(0.05)
        assert _children(process.pid), "the search never started its workers"
        time.sleep(0.5)  # the workers are enumerating now
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "ForkPoolWorker" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == \
        ["mlc: interrupted (nothing was written)"]
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert not list(temp.iterdir())
