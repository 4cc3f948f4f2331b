"""The canonicalization passes on real torch.onnx (torchscript) exports, against onnxruntime:
the exporter's spellings of GELU, gelu_new, SiLU and Linear become the IR's named ops."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from mlc.compiler.frontends import load_model  # noqa: E402
from mlc.compiler.ir import interpret  # noqa: E402
from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes  # noqa: E402


class NewGELU(torch.nn.Module):
    """HF's GPT-2 gelu_new, written as the transformers source writes it."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)
                                           * (x + 0.044715 * torch.pow(x, 3.0))))


class SiluMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = (torch.nn.Linear(8, 16), torch.nn.Linear(8, 16),
                                         torch.nn.Linear(16, 8))

    def forward(self, x):
        gate = self.gate(x)
        return self.down(gate * torch.sigmoid(gate) * self.up(x))


def _mlp(activation):
    return torch.nn.Sequential(torch.nn.Linear(8, 16), activation, torch.nn.Linear(16, 8))


MODELS = [  # (name, module, input shape, ops that must appear, ops that must be gone)
    ("gelu_erf", _mlp(torch.nn.GELU()), (2, 5, 8), {"Gelu"}, {"Erf", "Div"}),
    ("gelu_tanh", _mlp(torch.nn.GELU(approximate="tanh")), (2, 5, 8), {"Gelu"}, {"Tanh", "Pow"}),
    ("gelu_new", _mlp(NewGELU()), (2, 5, 8), {"Gelu"}, {"Tanh", "Pow"}),
    ("linear_2d", _mlp(torch.nn.ReLU()), (5, 8), {"MatMul"}, {"Gemm"}),
    ("silu_mlp", SiluMLP(), (5, 8), {"Silu", "MatMul"}, {"Sigmoid", "Gemm"}),
]


@pytest.mark.parametrize("name, module, shape, present, gone", MODELS, ids=[m[0] for m in MODELS])
def test_canonicalized_export_matches_onnxruntime(tmp_path, name, module, shape, present, gone):
    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    x = 3 * torch.randn(*shape)
    torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    graph = run_passes(load_model(path), OPTIMIZE_PASSES)
    ops = graph.op_counts()
    assert present <= set(ops) and not gone & set(ops), ops
    if name == "gelu_erf":
        assert [n.attrs for n in graph.nodes if n.op == "Gelu"] == [{"approximate": "none"}]
    if name.startswith("gelu_") and name != "gelu_erf":
        assert [n.attrs for n in graph.nodes if n.op == "Gelu"] == [{"approximate": "tanh"}]
    feeds = {"x": x.numpy()}
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = interpret(graph, feeds)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
