"""The IR -> ONNX exporter: checker-clean models that onnxruntime runs like the interpreter."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mlc.compiler.frontends import load_model
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import OPS, Graph, interpret
from mlc.compiler.ir.types import np_dtype
from mlc.compiler.onnx_export import EMITTERS, save_onnx, to_onnx
from mlc.specs.workloads import get_workload, list_workloads

ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(autouse=True)
def _quiet_numpy():
    with np.errstate(divide="ignore", invalid="ignore"):  # IsInf's inputs divide by zero
        yield


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(t.shape).astype(np_dtype(t.dtype))
            for name, t in graph.inputs.items()}


def run_onnxruntime(model: onnx.ModelProto, inputs) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def assert_matches_interpreter(graph: Graph, opset: int = 18) -> None:
    model = to_onnx(graph, opset)
    onnx.checker.check_model(model, full_check=True)
    inputs = random_inputs(graph)
    expected = interpret(graph, inputs)
    for name, got in zip(graph.outputs, run_onnxruntime(model, inputs), strict=True):
        want = expected[name]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)


# ---- hand-built graphs, one per op family ---------------------------------------------------

def conv_pool_graph() -> Graph:
    rng = np.random.default_rng(1)
    b = GraphBuilder("conv_pool")
    x = b.input("x", (2, 4, 9, 9))
    w = b.weight("w", rng.standard_normal((6, 2, 3, 3)).astype(np.float32))
    bias = b.weight("bias", rng.standard_normal(6).astype(np.float32))
    y = b.op("Conv", x, w, bias, strides=[2, 1], pads=[1, 0, 1, 2], dilations=[1, 2], group=2)
    stats = [b.const(rng.standard_normal(6)), b.const(rng.standard_normal(6)),
             b.const(rng.standard_normal(6)), b.const(rng.uniform(0.5, 2, 6))]
    y = b.op("Relu", b.op("BatchNormalization", y, *stats, epsilon=1e-3))
    window = {"kernel_shape": [3, 3], "strides": [2, 2], "dilations": [1, 1]}
    # y is (2, 6, 5, 7); these pads make ceil_mode add a window on H (max) and H, W (average)
    peak = b.op("MaxPool", y, pads=[1, 0, 0, 0], ceil_mode=1, **window)
    dilated = b.op("MaxPool", y, kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 1],
                   dilations=[2, 3])
    with_pad = b.op("AveragePool", y, pads=[1, 0, 0, 1], ceil_mode=1, count_include_pad=1,
                    **window)
    without_pad = b.op("AveragePool", y, pads=[1, 1, 0, 0], count_include_pad=0, **window)
    return b.build(peak, dilated, with_pad, without_pad, b.op("GlobalAveragePool", y),
                   b.op("GlobalMaxPool", y))


def norm_graph() -> Graph:
    b = GraphBuilder("norms")
    x = b.input("x", (2, 3, 8))
    scale, bias = b.const(np.linspace(0.5, 1.5, 8)), b.const(np.linspace(-1, 1, 8))
    plane = b.const(np.linspace(0.5, 1.5, 24).reshape(3, 8))
    layer = b.op("LayerNormalization", x, scale, bias, epsilon=1e-3)
    layer_stats = b.op("LayerNormalization", x, plane, axis=1, num_outputs=3, outputs=3)
    return b.build(layer, *layer_stats,
                   b.op("RMSNormalization", x, scale, epsilon=1e-6),
                   b.op("RMSNormalization", x, plane, axis=-2),
                   b.op("Softmax", x, axis=1), b.op("LogSoftmax", x))


def activation_graph() -> Graph:
    b = GraphBuilder("activations")
    x = b.input("x", (3, 16))
    slope = b.const(np.linspace(0.1, 0.3, 16))
    outs = [b.op("Gelu", x), b.op("Gelu", x, approximate="tanh"), b.op("Silu", x),
            b.op("Relu", x), b.op("Sigmoid", x), b.op("Softplus", x), b.op("Softsign", x),
            b.op("LeakyRelu", x, alpha=0.2), b.op("Elu", x, alpha=0.7), b.op("Selu", x),
            b.op("HardSigmoid", x, alpha=0.3, beta=0.4), b.op("HardSwish", x),
            b.op("PRelu", x, slope), b.op("Clip", x, min=-0.5, max=0.75),
            b.op("Clip", x, max=0.25), b.op("Clip", x, min=-0.1), b.op("Mish", x),
            b.op("Trilu", x, k=-1), b.op("Trilu", x, upper=0, k=2)]
    return b.build(*outs)


def linalg_graph() -> Graph:
    rng = np.random.default_rng(2)
    b = GraphBuilder("linalg")
    x = b.input("x", (4, 8))
    w = b.weight("w", rng.standard_normal((5, 8)).astype(np.float32))
    c = b.weight("c", rng.standard_normal(5).astype(np.float32))
    batched = b.input("batched", (2, 3, 4, 8))
    gemm = b.op("Gemm", x, w, c, alpha=0.5, beta=2.0, transB=1)
    gemm_t = b.op("Gemm", x, x, transA=1)
    return b.build(gemm, gemm_t, b.op("MatMul", batched, b.op("Transpose", x, perm=[1, 0])))


REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
              "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"]


def reduction_graph() -> Graph:
    b = GraphBuilder("reductions")
    x = b.input("x", (2, 3, 4))
    positive = b.op("Exp", x)  # ReduceLogSum needs positive sums
    outs = []
    for op in REDUCTIONS:
        outs += [b.op(op, positive, axes=None, keepdims=0), b.op(op, positive, axes=[1]),
                 b.op(op, positive, axes=[-1, 0], keepdims=0)]
    outs += [b.op("ArgMax", x, axis=1), b.op("ArgMin", x, axis=-1, keepdims=0,
                                              select_last_index=1)]
    return b.build(*outs)


def movement_graph() -> Graph:
    b = GraphBuilder("movement")
    x = b.input("x", (2, 3, 4))
    flat = b.op("Reshape", x, shape=[6, 4])
    parts = b.op("Split", flat, axis=0, split=[1, 2, 3], outputs=3)
    joined = b.op("Concat", parts[2], parts[0], axis=0)
    sliced = b.op("Slice", x, starts=[-1, 0], ends=[-100, 3], axes=[2, 1], steps=[-2, 2])
    one = b.op("Unsqueeze", x, axes=[0, -1])
    squeezed = b.op("Squeeze", one, axes=[0])
    expanded = b.op("Expand", b.op("Slice", x, starts=[0], ends=[1], axes=[0], steps=[1]),
                    shape=[3, 1, 1])
    indices = b.const([[0, -1], [2, 1]], "int64")
    gathered = b.op("Gather", x, indices, axis=1)
    along = b.op("GatherElements", x, b.const(np.zeros((2, 3, 2)), "int64"), axis=2)
    nd = b.op("GatherND", x, b.const([[1, 2], [0, -1]], "int64"))
    padded = [b.op("Pad", x, pads=[0, 1, 2, 1, 0, 1], value=1.5),
              b.op("Pad", x, pads=[0, 1, 1, 0, 2, 1], mode="reflect"),
              b.op("Pad", x, pads=[0, 0, -1, 1, 0, 2], mode="edge")]
    mask = b.op("Greater", x, b.const(0.0))
    chosen = b.op("Where", mask, x, b.op("Neg", x))
    half = b.op("Cast", b.op("Cast", x, to="float16"), to="float32")
    to_int = b.op("Cast", b.op("Mul", x, b.const(4.0)), to="int32")
    bf16 = b.op("Cast", b.weight("bf16", np.linspace(-2, 2, 4).astype(np_dtype("bfloat16"))),
                to="float32")
    return b.build(joined, *parts, sliced, squeezed, expanded, gathered, along, nd, *padded,
                   b.op("Tile", x, repeats=[1, 2, 3]), b.op("Flatten", x, axis=2), chosen,
                   half, to_int, b.op("Add", x, bf16), b.op("Identity", x),
                   b.op("Squeeze", x, axes=[]))


UNARY = {  # op -> how to bring a standard normal into its domain
    "Neg": None, "Abs": None, "Sign": None, "Exp": None, "Floor": None, "Ceil": None,
    "Round": None, "Sin": None, "Cos": None, "Tan": None, "Atan": None, "Sinh": None,
    "Cosh": None, "Tanh": None, "Erf": None, "Log": "Abs", "Sqrt": "Abs", "Reciprocal": "Exp",
    "Asin": "Tanh", "Acos": "Tanh",
}


def elementwise_graph() -> Graph:
    b = GraphBuilder("elementwise")
    x, y, z = b.input("x", (3, 5)), b.input("y", (5,)), b.input("z", (3, 1))
    outs = [b.op(op, b.op(domain, x) if domain else x) for op, domain in UNARY.items()]
    outs += [b.op(op, x, y) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min")]
    outs += [b.op(op, x, y, z) for op in ("Max", "Min", "Sum", "Mean")]
    outs += [b.op("Pow", b.op("Abs", x), y), b.op("Mod", x, y, fmod=1)]
    compares = [b.op(op, x, y) for op in ("Equal", "Less", "LessOrEqual", "Greater",
                                          "GreaterOrEqual")]
    outs += compares + [b.op(op, compares[1], compares[3]) for op in ("And", "Or", "Xor")]
    outs += [b.op("Not", compares[2])]
    inf = b.op("Div", x, b.op("Round", z))  # z rounds to 0 often enough to make +-inf and nan
    outs += [b.op("IsNaN", inf), b.op("IsInf", inf), b.op("IsInf", inf, detect_negative=0)]
    count = b.op("Cast", b.op("Round", b.op("Mul", x, b.const(3.0))), to="int64")
    outs += [b.op("Div", count, b.const([2, -3, 4, -5, 7], "int64")),
             b.op("Mod", count, b.const([2, 3, 4, 5, 7], "int64"))]
    return b.build(*outs)


def empty_axes_graph() -> Graph:
    """Reductions over no axes: ONNX's noop_with_empty_axes, still squaring, logging, ..."""
    b = GraphBuilder("empty_axes")
    x = b.input("x", (2, 3, 4))
    return b.build(*(b.op(op, b.op("Exp", x), axes=[]) for op in REDUCTIONS))


GRAPHS = {graph.__name__.removesuffix("_graph"): graph for graph in (
    conv_pool_graph, norm_graph, activation_graph, linalg_graph, reduction_graph,
    empty_axes_graph, movement_graph, elementwise_graph)}
# ---- tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_workloads())
def test_workload_matches_interpreter(name):
    assert_matches_interpreter(get_workload(name + ":small"))


@pytest.mark.parametrize("name", list(GRAPHS))
def test_op_family_matches_interpreter(name):
    assert_matches_interpreter(GRAPHS[name]())


@pytest.mark.parametrize(("opset", "name", "native"), [
    (19, "conv_pool", "AveragePool"), (20, "activation", "Gelu"),
    (23, "norm", "RMSNormalization")])
def test_newer_opsets(opset, name, native):
    graph = GRAPHS[name]()
    assert native in {node.op_type for node in to_onnx(graph, opset).graph.node}
    assert_matches_interpreter(graph, opset)


def test_dilated_average_pool_needs_opset_19():
    b = GraphBuilder("dilated")
    x = b.input("x", (1, 2, 9, 9))
    graph = b.build(b.op("AveragePool", x, kernel_shape=[2, 3], strides=[1, 2], pads=[0, 1, 1, 1],
                         dilations=[2, 2], count_include_pad=1))
    with pytest.raises(ValueError, match="opset=19"):
        to_onnx(graph)
    assert_matches_interpreter(graph, opset=19)


def test_float64_layer_norm_statistics():
    b = GraphBuilder("float64_norm")
    x = b.input("x", (2, 8), "float64")
    stats = b.op("LayerNormalization", x, b.const(np.ones(8), "float64"), num_outputs=3,
                 outputs=3)
    assert_matches_interpreter(b.build(*stats))


def test_float8_needs_opset_19():
    b = GraphBuilder("float8")
    x = b.input("x", (2, 4))
    weight = b.weight("w8", np.linspace(-3, 3, 4).astype(np_dtype("float8_e4m3fn")))
    graph = b.build(b.op("Mul", x, b.op("Cast", weight, to="float32")),
                    b.op("Cast", b.op("Cast", x, to="float8_e5m2"), to="float32"))
    with pytest.raises(ValueError, match="opset=19"):
        to_onnx(graph)
    assert_matches_interpreter(graph, opset=19)


def test_hand_built_graphs_cover_every_exported_op():
    covered = {node.op for build in GRAPHS.values() for node in build().nodes}
    # fused kernels have no ONNX form; CodebookDequantize lowers to bitwise ops the importer
    # cannot read back, so tests/quant/test_codebook.py checks its export against onnxruntime
    assert set(OPS) - covered == {"MuGraphCall", "CodebookDequantize"}


def test_fused_regions_are_refused_with_a_clear_error():
    import json

    from mlc.compiler.errors import MlcError
    from mlc.compiler.superopt.mugraph import mugraph_to_json
    from mlc.compiler.superopt.mugraph.fixtures import load_fixture
    fixture = load_fixture("lora_small")
    b = GraphBuilder("fused")
    ins = [b.input(n, s) for n, s in fixture.inputs.items()]
    graph = b.build(b.op("MuGraphCall", *ins, mugraph=json.dumps(mugraph_to_json(fixture))))
    with pytest.raises(MlcError, match="fused µGraph kernel"):
        to_onnx(graph)


@pytest.mark.parametrize("name", [
    *(w + ":small" for w in list_workloads()),
    *GRAPHS])
def test_round_trip_through_importer(name, tmp_path):
    graph = GRAPHS[name]() if name in GRAPHS else get_workload(name)
    path = save_onnx(graph, tmp_path / "model.onnx")
    again = load_model(path)
    assert list(again.inputs) == list(graph.inputs)
    inputs = random_inputs(graph, seed=3)
    expected, got = interpret(graph, inputs), interpret(again, inputs)
    for before, after in zip(graph.outputs, again.outputs, strict=True):
        np.testing.assert_allclose(got[after], expected[before], rtol=RTOL, atol=ATOL,
                                   err_msg=before)


def test_names_shapes_and_fresh_operand_initializers():
    ir_graph = GRAPHS["movement"]()
    graph = to_onnx(ir_graph).graph

    def shape(value):
        return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)

    assert [(v.name, shape(v)) for v in graph.input] == [("x", (2, 3, 4))]
    assert [(v.name, shape(v)) for v in graph.output] == [
        (name, ir_graph.types[name].shape) for name in ir_graph.outputs]
    names = [t.name for t in graph.initializer]
    assert len(names) == len(set(names)) and "bf16" in names
    assert not set(names) & set(ir_graph.types) - set(ir_graph.weights)
    assert [n.name for n in graph.node][:2] == ["reshape_1", "split_2"]


def test_opsets_before_18_are_refused():
    with pytest.raises(ValueError, match="opset 18"):
        to_onnx(get_workload("gqa:small"), opset=17)


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_ir_op_has_an_exporter(op):
    assert op in EMITTERS, f"add an ONNX emitter for {op} to mlc.compiler.onnx_export.EMITTERS"
