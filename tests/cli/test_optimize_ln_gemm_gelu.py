"""The most common transformer block as users export it: LayerNormalization -> Gemm (transB,
bias) -> GELU spelled with Erf, 16x256 -> 512. `mlc optimize` must canonicalize it into one
region and find a verified fused kernel whose artifact matches onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlc.cli.testing import run_cli


def _model(path, rows=16, width=256, out=512):
    rng = np.random.default_rng(0)
    weights = {"gamma": rng.uniform(0.5, 1.5, width), "beta": rng.standard_normal(width) * 0.1,
               "W": rng.standard_normal((out, width)) / np.sqrt(width),
               "bias": rng.standard_normal(out) * 0.1, "sqrt2": np.array(np.sqrt(2.0)),
               "one": np.array(1.0), "half": np.array(0.5)}
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], axis=-1,
                              epsilon=1e-5),
             helper.make_node("Gemm", ["n", "W", "bias"], ["h"], transB=1),
             helper.make_node("Div", ["h", "sqrt2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["p"]),
             helper.make_node("Mul", ["h", "p"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    graph = helper.make_graph(
        nodes, "ln_gemm_gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                              [rows, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, out])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


@pytest.mark.slow  # a real search, about 10 s
@pytest.mark.parametrize("mode", ["symbolic", "concrete"])
def test_layer_norm_gemm_gelu_fuses_into_one_verified_kernel(tmp_path, mode):
    ort = pytest.importorskip("onnxruntime")
    model = tmp_path / "block.onnx"
    _model(model)
    done = run_cli("optimize", str(model), "--out", str(tmp_path / "out"), "--budget", "20",
                   "--search", mode, "--no-cache")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (kernel,) = report["kernels"]
    assert kernel["verified"] and kernel["speedup"] > 1
    assert report["coverage"]["flops_fraction"] > 0.99
    x = np.random.default_rng(1).standard_normal((16, 256)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    ran = run_cli("run", str(tmp_path / "out"), "--inputs", str(tmp_path / "in.npz"),
                  "--output", str(tmp_path / "y.npz"))
    assert ran.returncode == 0, ran.stderr
    got = np.load(tmp_path / "y.npz")["y"]
    want = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
