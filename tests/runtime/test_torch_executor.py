"""The torch executor against the numpy reference: ONNX backend cases, every op, autograd,
MiniLM, and `mlc run --executor`."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.frontends.onnx_conformance import case_key, collect_cases, import_case
from mlc.compiler.ir.ops import OPS
from mlc.compiler.ir.serialize import save_graph
from mlc.compiler.ir.types import dtype_name, is_float
from mlc.runtime import random_inputs, run
from mlc.runtime.torch_executor import TorchGraphModule, unsupported_dtypes
from mlc.runtime.torch_ops import TORCH_OPS


# ---- ONNX backend node cases through both executors --------------------------------------------
def _close(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> bool:
    if got.shape != want.shape:
        return False
    if is_float(dtype_name(want.dtype)) or is_float(dtype_name(got.dtype)):
        with np.errstate(invalid="ignore"):
            return np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                               atol=atol, equal_nan=True)
    return np.array_equal(got, want)


def _case_results(case) -> dict[str, str]:
    """Per executor: "" when every data set matches the expected outputs, else the reason;
    "fallback" is non-empty when the graph holds a dtype torch lacks (run() used numpy)."""
    import onnx
    from onnx import numpy_helper

    def array(value):
        return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value

    initializers = {t.name for t in case.model.graph.initializer}
    names = [i.name for i in case.model.graph.input if i.name not in initializers]
    reasons = {"reference": "", "torch": ""}
    fallback = ""
    for inputs, expected in case.data_sets:
        feeds = {k: np.asarray(array(v)) for k, v in zip(names, inputs)}
        try:
            graph, frozen = import_case(case.model, case.name, feeds)
        except Exception as err:  # the importer rejects it: neither executor runs it
            return {"reference": f"import: {type(err).__name__}",
                    "torch": f"import: {type(err).__name__}", "fallback": ""}
        feeds = {k: v for k, v in feeds.items() if k not in frozen}
        fallback = fallback or ",".join(sorted(unsupported_dtypes(graph)))
        for executor in reasons:
            if reasons[executor]:
                continue
            try:
                with np.errstate(all="ignore"):
                    outputs = run(graph, feeds, executor=executor)
            except Exception as err:
                reasons[executor] = f"crash: {type(err).__name__}: {str(err)[:120]}"
                continue
            for got, want in zip(outputs.values(), expected):
                if not _close(np.asarray(got), np.asarray(array(want)),
                              max(case.rtol, 1e-4), max(case.atol, 1e-6)):
                    reasons[executor] = "mismatch"
    return {**reasons, "fallback": fallback}


def test_backend_node_cases_torch_matches_reference():
    logging.getLogger("mlc").setLevel(logging.ERROR)  # old-opset and fallback notes
    passed = {"reference": set(), "torch": set()}
    torch_failures, fallbacks = {}, set()
    for case in collect_cases():
        if case_key(case) is None:
            continue
        results = _case_results(case)
        for executor in passed:
            if not results[executor]:
                passed[executor].add(case.name)
        if results["torch"] and not results["reference"]:
            torch_failures[case.name] = results["torch"]
        if results["fallback"]:
            fallbacks.add(case.name)
    assert len(passed["reference"]) > 1000  # the suite really ran
    assert not torch_failures, (
        f"torch passes {len(passed['torch'])}, reference {len(passed['reference'])}; "
        f"torch fails where the reference passes: {torch_failures}")
    assert len(passed["torch"]) >= len(passed["reference"])
    # only sub-byte dtypes (int4, float4, ...) may fall back to the reference
    assert len(passed["torch"] - fallbacks) > 1000, sorted(fallbacks)


# ---- every op has a torch function --------------------------------------------------------------
@pytest.mark.parametrize("op_name", sorted(OPS))
def test_every_op_has_a_torch_function(op_name):
    assert callable(TORCH_OPS.get(op_name)), f"TORCH_OPS lacks {op_name}"


def test_torch_ops_has_no_unknown_ops():
    assert set(TORCH_OPS) <= set(OPS)


# ---- autograd -----------------------------------------------------------------------------------
def _mlp_graph():
    generator = np.random.default_rng(0)
    b = GraphBuilder("mlp")

    class rng:  # float32 weights, like an imported model
        @staticmethod
        def standard_normal(shape):
            return generator.standard_normal(shape).astype(np.float32)

    x = b.input("x", (3, 5))
    h = b.op("Gemm", x, b.weight("fc1.weight", rng.standard_normal((4, 5)) * 0.5),
             b.weight("fc1.bias", rng.standard_normal(4) * 0.1), transB=1)
    h = b.op("LayerNormalization", h, b.weight("ln.scale", 1 + 0.1 * rng.standard_normal(4)),
             b.weight("ln.bias", 0.1 * rng.standard_normal(4)))
    h = b.op("Gelu", h)
    logits = b.op("Gemm", h, b.weight("fc2/weight", rng.standard_normal((4, 3)) * 0.5))
    return b.build(b.op("Softmax", logits, axis=-1))


def test_gradients_match_finite_differences():
    graph = _mlp_graph()
    module = TorchGraphModule(graph, float64=True)
    weights = module.weight_tensors()
    assert set(weights) == set(graph.weights)
    assert all(isinstance(w, torch.nn.Parameter) for w in weights.values())
    assert all(w.dtype == torch.float64 for w in module.parameters())
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 5)))
    target = torch.tensor([0, 2, 1])
    names = list(weights)

    def loss(*params):
        out = torch.func.functional_call(
            module, {module.weight_names[n]: p for n, p in zip(names, params)}, (x,))
        probs = next(iter(out.values()))
        return -probs[torch.arange(3), target].log().mean()

    params = tuple(weights[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-6)


def test_module_forward_by_position_and_name():
    graph = _mlp_graph()
    module = TorchGraphModule(graph)
    x = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
    by_name = module(x=torch.from_numpy(x))
    by_position = module(torch.from_numpy(x))
    want = run(graph, {"x": x}, executor="reference")
    for name in graph.outputs:
        torch.testing.assert_close(by_name[name], by_position[name])
        np.testing.assert_allclose(by_name[name].detach().numpy(), want[name], rtol=1e-5,
                                   atol=1e-6)
    with pytest.raises(TypeError, match="missing inputs"):
        module()


def test_low_bit_dtypes_fall_back_to_reference(caplog):
    b = GraphBuilder("int4")
    y = b.op("Cast", b.op("Cast", b.input("x", (4,)), to="int4"), to="float32")
    graph = b.build(y)
    assert unsupported_dtypes(graph) == {"int4"}
    with pytest.raises(TypeError, match="int4"):
        TorchGraphModule(graph)
    x = np.array([-3.0, 0.0, 2.0, 7.0], np.float32)
    with caplog.at_level(logging.WARNING, logger="mlc"):
        out = run(graph, {"x": x})
    assert "reference executor" in caplog.text
    np.testing.assert_array_equal(out[y], x)


# ---- MiniLM -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_torch_matches_reference(minilm, tmp_path):
    from mlc.compiler.frontends import load_model

    module, (ids, mask) = minilm
    path = tmp_path / "minilm.onnx"
    torch.onnx.export(module, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], opset_version=18, dynamo=False)
    graph = load_model(path)
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    got = run(graph, feeds, executor="torch")["last_hidden_state"]
    want = run(graph, feeds, executor="reference")["last_hidden_state"]
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# ---- CLI ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--executor", "reference"], ["--executor", "torch"]])
def test_cli_run_executor(tmp_path, extra):
    graph = _mlp_graph()
    graph_dir = tmp_path / "mlp"
    graph_dir.mkdir()
    save_graph(graph, graph_dir)
    out = tmp_path / "out.npz"
    cmd = [sys.executable, "-m", "mlc.cli.main", "run", str(graph_dir), "--random",
           "--output", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    with np.load(out) as data:
        got = data[graph.outputs[0]]
    want = run(graph, random_inputs(graph, 0), executor="reference")[graph.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ---- edge cases the reference handles, one single-op graph each ---------------------------------
_RNG = np.random.default_rng(0)
_F = _RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
_I = np.array([[-7, 7, -8, 9], [0, 5, -3, 2]], np.int32)
_J = np.array([[2, -2, 3, 0], [-4, 0, 2, -3]], np.int32)
_SPECIAL = np.array([-1e6, -500.0, -3.5, -0.0, 0.0, 0.3, 460.0, 470.0, 1e6, np.inf, -np.inf,
                     np.nan], np.float32)
EDGE_CASES = [
    ("Div", [_I, _J], {}), ("Mod", [_I, _J], {}), ("Mod", [_I, _J], {"fmod": 1}),
    ("Mod", [_F[0, 0], _F[0, 1] + 0.1], {}), ("Mod", [_F[0, 0], _F[0, 1]], {"fmod": 1}),
    ("Pow", [_I, np.abs(_J)], {}), ("Pow", [np.abs(_I), _F[0, 0, :2, :4]], {}),
    ("Pow", [_F[0, 0], np.arange(6, dtype=np.int64)], {}),
    ("Add", [np.array([1, 4294967295], np.uint32), np.array([3, 2], np.uint32)], {}),
    ("Sub", [np.array([1, 7], np.uint32), np.array([3, 2], np.uint32)], {}),
    ("Mul", [np.array([2**40, 3], np.uint64), np.array([2**30, 5], np.uint64)], {}),
    ("Less", [np.array([1, 60000], np.uint16), np.array([3, 2], np.uint16)], {}),
    ("Clip", [_I], {"min": 3, "max": -2}), ("Clip", [_F], {"min": -0.5}),
    ("IsInf", [_SPECIAL], {"detect_negative": 0}), ("IsInf", [_SPECIAL], {"detect_positive": 0}),
    ("ReduceSumSquare", [_F], {"axes": ()}), ("ReduceL2", [_F], {"axes": (), "keepdims": 0}),
    ("ReduceLogSumExp", [_F], {"axes": None, "keepdims": 0}),
    ("ReduceLogSumExp", [_F], {"axes": (1, -1)}),
    ("ReduceMax", [np.zeros((2, 0, 3), np.float32)], {"axes": (1,)}),
    ("ReduceMin", [np.zeros((2, 0, 3), np.int32)], {"axes": (1,), "keepdims": 0}),
    ("ReduceSum", [np.zeros((2, 0, 3), np.float32)], {"axes": (1,)}),
    ("ReduceProd", [_F], {"axes": (0, 2), "keepdims": 0}), ("ReduceMean", [_I], {"axes": (1,)}),
    ("ArgMax", [np.array([[1, 3, 3], [2, 2, 0]], np.float32)], {"axis": 1,
                                                                "select_last_index": 1}),
    ("ArgMin", [np.array([[1, 0, 0], [2, 2, 0]], np.int64)], {"axis": -1, "keepdims": 0}),
    ("Conv", [_F, _RNG.standard_normal((6, 1, 2, 3)).astype(np.float32)],
     {"strides": (2, 1), "pads": (1, 0, 0, 2), "dilations": (1, 2), "group": 3}),
    ("Conv", [_I.reshape(1, 2, 4), np.ones((3, 2, 2), np.int32)],
     {"strides": (1,), "pads": (1, 0), "dilations": (2,)}),
    ("Conv", [_F[:1, :2, :3, :4].reshape(1, 2, 3, 2, 2), np.ones((2, 2, 2, 1, 2), np.float32)],
     {"strides": (1, 1, 1), "pads": (0, 1, 0, 1, 0, 1), "dilations": (1, 1, 1)}),
    ("MaxPool", [_F], {"kernel_shape": (2, 3), "strides": (2, 2), "pads": (0, 1, 1, 0),
                       "dilations": (1, 1), "ceil_mode": 1}),
    ("MaxPool", [(_F * 10).astype(np.int8)], {"kernel_shape": (3, 2), "strides": (2, 2),
                                              "pads": (1, 0, 1, 1), "dilations": (1, 2),
                                              "ceil_mode": 1}),
    ("AveragePool", [_F], {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 0, 1, 2),
                           "dilations": (1, 1), "ceil_mode": 1, "count_include_pad": 1}),
    ("AveragePool", [_F], {"kernel_shape": (2, 2), "strides": (2, 3), "pads": (1, 1, 0, 0),
                           "dilations": (2, 1), "ceil_mode": 1}),
    ("Gather", [_F[0, 0], np.array([[-1, 0], [2, -3]], np.int64)], {"axis": 0}),
    ("GatherElements", [_F[0, 0], np.array([[-1, 0, 2]] * 5, np.int32)], {"axis": 1}),
    ("GatherND", [_F[0], np.array([[[1, -1]], [[0, 2]], [[-2, 0]]], np.int64)],
     {"batch_dims": 1}),
    ("Slice", [_F], {"starts": (-1, 4), "ends": (-100, 0), "axes": (2, 3), "steps": (-2, -3)}),
    ("Slice", [_F], {"starts": (1,), "ends": (2**62,), "axes": (-1,), "steps": (2,)}),
    ("Pad", [_F[0, 0]], {"pads": (7, -1, 2, 9), "mode": "reflect"}),
    ("Pad", [_F[0, 0]], {"pads": (2, 0, 0, 8), "mode": "wrap"}),
    ("Pad", [_F[0, 0]], {"pads": (3, 2, -2, 4), "mode": "edge"}),
    ("Pad", [_I], {"pads": (1, 2, 0, 1), "value": 2.7}),
    ("Unsqueeze", [_F[0, 0]], {"axes": (-1, 0)}), ("Flatten", [_F], {"axis": -2}),
    ("Expand", [_F[0, 0, :1]], {"shape": (2, 1, 1)}), ("Tile", [_I], {"repeats": (2, 1)}),
    ("LayerNormalization", [_F.astype(np.float16), np.ones(6, np.float16)],
     {"num_outputs": 3}),
    ("Softmax", [_F.astype(np.float16)], {"axis": 1}), ("Round", [np.arange(-3, 3) + 0.5], {}),
    ("Mean", [_I, _J, _I], {}), ("Softplus", [_F * 30], {}),
    *[("Cast", [_SPECIAL], {"to": to, "saturate": saturate})
      for to in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
      for saturate in (0, 1)],
]


@pytest.mark.parametrize("float64", [False, True])
@pytest.mark.parametrize("op, arrays, attrs", EDGE_CASES,
                         ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(EDGE_CASES)])
def test_edge_cases_match_reference(op, arrays, attrs, float64):
    b = GraphBuilder(op)
    names = [b.input(f"x{i}", a.shape, dtype_name(a.dtype)) for i, a in enumerate(arrays)]
    outputs = b.op(op, *names, outputs=attrs.get("num_outputs", 1), **attrs)
    graph = b.build(*(outputs if isinstance(outputs, tuple) else (outputs,)))
    feeds = {name: a for name, a in zip(names, arrays)}
    with np.errstate(all="ignore"):
        want = run(graph, feeds, float64=float64, executor="reference")
    got = run(graph, feeds, float64=float64, executor="torch")
    for name in graph.outputs:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name].astype(np.float64), want[name].astype(np.float64),
                                   rtol=1e-6 if float64 else 2e-3, atol=1e-6)
