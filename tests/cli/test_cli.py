"""The `mlc` command line, run as a user would: exit codes, one-line errors, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mlc.cli.testing import run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mlp.onnx"


def mlc(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


def test_import_then_run_matches_onnxruntime(tmp_path):
    out = tmp_path / "mlp"
    result = mlc("import", EXAMPLE, "--out", out)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"graph.json", "weights.safetensors",
                                               "report.json", "report.md",
                                               ".mlc-artifact.json"}
    report = json.loads((out / "report.json").read_text())
    assert report["format_version"] == 1 and report["stats"]["params"] == 17_485
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    result = mlc("run", out, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz",
                 "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["probs"]["shape"] == [4, 10]
    got = np.load(tmp_path / "o.npz")["probs"]
    want = ort.InferenceSession(str(EXAMPLE)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_inspect_text_and_json():
    result = mlc("inspect", "workload:rmsnorm_matmul")
    assert result.returncode == 0, result.stderr
    assert "MatMul" in result.stdout and "float32[2, 4096]" in result.stdout
    doc = json.loads(mlc("inspect", "workload:rmsnorm_matmul", "--json").stdout)
    assert doc["stats"]["flops"] >= 2 * 2 * 4096 * 6144
    assert doc["types"]["O"]["shape"] == [2, 6144]


def test_run_random_is_deterministic_given_seed():
    a = mlc("run", "workload:lora:small", "--random", "--seed", "3", "--json")
    b = mlc("run", "workload:lora:small", "--random", "--seed", "3", "--json")
    c = mlc("run", "workload:lora:small", "--random", "--seed", "4", "--json")
    assert a.returncode == 0 and a.stdout == b.stdout != c.stdout


@pytest.mark.parametrize("args, message", [
    (["inspect", "missing.onnx"], "missing.onnx: no such file"),
    (["inspect", "weights.pt"], "pickled torch files are refused"),
    (["inspect", "workload:nope"], "unknown workload"),
    (["inspect", EXAMPLE, "--shape", "x=3x64"], "does not fit"),
    (["inspect", EXAMPLE, "--shape", "x=bad"], "expected NAME=DIMS"),
])
def test_user_errors_are_one_line_and_exit_1(args, message):
    result = mlc(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_npz_input_mismatch_is_reported(tmp_path):
    np.savez(tmp_path / "in.npz", x=np.zeros((4, 63), np.float32))
    result = mlc("run", EXAMPLE, "--inputs", tmp_path / "in.npz")
    assert result.returncode == 1 and "input 'x' has shape [4, 63]" in result.stderr
    np.savez(tmp_path / "in2.npz", y=np.zeros((4, 64), np.float32))
    result = mlc("run", EXAMPLE, "--inputs", tmp_path / "in2.npz")
    assert result.returncode == 1 and "missing input 'x'" in result.stderr
    assert "unknown input(s) ['y']" in result.stderr


def test_usage_error_exits_2():
    assert mlc("run", EXAMPLE).returncode == 2


def test_failed_import_leaves_no_artifact(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model at all")
    out = tmp_path / "out"
    result = mlc("import", bad, "--out", out)
    assert result.returncode == 1
    assert list(tmp_path.iterdir()) == [bad]  # no out/, no temp leftovers


def test_debug_shows_traceback():
    result = mlc("--debug", "inspect", "missing.onnx")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_ops_lists_ir_and_onnx_ops():
    doc = json.loads(mlc("ops", "--json").stdout)
    names = {row["name"] for row in doc["ir_ops"]}
    assert {"MatMul", "Conv", "Softmax", "LayerNormalization", "RMSNormalization"} <= names
    assert "Reshape" in doc["onnx_ops"]


def test_artifact_json_matches_schemas(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schemas = Path(__file__).resolve().parents[2] / "specs" / "schemas"
    out = tmp_path / "a"
    assert mlc("import", EXAMPLE, "--out", out).returncode == 0
    for doc, schema in (("graph.json", "graph.schema.json"), ("report.json",
                                                               "report.schema.json")):
        jsonschema.validate(json.loads((out / doc).read_text()),
                            json.loads((schemas / schema).read_text()))


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_mlc_run_on_real_minilm_matches_reference(minilm, tmp_path, fmt):
    import warnings

    import torch
    model, (ids, mask) = minilm
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    path = tmp_path / f"minilm.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(model, (ids, mask), str(path), dynamo=False, opset_version=18,
                              input_names=list(feeds), output_names=["hidden"])
            want = ort.InferenceSession(str(path)).run(None, feeds)[0]
        else:
            torch.export.save(torch.export.export(model, (ids, mask)), str(path))
            with torch.no_grad():
                want = model(ids, mask).numpy()
    np.savez(tmp_path / "in.npz", **feeds)
    result = mlc("run", path, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
    assert result.returncode == 0, result.stderr
    (got,) = np.load(tmp_path / "o.npz").values()
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
