"""ONNX frontend: real exports (torch.onnx, both exporters) against onnxruntime, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlc.compiler.errors import MlcError, UnsupportedOpsError
from mlc.compiler.frontends import load_model
from mlc.runtime import run

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


def export(module, args, path, dynamo, names):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, dynamo=dynamo,
                          opset_version=18)
    return path


def rel_err(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def check_against_ort(path, feeds, tol=1e-4):
    graph = load_model(path)
    got = list(run(graph, feeds).values())
    want = ort.InferenceSession(str(path)).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert rel_err(g, w) < tol
    return graph


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_minilm_matches_onnxruntime(minilm, tmp_path, dynamo):
    model, (ids, mask) = minilm
    path = export(model, (ids, mask), tmp_path / "minilm.onnx", dynamo,
                  ["input_ids", "attention_mask"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    graph = check_against_ort(path, feeds)
    assert graph.num_params() > 22_000_000
    ops = graph.op_counts()
    assert ops["MatMul"] + ops.get("Gemm", 0) >= 36 and ops["LayerNormalization"] == 13
    # and against torch eager, the original
    with torch.no_grad():
        eager = model(ids, mask).numpy()
    assert rel_err(next(iter(run(graph, feeds).values())), eager) < 1e-4


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, groups=2)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
        x = torch.nn.functional.avg_pool2d(torch.nn.functional.silu(self.conv2(x)), 2,
                                           ceil_mode=True)
        x = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.log_softmax(self.head(x), dim=-1)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_cnn_matches_onnxruntime(tmp_path, dynamo):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # non-trivial running stats
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 20, 20)
    path = export(model, (x,), tmp_path / "cnn.onnx", dynamo, ["x"])
    graph = check_against_ort(path, {"x": x.numpy()})
    assert "Conv" in graph.op_counts()


def test_dynamic_batch_uses_shape_override(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh()).eval()
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 6),), str(path), input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    graph = load_model(path, {"x": (5, 6)})
    assert graph.inputs["x"].shape == (5, 6)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert rel_err(run(graph, {"x": x})[next(iter(graph.outputs))], want) < 1e-5


def _tiny_model(nodes, initializers=(), inputs=None, opset=18):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_external_data_next_to_model_loads(tmp_path):
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")
    model = _tiny_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w])
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    graph = load_model(tmp_path / "m.onnx")
    np.testing.assert_array_equal(graph.weights["w"], np.arange(12).reshape(3, 4))


def test_external_data_outside_folder_is_refused(tmp_path):
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    model = _tiny_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w])
    (tmp_path / "secret.bin").write_bytes(np.ones(12, np.float32).tobytes())
    w_proto = model.graph.initializer[0]
    w_proto.ClearField("raw_data")
    w_proto.data_location = TensorProto.EXTERNAL
    w_proto.external_data.add(key="location", value="../secret.bin")
    (tmp_path / "sub").mkdir()
    onnx.save(model, str(tmp_path / "sub" / "m.onnx"))
    with pytest.raises(MlcError, match="path traversal"):
        load_model(tmp_path / "sub" / "m.onnx")


def test_unsupported_ops_are_all_listed_with_node_names(tmp_path):
    model = _tiny_model([
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Hardmax", ["a"], ["b"], name="hm1"),
        helper.make_node("NonZero", ["b"], ["c"], name="nz"),
        helper.make_node("Hardmax", ["c"], ["y"], name="hm2"),
    ])
    onnx.save(model, str(tmp_path / "u.onnx"))
    with pytest.raises(UnsupportedOpsError) as info:
        load_model(tmp_path / "u.onnx")
    assert info.value.unsupported == {"Hardmax": ["hm1", "hm2"], "NonZero": ["nz"]}
    assert "u.onnx" in str(info.value)


def test_not_an_onnx_file_and_missing_file(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01this is not protobuf\xff" * 10)
    with pytest.raises(MlcError, match="junk.onnx"):
        load_model(tmp_path / "junk.onnx")
    with pytest.raises(MlcError, match="no such file"):
        load_model(tmp_path / "absent.onnx")


def test_run_time_shape_operand_is_a_clear_error(tmp_path):
    shape_input = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    model = _tiny_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                shape_input])
    onnx.save(model, str(tmp_path / "r.onnx"))
    with pytest.raises(MlcError, match=r"'rs' \(Reshape\): target shape \('s'\) is computed"):
        load_model(tmp_path / "r.onnx")


def test_shape_arithmetic_is_folded_at_import(tmp_path):
    # y = Reshape(x, Concat(Shape(x)[0:1], [-1])) : the whole shape computation folds away
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], start=0, end=1),
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(
            np.array([-1], np.int64))),
        helper.make_node("Concat", ["s", "m1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    model = _tiny_model(nodes, inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [2, 3, 4])])
    onnx.save(model, str(tmp_path / "f.onnx"))
    graph = load_model(tmp_path / "f.onnx")
    assert [n.op for n in graph.nodes] == ["Reshape", "Relu"]
    assert graph.nodes[0].attrs["shape"] == (2, 12)
