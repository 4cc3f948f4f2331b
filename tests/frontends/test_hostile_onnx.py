"""Hostile and malformed ONNX models: each ends in one clear error line (exit 1) from both
`mlc inspect` and `mlc run`, never an internal error; old-opset semantics match onnxruntime.

Every bad model is built here with onnx.helper (no binary fixtures)."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlc.cli.testing import run_cli
from mlc.compiler.errors import MlcError
from mlc.compiler.frontends import load_model
from mlc.compiler.frontends.onnx_frontend import import_onnx
from mlc.compiler.ir.interpreter import interpret
from mlc.runtime import run

ort = pytest.importorskip("onnxruntime")

F = TensorProto.FLOAT


def vi(name, shape=(2, 3), elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs=None, outputs=None, inits=(), opset=17, opsets=None):
    graph = helper.make_graph(nodes, "m", [vi("x")] if inputs is None else inputs,
                              outputs or [vi("y", None)], list(inits))
    imports = [helper.make_opsetid("", opset)] if opsets is None else opsets
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


# ---- bad models: (id, builder, pattern the one-line error must match) -------------------------

def _huge_initializer():
    big = TensorProto(name="w", data_type=F, dims=[2**20, 2**20])
    return model([node("Add", ["x", "w"])], inits=[big])


def _short_raw_data():
    w = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    w.raw_data = w.raw_data[:7]
    return model([node("Add", ["x", "w"])], inits=[w])


def _attribute_two_fields():
    bad = node("Softmax", ["x"], axis=1)
    bad.attribute[0].f = 2.5  # an INT attribute that also holds a float
    return model([bad])


def _float_axis():
    bad = node("Softmax", ["x"])
    bad.attribute.append(helper.make_attribute("axis", 1.5))
    return model([bad])


def _sparse_initializer():
    m = model([node("Relu", ["x"])])
    sparse = m.graph.sparse_initializer.add()
    sparse.values.CopyFrom(numpy_helper.from_array(np.ones(1, np.float32), "s"))
    return m


def _no_rank_input():
    value = helper.make_tensor_value_info("x", F, None)
    return model([node("Relu", ["x"])], inputs=[value])


BAD_MODELS = [
    ("cycle", lambda: model([node("Add", ["x", "b"], ["a"]), node("Relu", ["a"], ["b"]),
                             node("Relu", ["a"])]), r"cycle through node\(s\) 'add_0'"),
    ("undefined_tensor", lambda: model([node("Add", ["x", "ghost"])]),
     r"node 'add_0' \(Add\) reads 'ghost', which no input"),
    ("duplicate_node_output", lambda: model([node("Relu", ["x"]), node("Neg", ["x"])]),
     r"output of node 'neg_1' \(Neg\) redefines 'y'"),
    ("output_redefines_input", lambda: model([node("Relu", ["x"], ["x"]), node("Neg", ["x"])]),
     r"redefines 'x', already graph input 'x'"),
    ("duplicate_graph_input", lambda: model([node("Relu", ["x"])], inputs=[vi("x"), vi("x")]),
     r"graph input 'x' is listed twice"),
    ("duplicate_initializer", lambda: model([node("Add", ["x", "w"])], inits=[
        numpy_helper.from_array(np.ones(3, np.float32), "w")] * 2), r"initializer 'w' redefines"),
    ("unknown_element_type", lambda: model([node("Relu", ["x"])], inputs=[vi("x", elem=99)]),
     r"input 'x': element type 99 is not an ONNX element type"),
    ("string_input", lambda: model([node("Identity", ["x"])],
                                   inputs=[vi("x", elem=TensorProto.STRING)]),
     r"element type STRING is not supported"),
    ("cast_to_unknown_type", lambda: model([node("Cast", ["x"], to=99)]),
     r"'cast_0' \(Cast\).*element type 99"),
    ("opset_99", lambda: model([node("Relu", ["x"])], opset=99),
     r"opset 99 is outside the supported range 7\.\.\d+"),
    ("opset_0", lambda: model([node("Relu", ["x"])], opset=0), r"opset 0 is outside"),
    ("opset_6_changed_op", lambda: model([node("Add", ["x", "x"])], opset=6),
     r"Add-6 \(opset 6\) differs from its opset-7 definition"),
    ("no_default_opset", lambda: model([node("Relu", ["x"])],
                                       opsets=[helper.make_opsetid("com.example", 1)]),
     r"declares no opset for the default ONNX domain"),
    ("two_default_opsets", lambda: model([node("Relu", ["x"])], opsets=[
        helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx", 17)]),
     r"declares the default ONNX domain twice"),
    ("op_not_in_opset", lambda: model([node("Gelu", ["x"])], opset=17),
     r"Gelu does not exist at opset 17"),
    ("negative_input_dim", lambda: model([node("Relu", ["x"])], inputs=[vi("x", (-3, 4))]),
     r"input 'x': dim 0 is -3; dims must be >= 0"),
    ("input_without_rank", _no_rank_input, r"does not declare its rank; give its shape"),
    ("huge_initializer", _huge_initializer, r"initializer 'w':.*(more than|needs)"),
    ("raw_data_short", _short_raw_data, r"raw_data holds 7 bytes, but shape \[2, 3\] of "
                                        r"float32 needs 24"),
    ("sparse_initializer", _sparse_initializer, r"sparse initializers are not supported"),
    ("constant_of_shape_2e40", lambda: model(
        [node("ConstantOfShape", ["s"], ["c"]), node("Add", ["x", "c"])],
        inits=[ints("s", [2**20, 2**20])]), r"ConstantOfShape.*needs 4\.0 TiB"),
    ("range_zero_delta", lambda: model(
        [node("Range", ["a", "b", "c"], ["r"]), node("Cast", ["r"], to=F)],
        inits=[ints("a", 0), ints("b", 5), ints("c", 0)]), r"non-zero delta"),
    ("gather_index_out_of_range", lambda: model([node("Gather", ["x", "i"], axis=0)],
                                                inits=[ints("i", [5])]),
     r"'gather_0' \(Gather\): Gather indices on axis 0: index 5 is out of range \[-2, 1\]"),
    ("gather_elements_index", lambda: model([node("GatherElements", ["x", "i"], axis=1)],
                                            inits=[ints("i", np.full((2, 3), -9))]),
     r"GatherElements indices on axis 1: index -9 is out of range"),
    ("gather_axis_7", lambda: model([node("Gather", ["x", "i"], axis=7)],
                                    inits=[ints("i", [0])]),
     r"'gather_0' \(Gather\): axis 7 is out of range for rank 2"),
    ("reducesum_axis_99", lambda: model([node("ReduceSum", ["x", "a"])],
                                        inits=[ints("a", [99])]),
     r"'reducesum_0' \(ReduceSum\): axis 99 is out of range for rank 2"),
    ("reducesum_attr_axis_99", lambda: model([node("ReduceSum", ["x"], axes=[99])], opset=11),
     r"axis 99 is out of range for rank 2"),
    ("softmax_axis_9", lambda: model([node("Softmax", ["x"], axis=9)]),
     r"'softmax_0' \(Softmax\): axis 9 is out of range"),
    ("old_softmax_axis_9", lambda: model([node("Softmax", ["x"], axis=9)], opset=11),
     r"axis 9 is out of range"),
    ("flatten_axis_9", lambda: model([node("Flatten", ["x"], axis=9)]),
     r"Flatten axis 9 is out of range for rank 2"),
    ("split_axis_5", lambda: model([node("Split", ["x"], ["y", "z"], axis=5)],
                                   outputs=[vi("y", None), vi("z", None)]),
     r"'split_0' \(Split\): axis 5 is out of range"),
    ("transpose_bad_perm", lambda: model([node("Transpose", ["x"], perm=[0, 5])]),
     r"perm \[0, 5\] is not a permutation"),
    ("reshape_two_minus_one", lambda: model([node("Reshape", ["x", "s"])],
                                            inits=[ints("s", [-1, -1])]),
     r"may hold one -1"),
    ("reshape_negative_dims", lambda: model([node("Reshape", ["x", "s"])],
                                            inits=[ints("s", [-2, -3])]),
     r"may hold one -1 and no other negative dim"),
    ("tile_negative", lambda: model([node("Tile", ["x", "r"])], inits=[ints("r", [-2, 3])]),
     r"dim -4 is negative"),
    ("pad_2e40", lambda: model([node("Pad", ["x", "p"])], inits=[ints("p", [2**40, 0, 0, 0])]),
     r"elements, more than the 1099511627776"),
    ("slice_step_0", lambda: model([node("Slice", ["x", "s", "e", "a", "t"])], inits=[
        ints("s", [0]), ints("e", [2]), ints("a", [0]), ints("t", [0])]), r"steps \[0\]"),
    ("conv_zero_stride", lambda: model([node("Conv", ["x", "w"], strides=[0, 0])],
                                       inputs=[vi("x", (1, 1, 4, 4))],
                                       inits=[numpy_helper.from_array(
                                           np.ones((1, 1, 2, 2), np.float32), "w")]),
     r"strides \[0, 0\].*must be >= 1"),
    ("unknown_attribute", lambda: model([node("Identity", ["x"], bogus=3)]),
     r"Identity-16 has no attribute 'bogus'"),
    ("missing_required_attribute", lambda: model([node("MaxPool", ["x"])],
                                                 inputs=[vi("x", (1, 1, 4, 4))]),
     r"MaxPool-12 needs attribute\(s\) \['kernel_shape'\]"),
    ("attribute_wrong_type", _float_axis, r"attribute 'axis' has type FLOAT; Softmax-13 "
                                          r"expects INT"),
    ("attribute_two_fields", _attribute_two_fields, r"declared INT but also holds a FLOAT"),
    ("empty_required_input", lambda: model([node("Add", ["x", ""])]),
     r"input 1 \('B'\) of Add-14 is empty"),
    ("empty_variadic_input", lambda: model([node("Sum", ["x", "", "x"])]),
     r"of Sum-13 is empty, and only optional inputs may be left out"),
    ("too_many_inputs", lambda: model([node("Relu", ["x", "x"])]),
     r"Relu-14 takes 1 inputs, the node has 2"),
    ("add_float_int64", lambda: model([node("Add", ["x", "w"])], inits=[ints("w", [1, 2, 3])]),
     r"inputs 'x' \(tensor\(float\)\) and 'w' \(tensor\(int64\)\) must have the same type"),
    ("where_float_condition", lambda: model([node("Where", ["x", "x", "x"])]),
     r"input 'condition' \('x'\) is tensor\(float\)"),
    ("argmax_empty_axis", lambda: model([node("ArgMax", ["x"], ["i"], axis=0),
                                         node("Cast", ["i"], to=F)],
                                        inputs=[vi("x", (0, 3))]), r"the axis is empty"),
    ("dropout_ratio_not_scalar", lambda: model([node("Dropout", ["x", "r"])], inits=[
        numpy_helper.from_array(np.full(3, 0.5, np.float32), "r")]), r"must be scalars"),
    ("sum_opset7_no_broadcast", lambda: model([node("Sum", ["x", "w"])], opset=7, inits=[
        numpy_helper.from_array(np.ones(3, np.float32), "w")]),
     r"Sum broadcasts only from opset 8"),
    ("range_2e40", lambda: model(
        [node("Range", ["a", "b", "c"], ["r"]), node("Cast", ["r"], to=F)],
        inits=[ints("a", 0), ints("b", 2**40), ints("c", 1)]), r"needs 8\.0 TiB"),
    ("tile_2e60_elements", lambda: model([node("Tile", ["x", "r"])],
                                         inits=[ints("r", [2**30, 2**30])]),
     r"elements, more than the 1099511627776 mlc accepts in one tensor"),
    ("reduce_repeated_axis", lambda: model([node("ReduceSum", ["x", "a"])],
                                           inputs=[vi("x", (2, 3, 4))],
                                           inits=[ints("a", [0, -3])]),
     r"reduction axes \[0, -3\] repeat an axis"),
    ("keepdims_7", lambda: model([node("ReduceSum", ["x", "a"], keepdims=7)],
                                 inits=[ints("a", [0])]), r"keepdims=7 must be 0 or 1"),
    ("pad_edge_crops_axis_empty", lambda: model([node("Pad", ["x", "p"], mode="edge")],
                                                inits=[ints("p", [0, -3, 0, 1])]),
     r"crop axis 1 of \(2, 3\) past its size"),
    ("pad_edge_empty_input", lambda: model([node("Pad", ["x", "p"], mode="edge")],
                                           inputs=[vi("x", (0, 3))],
                                           inits=[ints("p", [0, 1, 0, 1])]),
     r"edge padding needs a non-empty input"),
    ("pool_empty_input", lambda: model([node("AveragePool", ["x"], kernel_shape=[1, 1])],
                                       inputs=[vi("x", (4, 0, 4, 2))]),
     r"pooling over an empty tensor"),
    ("layer_norm_scale_size", lambda: model([node("LayerNormalization", ["x", "w"])], inits=[
        numpy_helper.from_array(np.ones(7, np.float32), "w")]), r"do not broadcast"),
    ("batch_norm_param_size", lambda: model(
        [node("BatchNormalization", ["x", "w", "w", "w", "w"])], inputs=[vi("x", (1, 3, 2))],
        inits=[numpy_helper.from_array(np.ones(7, np.float32), "w")]),
     r"scale, bias, mean and var must be \(3,\)"),
    ("output_declared_int", lambda: model([node("Relu", ["x"])],
                                          outputs=[vi("y", None, TensorProto.INT64)]),
     r"output 'y' is declared INT64 but computes float32"),
    ("output_never_defined", lambda: model([node("Relu", ["x"])],
                                           outputs=[vi("zz", None)]),
     r"graph output 'zz' is never defined"),
]


def _assert_refused(result, pattern):
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert re.search(pattern, lines[-1]), lines[-1]
    assert not result.stdout.strip()


@pytest.mark.parametrize("build,pattern", [c[1:] for c in BAD_MODELS],
                         ids=[c[0] for c in BAD_MODELS])
def test_bad_model_is_one_clear_error_from_inspect_and_run(tmp_path, build, pattern):
    path = tmp_path / "bad.onnx"
    onnx.save(build(), str(path))
    _assert_refused(run_cli("inspect", path), pattern)
    _assert_refused(run_cli("run", path, "--random", "--executor", "reference"), pattern)


def test_corrupt_bytes_are_clear_errors(tmp_path):
    data = model([node("MatMul", ["x", "w"])],
                 inits=[numpy_helper.from_array(np.ones((3, 4), np.float32), "w")]
                 ).SerializeToString()
    path = tmp_path / "bad.onnx"
    path.write_bytes(data.replace(b"MatMul", b"Mat\xb3ul"))  # op type is no longer UTF-8
    _assert_refused(run_cli("inspect", path), r"op type b'Mat\\xb3ul' is not valid UTF-8")
    path.write_bytes(data[: len(data) // 2])
    _assert_refused(run_cli("inspect", path), r"bad\.onnx: not a readable ONNX model")


def test_external_data_location_with_nul_is_refused(tmp_path):
    m = model([node("Add", ["x", "w"])],
              inits=[numpy_helper.from_array(np.ones(3, np.float32), "w")])
    weight = m.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="w\0.bin")
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    _assert_refused(run_cli("inspect", path), r"external data location with a NUL character")


def test_bad_shape_overrides_are_refused(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model([node("Relu", ["x"])], inputs=[vi("x", ("N", 4))]), str(path))
    _assert_refused(run_cli("inspect", path, "--shape", "x=-3x4"), r"-3")
    for dims in ((-3, 4), (2.5, 4), (True, 4)):  # the library refuses them too, not just the CLI
        with pytest.raises(MlcError, match=r"must be whole numbers >= 0"):
            import_onnx(onnx.load(str(path)), "m.onnx", input_shapes={"x": dims})


# ---- what must work, as onnxruntime does it --------------------------------------------------

def _against_onnxruntime(m, feeds, tol=1e-5):
    """mlc (both executors) and onnxruntime agree on every output; returns mlc's outputs."""
    want = ort.InferenceSession(m.SerializeToString()).run(None, feeds)
    graph = import_onnx(m)
    for got in (interpret(graph, feeds), run(graph, feeds)):
        assert len(got) == len(want)
        for g, w in zip(got.values(), want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    return graph


def test_output_listed_twice_returns_both_like_onnxruntime():
    m = model([node("Relu", ["x"])], outputs=[vi("y", None), vi("y", None)])
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    graph = _against_onnxruntime(m, {"x": x})
    assert len(graph.outputs) == 2 and graph.outputs[0] == "y"


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [7, 11, 12, 13])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
def test_softmax_semantics_per_opset_match_onnxruntime(op, opset, axis):
    """Before opset 13 the input is flattened to 2-D at `axis` (default 1)."""
    if axis is not None and axis < 0 and opset < 11:
        pytest.skip("negative axes arrive with opset 11")
    attrs = {} if axis is None else {"axis": axis}
    m = model([node(op, ["x"], **attrs)], inputs=[vi("x", (2, 3, 4))], opset=opset)
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32) * 3
    _against_onnxruntime(m, {"x": x})


OLD_FORMS = [  # ops whose operands moved from attributes to inputs (or changed meaning)
    ("slice_9_attributes", 9, [node("Slice", ["x"], starts=[1, 0], ends=[2, -1], axes=[0, 1])],
     []),
    ("pad_2_value_attribute", 9, [node("Pad", ["x"], pads=[0, 1, 1, 0], value=2.5)], []),
    ("pad_11_reflect", 11, [node("Pad", ["x", "p"], mode="reflect")],
     [ints("p", [1, 2, 0, 1])]),
    ("clip_6_attributes", 9, [node("Clip", ["x"], min=-0.3, max=0.4)], []),
    ("clip_11_inputs", 11, [node("Clip", ["x", "", "hi"])],
     [numpy_helper.from_array(np.float32(0.2), "hi")]),
    ("reducesum_11_attribute", 11, [node("ReduceSum", ["x"], axes=[1], keepdims=0)], []),
    ("reducesum_13_input", 13, [node("ReduceSum", ["x", "a"], keepdims=1)], [ints("a", [-1])]),
    ("reducemean_17_attribute", 17, [node("ReduceMean", ["x"], axes=[0])], []),
    ("reducemean_18_input", 18, [node("ReduceMean", ["x", "a"])], [ints("a", [0])]),
    ("squeeze_11_attribute", 11, [node("Unsqueeze", ["x"], ["u"], axes=[0]),
                                  node("Squeeze", ["u"], axes=[0])], []),
    ("squeeze_13_input", 13, [node("Unsqueeze", ["x", "a"], ["u"]),
                              node("Squeeze", ["u", "a"])], [ints("a", [2])]),
    ("split_11_attribute", 11, [node("Split", ["x"], ["y", "z"], axis=1, split=[1, 2])], []),
    ("split_13_input", 13, [node("Split", ["x", "s"], ["y", "z"], axis=1)], [ints("s", [2, 1])]),
    ("split_18_uneven", 18, [node("Split", ["x"], ["y", "z"], axis=1, num_outputs=2)], []),
    ("sum_8_broadcast", 8, [node("Sum", ["x", "w"])],
     [numpy_helper.from_array(np.arange(3, dtype=np.float32), "w")]),
    ("neg_6_unchanged_at_7", 6, [node("Neg", ["x"])], []),
]


@pytest.mark.parametrize("opset,nodes,inits", [c[1:] for c in OLD_FORMS],
                         ids=[c[0] for c in OLD_FORMS])
def test_per_opset_operand_forms_match_onnxruntime(opset, nodes, inits):
    outputs = [vi(name, None) for name in nodes[-1].output]
    m = model(nodes, inputs=[vi("x", (2, 3))], outputs=outputs, inits=inits, opset=opset)
    x = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    _against_onnxruntime(m, {"x": x})


def test_nodes_out_of_order_are_sorted_like_onnxruntime():
    m = model([node("Relu", ["a"]), node("Neg", ["x"], ["a"])])
    x = np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32)
    graph = _against_onnxruntime(m, {"x": x})
    assert [n.op for n in graph.nodes] == ["Neg", "Relu"]


def test_hostile_names_never_reach_generated_code(tmp_path):
    hostile = "__import__('os').system('touch pwned')<script>{{7*7}}"
    weight = numpy_helper.from_array(
        np.random.default_rng(4).standard_normal((32, 32)).astype(np.float32), "W; rm -rf /")
    nodes = [node("MatMul", [hostile, "W; rm -rf /"], ["m*/\n"], name=hostile),
             node("Softmax", ["m*/\n"], ["y}}"], axis=-1, name="{{ 7*7 }}")]
    m = model(nodes, inputs=[vi(hostile, (4, 32))], outputs=[vi("y}}", None)], inits=[weight])
    path = tmp_path / "hostile.onnx"
    onnx.save(m, str(path))
    graph = load_model(path)
    assert graph.inputs.keys() == {hostile} and graph.outputs == ("y}}",)
    out = tmp_path / "build"
    result = run_cli("optimize", path, "--out", out, "--budget", "1", "--no-cache", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sources = [p for p in (out / "kernels").iterdir() if p.suffix in (".py", ".cu")]
    assert sources
    for source in sources:
        text = source.read_text()
        for fragment in ("__import__", "rm -rf", "{{", "<script>", "m*/"):
            assert fragment not in text, (source.name, fragment)
    assert not (tmp_path / "pwned").exists()
