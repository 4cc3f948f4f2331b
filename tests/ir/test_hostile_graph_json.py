"""Hostile graph.json files: every malformed field is a one-line error naming the file (and the
node or op), exit 1, never an internal error, never silently truncated or wrapped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.errors import MlcError
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir.serialize import load_graph, save_graph, write_npz


def small_graph():
    """x[2,3] @ w[3,4] -> ReduceSum(axes=[-1]) -> y[2,1]; one weight, two nodes."""
    builder = GraphBuilder("small")
    x = builder.input("x", (2, 3))
    w = builder.weight("w", np.arange(12, dtype=np.float32).reshape(3, 4))
    product = builder.op("MatMul", x, w, name="mm")
    return builder.build(builder.op("ReduceSum", product, name="rs", axes=(-1,), keepdims=1))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("graph")
    save_graph(small_graph(), folder)
    return folder


@pytest.fixture()
def fresh(artifact, tmp_path) -> Path:
    """A copy of the artifact to mutate."""
    for item in artifact.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    return tmp_path


def write_doc(folder: Path, mutate) -> None:
    path = folder / "graph.json"
    doc = json.loads(path.read_text())
    result = mutate(doc)  # None: mutated in place; a value: the new document
    path.write_text(json.dumps(doc if result is None else result))


def node(doc, name):
    return next(n for n in doc["nodes"] if n["name"] == name)


INSPECT = ("inspect",)
BOTH = ("inspect", "run")


def assert_refused(folder: Path, *messages: str, commands=INSPECT) -> None:
    """`mlc inspect` (and `mlc run --random` when asked) end in one line, exit 1, naming the
    file and what is wrong, printing nothing on stdout."""
    for command in commands:
        args = (command, folder) + (("--random",) if command == "run" else ())
        result = run_cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "graph.json" in lines[0] or "weights" in lines[0], lines[0]
        for message in messages:
            assert message in lines[0], (message, lines[0])
        assert result.stdout == ""


MUTATIONS = {
    # document and version
    "version_2": (lambda d: d.update(format_version=2), "format_version 2"),
    "version_true": (lambda d: d.update(format_version=True), "format_version True"),
    "version_missing": (lambda d: d.pop("format_version") and None, "format_version None"),
    "not_an_object": (lambda d: [d], "not a JSON object"),
    "unknown_top_key": (lambda d: d.update(extra=1), "unknown field(s) ['extra']"),
    "name_not_string": (lambda d: d.update(name=5), "'name' must be a str"),
    # inputs
    "inputs_not_list": (lambda d: d.update(inputs={"x": 1}), "'inputs' must be a list"),
    "input_fractional_dim": (lambda d: d["inputs"][0].update(shape=[2.5, 3]), "2.5"),
    "input_negative_dim": (lambda d: d["inputs"][0].update(shape=[-2, 3]), "-2"),
    "input_bool_dim": (lambda d: d["inputs"][0].update(shape=[True, 3]), "True"),
    "input_string_dim": (lambda d: d["inputs"][0].update(shape=["2", 3]), "'2'"),
    "input_unknown_dtype": (lambda d: d["inputs"][0].update(dtype="complex64"), "complex64"),
    "input_dtype_padded": (lambda d: d["inputs"][0].update(dtype="float32 "), "not an IR dtype"),
    "input_name_empty": (lambda d: d["inputs"][0].update(name=""), "not a tensor name"),
    "input_listed_twice": (lambda d: d["inputs"].append(dict(d["inputs"][0])), "listed twice"),
    "input_extra_key": (lambda d: d["inputs"][0].update(layout="nchw"), "layout"),
    # outputs
    "output_twice": (lambda d: d.update(outputs=["rs", "rs"]), "'rs' is listed twice"),
    "output_undefined": (lambda d: d.update(outputs=["nope"]), "'nope' is never defined"),
    "outputs_empty": (lambda d: d.update(outputs=[]), "no outputs"),
    "output_not_string": (lambda d: d.update(outputs=[1]), "not a tensor name"),
    # nodes: ops, names, order
    "unknown_op": (lambda d: node(d, "mm").update(op="Frobnicate"), "unknown op 'Frobnicate'"),
    "op_missing": (lambda d: node(d, "mm").pop("op") and None, "'op' must be a str"),
    "node_not_object": (lambda d: d["nodes"].append(3), "nodes[2] is not an object"),
    "node_extra_key": (lambda d: node(d, "mm").update(code="x"), "unknown field(s) ['code']"),
    "undefined_input": (lambda d: node(d, "mm").update(inputs=["x", "ghost"]), "ghost"),
    "cycle": (lambda d: node(d, "mm").update(inputs=["x", "rs"]), "'mm'"),
    "duplicate_node_name": (lambda d: node(d, "rs").update(name="mm"), "'mm' is used twice"),
    "value_defined_twice": (lambda d: node(d, "rs").update(outputs=["mm"]), "defined twice"),
    "outputs_repeat_in_node": (lambda d: node(d, "mm").update(outputs=["a", "a"]),
                               "output 'a' is listed twice"),
    "wrong_arity": (lambda d: node(d, "mm").update(inputs=["x"]), "MatMul"),
    # attributes
    "attrs_not_object": (lambda d: node(d, "rs").update(attrs=[1]), "'attrs' must be a dict"),
    "unknown_attr": (lambda d: node(d, "rs")["attrs"].update(bogus=1), "bogus"),
    "axis_out_of_range": (lambda d: node(d, "rs")["attrs"].update(axes=[99]), "axis 99"),
    "axis_negative_out_of_range": (lambda d: node(d, "rs")["attrs"].update(axes=[-3]),
                                   "axis -3"),
    "axes_fractional": (lambda d: node(d, "rs")["attrs"].update(axes=[1.5]), "'rs' (ReduceSum)"),
    "axes_bool": (lambda d: node(d, "rs")["attrs"].update(axes=[True]), "'axes'"),
    "axes_string": (lambda d: node(d, "rs")["attrs"].update(axes="-1"), "'axes'"),
    "keepdims_float": (lambda d: node(d, "rs")["attrs"].update(keepdims=1.0), "'keepdims'"),
    "keepdims_bool": (lambda d: node(d, "rs")["attrs"].update(keepdims=True), "'keepdims'"),
    # weights
    "weights_file_escapes": (lambda d: d.update(weights_file="../weights.safetensors"),
                             "beside graph.json"),
    "weights_file_absolute": (lambda d: d.update(weights_file="/etc/passwd"),
                              "beside graph.json"),
    "weights_file_pickle": (lambda d: d.update(weights_file="weights.pkl"), "beside graph.json"),
    "weights_file_missing": (lambda d: d.update(weights_file="other.safetensors"),
                             "weights file is missing"),
    "weight_shape_differs": (lambda d: d["weights"][0].update(shape=[4, 3]), "float32[4, 3]"),
    "weight_dtype_differs": (lambda d: d["weights"][0].update(dtype="float16"), "float16"),
    "weight_not_in_file": (lambda d: d["weights"].append(
        {"name": "v", "shape": [1], "dtype": "float32"}), "missing weights ['v']"),
}
RUN_TOO = {"version_2", "input_fractional_dim", "unknown_op", "cycle", "axis_out_of_range",
           "weight_shape_differs", "output_twice"}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_mutated_graph_json_is_refused(fresh, case):
    mutate, message = MUTATIONS[case]
    write_doc(fresh, mutate)
    assert_refused(fresh, message, commands=BOTH if case in RUN_TOO else INSPECT)


def test_weights_file_with_unlisted_array_is_refused(fresh):
    from safetensors.numpy import save_file
    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "z": np.zeros(2)},
              str(fresh / "weights.safetensors"))
    assert_refused(fresh, "holds arrays ['z']", commands=BOTH)


def test_cast_to_unknown_dtype_and_bad_floats_are_refused(fresh):
    def add_nodes(doc, attrs_by_op):
        for i, (op, attrs) in enumerate(attrs_by_op):
            doc["nodes"].append({"name": f"n{i}", "op": op, "inputs": ["rs"],
                                 "outputs": [f"v{i}"], "attrs": attrs})
    original = (fresh / "graph.json").read_text()
    for op, attrs, message in [("Cast", {"to": "complex64"}, "'to': 'complex64'"),
                               ("LeakyRelu", {"alpha": "abc"}, "'alpha' must be a number"),
                               ("LeakyRelu", {"alpha": {"float": "bogus"}}, "'alpha'"),
                               ("LeakyRelu", {"alpha": True}, "'alpha' must be a number")]:
        (fresh / "graph.json").write_text(original)
        write_doc(fresh, lambda d, op=op, attrs=attrs: add_nodes(d, [(op, attrs)]))
        assert_refused(fresh, message)


def test_nonfinite_float_attr_round_trips(tmp_path):
    builder = GraphBuilder("clip")
    x = builder.input("x", (4,))
    graph = builder.build(builder.op("Clip", x, min=float("-inf"), max=float("inf")))
    save_graph(graph, tmp_path)
    assert load_graph(tmp_path / "graph.json").nodes[0].attrs["max"] == float("inf")


def test_hostile_graph_json_bytes(fresh):
    path = fresh / "graph.json"
    cases = {b"": "not valid JSON", b"\xff\xfe\x00junk": "not UTF-8",
             b"[" * 5000 + b"]" * 5000: "nested", b'{"format_version": NaN}': "NaN",
             b"null": "not a JSON object"}
    for data, message in cases.items():
        path.write_bytes(data)
        assert_refused(fresh, message)
    path.unlink()
    path.mkdir()
    assert_refused(fresh, "is a folder without graph.json")
    assert_refused(path, "is a folder without graph.json")


def test_mugraph_attr_nested_too_deep_is_refused(fresh):
    deep = "[" * 3000 + "]" * 3000
    write_doc(fresh, lambda d: d["nodes"].append(
        {"name": "f", "op": "MuGraphCall", "inputs": ["rs"], "outputs": ["f"],
         "attrs": {"mugraph": deep}}))
    assert_refused(fresh, "nested")


def test_weights_file_junk_and_pickled_npz_are_refused(fresh):
    (fresh / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{junk")
    assert_refused(fresh, "not a readable safetensors file")
    np.savez(fresh / "weights.npz", w=np.array([object()], dtype=object))
    write_doc(fresh, lambda d: d.update(weights_file="weights.npz"))
    assert_refused(fresh, "pickle")
    (fresh / "weights.npz").unlink()
    (fresh / "weights.npz").symlink_to(fresh / "weights.safetensors")
    assert_refused(fresh, "not a plain file")


def test_npz_weights_keep_low_bit_dtypes(tmp_path):
    """int4 weights go to weights.npz as raw bytes; graph.json's dtype restores them."""
    import ml_dtypes
    builder = GraphBuilder("int4")
    x = builder.input("x", (2, 3))
    w = builder.weight("w", np.arange(6).reshape(2, 3).astype(ml_dtypes.int4))
    graph = builder.build(builder.op("Add", x, builder.op("Cast", w, to="float32")))
    save_graph(graph, tmp_path)
    assert (tmp_path / "weights.npz").is_file()
    loaded = load_graph(tmp_path / "graph.json").weights["w"]
    assert loaded.dtype == np.dtype(ml_dtypes.int4)
    np.testing.assert_array_equal(loaded.astype(np.int8), np.arange(6).reshape(2, 3))


def test_write_npz_keeps_names_np_savez_would_eat(tmp_path):
    arrays = {"file": np.ones(2), "allow_pickle": np.zeros(3, np.int32), "a/b": np.eye(2)}
    write_npz(tmp_path / "o.npz", arrays)
    with np.load(tmp_path / "o.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(arrays)
        np.testing.assert_array_equal(data["allow_pickle"], arrays["allow_pickle"])


def test_load_graph_names_the_file_in_library_use(fresh):
    write_doc(fresh, lambda d: node(d, "rs")["attrs"].update(axes=[99]))
    with pytest.raises(MlcError, match=r"graph\.json.*'rs'.*axis 99"):
        load_graph(fresh / "graph.json")
