"""`mlc quantize` run as a user would: the artifact holds packed low-bit weights, runs with
`mlc run` close to the fp32 model, exports to ONNX that onnxruntime runs identically, and bad
input is a one-line error that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.frontends import load_model
from mlc.compiler.ir.serialize import load_graph
from mlc.compiler.quant.codebook import unpack_indices

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp.onnx"


def mlc(*args):
    return run_cli(*args)


def run_outputs(model, x, tmp_path, name):
    np.savez(tmp_path / f"{name}_in.npz", x=x)
    result = mlc("run", model, "--inputs", tmp_path / f"{name}_in.npz", "--output",
                 tmp_path / f"{name}_out.npz")
    assert result.returncode == 0, result.stderr
    (out,) = np.load(tmp_path / f"{name}_out.npz").values()
    return out


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    out = tmp_path_factory.mktemp("quant") / "q4"
    result = mlc("quantize", MLP, "--gmm", "--bits", "4", "--out", out, "--export-onnx",
                 "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_artifact_stores_packed_indices_and_runs_close_to_fp32(quantized, tmp_path):
    out, report = quantized
    graph = load_graph(out / "graph.json")
    dequant = [n for n in graph.nodes if n.op == "CodebookDequantize"]
    assert {n.outputs[0] for n in dequant} == {"net.0.weight", "net.3.weight", "net.5.weight"}
    original = load_model(str(MLP))
    for node in dequant:
        packed, codebook = (graph.weights[name] for name in node.inputs)
        assert packed.dtype == np.uint8 and codebook.shape == (16,) and codebook[0] == 0.0
        count = original.weights[node.outputs[0]].size
        assert packed.size == (count * 4 + 7) // 8  # 4 bits per weight, nothing else
        assert unpack_indices(packed, 4, count).max() < 16
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    got, want = run_outputs(out, x, tmp_path, "q"), run_outputs(MLP, x, tmp_path, "fp")
    cosine = float(got.ravel() @ want.ravel() / np.linalg.norm(got) / np.linalg.norm(want))
    assert cosine > 0.99
    # report.json holds the fidelity it measured; it must agree with a fresh measurement
    assert report["fidelity"]["gmm"]["output_cosine"] > 0.99


def test_onnx_export_runs_in_onnxruntime_like_mlc_run(quantized, tmp_path):
    out, _ = quantized
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, run_outputs(out, x, tmp_path, "q"), rtol=1e-5, atol=1e-6)


def test_report_has_baselines_and_per_layer_numbers(quantized):
    out, report = quantized
    assert report == json.loads((out / "report.json").read_text())
    assert set(report["fidelity"]) == {"fp32", "gmm", "rtn", "kmeans"}
    assert report["fidelity"]["fp32"]["output_cosine"] == pytest.approx(1.0)
    for row in report["layers"]:
        for method in ("gmm", "rtn", "kmeans"):
            metrics = row[method]
            assert metrics["bits"] == 4 and 0 <= metrics["zero_fraction"] <= 1
            assert 1 < metrics["compression_ratio"] < 8  # 32/4 minus the codebook
            assert metrics["weight_rel_err"] < 0.2
    table = (out / "report.md").read_text()
    assert "| gmm |" in table and "| rtn |" in table and "plots/layer_0.svg" in table
    assert (out / "plots" / "layer_0.svg").read_text().startswith("<svg")


def test_cotuning_with_labelled_data(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "train.npz", x=rng.standard_normal((16, 64)).astype(np.float32),
             labels=rng.integers(0, 10, 16))
    out = tmp_path / "q2"
    result = mlc("quantize", MLP, "--bits", "2", "--data", tmp_path / "train.npz", "--epochs",
                 "2", "--no-baselines", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["loss_history"]) == 2 and set(report["fidelity"]) == {"fp32", "gmm"}
    assert 0 <= report["fidelity"]["gmm"]["accuracy"] <= 1


@pytest.mark.parametrize("args, code, message", [
    (["--bits", "0"], 2, "1<=x<=8"),
    (["--bits", "9"], 2, "1<=x<=8"),
    (["--layer-bits", "net.0*=12"], 2, "between 1 and 8"),
    (["--skip", "*"], 1, "nothing to quantize"),
    (["--distill"], 1, "--distill needs --data"),
    (["--data", "missing.npz"], 1, "missing.npz"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, code, message, tmp_path):
    result = mlc("quantize", MLP, "--out", tmp_path / "x", *args)
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()


def test_data_with_the_wrong_shape_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((8, 63), np.float32), labels=np.zeros(8, int))
    result = mlc("quantize", MLP, "--data", tmp_path / "bad.npz", "--out", tmp_path / "x")
    assert result.returncode == 1 and "per-sample shape (63,)" in result.stderr
    assert not (tmp_path / "x").exists()


def test_a_model_without_weights_to_quantize_is_refused(tmp_path):
    result = mlc("quantize", "workload:rmsnorm_matmul:small", "--out", tmp_path / "x")
    assert result.returncode == 1 and "nothing to quantize" in result.stderr
