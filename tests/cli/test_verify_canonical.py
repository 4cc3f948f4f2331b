"""`mlc verify --against model.onnx` canonicalizes the reference as `mlc optimize` does: a
gated MLP whose SiLU is spelled Sigmoid + Mul verifies against the Silu µGraph fixture."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from mlc.cli.testing import run_cli

M, D = 4, 32  # workload gated_mlp:small, the shapes of fixture:gated_mlp_small


def _gated_mlp_onnx(path) -> None:
    """O = (X @ W1) * sigmoid(X @ W1) * (X @ W2), inputs named as the workload names them."""
    value = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["X", "W1"], ["h"]),
             helper.make_node("Sigmoid", ["h"], ["s"]),
             helper.make_node("Mul", ["h", "s"], ["gate"]),
             helper.make_node("MatMul", ["X", "W2"], ["up"]),
             helper.make_node("Mul", ["gate", "up"], ["O"])]
    graph = helper.make_graph(nodes, "gated_mlp", [value("X", [M, D]), value("W1", [D, D]),
                                                   value("W2", [D, D])], [value("O", [M, D])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_verify_accepts_the_fixture_against_a_sigmoid_mul_onnx(tmp_path):
    path = tmp_path / "gated_mlp.onnx"
    _gated_mlp_onnx(path)
    result = run_cli("verify", "fixture:gated_mlp_small", "--against", path, "--trials", "4")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "equivalent" in result.stdout and "NOT" not in result.stdout


def test_verify_rejects_a_wrong_candidate_against_the_same_onnx(tmp_path):
    path = tmp_path / "gated_mlp.onnx"
    _gated_mlp_onnx(path)
    wrong = "specs/mugraphs/wrong/gated_mlp_small.json"
    result = run_cli("verify", wrong, "--against", path, "--trials", "4")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "NOT equivalent" in result.stdout
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
