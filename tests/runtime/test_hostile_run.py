"""Hostile inputs to `mlc run` / `mlc inspect`: .npz files, --shape dims, options, model specs.
Each is exit 1 (2 for usage) with one line naming the problem, never an internal error, a
MemoryError, an exit 130, or a silently wrong result."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mlc.cli.testing import refusal_line, run_cli
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir.serialize import save_graph

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mlp.onnx"  # x: float32[4, 64]
HUGE = 2**40


def one_line_error(result, code: int = 1) -> str:
    """refusal_line, plus: nothing on stdout for bad input."""
    line = refusal_line(result, code)
    if code == 1:
        assert result.stdout == ""
    return line


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory) -> Path:
    """Relu over x: float32[N, 4] with N dynamic."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dyn", [x], [y])
    path = tmp_path_factory.mktemp("dyn") / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def saved(tmp_path: Path, builder: GraphBuilder, *outputs: str) -> Path:
    folder = tmp_path / builder.name
    folder.mkdir()
    save_graph(builder.build(*outputs), folder)
    return folder


@pytest.fixture()
def index_model(tmp_path) -> Path:
    """Gather rows of a [10, 3] table by int64 ids[2]: an int input."""
    builder = GraphBuilder("lookup")
    ids = builder.input("ids", (2,), "int64")
    table = builder.weight("table", np.arange(30, dtype=np.float32).reshape(10, 3))
    return saved(tmp_path, builder, builder.op("Gather", table, ids, name="rows"))


def run_npz(tmp_path, model, *options, **arrays):
    np.savez(tmp_path / "in.npz", **arrays)
    return run_cli("run", model, "--inputs", tmp_path / "in.npz", "--json", *options)


# ---- .npz files ---------------------------------------------------------------------------------
def test_empty_junk_folder_and_npy_inputs_are_refused(tmp_path):
    cases = {"empty.npz": b"", "junk.npz": bytes(range(256)) * 4, "text.npz": b"x=1\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        line = one_line_error(run_cli("run", EXAMPLE, "--inputs", tmp_path / name))
        assert f"{name}: not an .npz archive" in line
    np.save(tmp_path / "single.npy", np.zeros((4, 64), np.float32))
    line = one_line_error(run_cli("run", EXAMPLE, "--inputs", tmp_path / "single.npy"))
    assert "it is a .npy file" in line
    line = one_line_error(run_cli("run", EXAMPLE, "--inputs", tmp_path))
    assert "is a folder" in line
    line = one_line_error(run_cli("run", EXAMPLE, "--inputs", tmp_path / "absent.npz"))
    assert "no such file" in line


def test_npz_without_arrays_names_the_missing_input(tmp_path):
    line = one_line_error(run_npz(tmp_path, EXAMPLE))
    assert "missing input 'x' (float32[4, 64])" in line


def test_complex_object_and_text_arrays_are_refused(tmp_path):
    line = one_line_error(run_npz(tmp_path, EXAMPLE, x=np.ones((4, 64), np.complex64)))
    assert "input 'x' is complex64" in line and "imaginary" in line
    (tmp_path / "obj.npz").unlink(missing_ok=True)
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object))
    line = one_line_error(run_cli("run", EXAMPLE, "--inputs", tmp_path / "obj.npz"))
    assert "pickle" in line and "'x.npy'" in line
    line = one_line_error(run_npz(tmp_path, EXAMPLE, x=np.full((4, 64), "a")))
    assert "input 'x' is <U1" in line


def test_nan_inputs_run_with_a_warning_and_valid_json(tmp_path):
    x = np.zeros((4, 64), np.float32)
    x[0, 0] = np.nan
    result = run_npz(tmp_path, EXAMPLE, x=x)
    assert result.returncode == 0, result.stderr
    assert "input 'x' holds 1 NaN/inf value(s)" in result.stderr
    probs = json.loads(result.stdout)["outputs"]["probs"]  # strict JSON: no bare NaN
    assert probs["mean"] is None and probs["nonfinite"] == 10


def test_dtype_conversions_only_when_lossless(tmp_path, index_model):
    ints = np.arange(256).reshape(4, 64) % 7
    want = json.loads(run_npz(tmp_path, EXAMPLE, x=ints.astype(np.float32)).stdout)
    for lossless in (ints, ints.astype(np.int8), ints.astype(np.float64)):
        result = run_npz(tmp_path, EXAMPLE, x=lossless)
        assert result.returncode == 0 and json.loads(result.stdout) == want, result.stderr
    assert run_npz(tmp_path, EXAMPLE, x=np.ones((4, 64), bool)).returncode == 0
    line = one_line_error(run_npz(tmp_path, EXAMPLE, x=np.full((4, 64), HUGE + 1)))
    assert "input 'x' is int64" in line and "would change values" in line
    line = one_line_error(run_npz(tmp_path, EXAMPLE, x=np.full((4, 64), 1e300)))
    assert "overflow float32" in line
    assert run_npz(tmp_path, index_model, ids=np.array([2.0, 9.0])).returncode == 0
    for bad in (np.array([1.5, 2.0]), np.array([np.nan, 1.0]), np.array([2.0**70, 1.0])):
        line = one_line_error(run_npz(tmp_path, index_model, ids=bad))
        assert "input 'ids' is float64" in line and "int64" in line


def test_shape_and_name_mismatches_are_named(tmp_path):
    line = one_line_error(run_npz(tmp_path, EXAMPLE, x=np.zeros((4, 63), np.float32),
                                  extra=np.zeros(1)))
    assert "input 'x' has shape [4, 63], the model expects [4, 64]" in line
    assert "unknown input(s) ['extra']" in line


def npz_with_member(path: Path, member: str, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)


def npy_header(shape, dtype="<f4") -> bytes:
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def test_hostile_npz_members_are_refused_before_allocating(tmp_path):
    path = tmp_path / "in.npz"
    npz_with_member(path, "x.npy", npy_header((HUGE, 64)) + b"\0" * 64)
    line = one_line_error(run_cli("run", EXAMPLE, "--inputs", path))
    assert "header claims [1099511627776, 64] float32" in line and "memory available" in line
    npz_with_member(path, "x.npy", npy_header((4, 64)) + b"\0" * 16)
    assert "not a readable array" in one_line_error(run_cli("run", EXAMPLE, "--inputs", path))
    npz_with_member(path, "x.txt", b"hello")
    assert "is not a .npy array" in one_line_error(run_cli("run", EXAMPLE, "--inputs", path))
    with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we plant
        for _ in range(2):
            archive.writestr("x.npy", npy_header((4, 64)) + b"\0" * 1024)
    assert "appears twice" in one_line_error(run_cli("run", EXAMPLE, "--inputs", path))


# ---- --shape -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, message", [
    ("x=-1x4", "dim '-1' is not a whole number"),
    ("x=1.5x4", "dim '1.5' is not a whole number"),
    ("x=ax4", "dim 'a' is not a whole number"),
    ("x=2e3x4", "dim '2e3' is not a whole number"),
    ("x=0x4", "dims must be at least 1"),
    ("x=" + "x".join(["99999999"] * 3), "more than 2^62 elements"),
    ("x2x4", "expected NAME=DIMS"),
    ("y=2x4", "unknown input(s) ['y']"),
    ("x=2x5", "does not fit"),
])
def test_bad_shape_dims_are_refused(dynamic_onnx, shape, message):
    line = one_line_error(run_cli("run", dynamic_onnx, "--random", "--shape", shape))
    assert message in line


def test_conflicting_repeated_shape_is_refused(dynamic_onnx):
    result = run_cli("inspect", dynamic_onnx, "--shape", "x=2x4", "--shape", "x=3x4")
    assert "'x' is already given as 2x4" in one_line_error(result)


@pytest.mark.parametrize("executor", ["torch", "reference"])
def test_huge_input_is_refused_before_allocating(tmp_path, executor):
    builder = GraphBuilder("wide")
    x = builder.input("x", (2**36, 4))
    model = saved(tmp_path, builder, builder.op("Relu", x))
    line = one_line_error(run_cli("run", model, "--random", "--executor", executor))
    assert "input 'x' (float32[68719476736, 4]) needs 1.0 TiB" in line
    assert "memory available" in line
    assert run_cli("inspect", model).returncode == 0  # inspecting allocates nothing


def test_huge_shape_dim_is_refused(dynamic_onnx):
    line = one_line_error(run_cli("run", dynamic_onnx, "--random", "--shape", f"x={HUGE}x4"))
    assert "'x'" in line and "float32[1099511627776, 4]" in line


def test_huge_intermediate_is_refused_before_allocating(tmp_path):
    builder = GraphBuilder("blowup")
    x = builder.input("x", (2**20,))
    model = saved(tmp_path, builder, builder.op("Expand", x, name="wide", shape=(2**20, 2**20)))
    line = one_line_error(run_cli("run", model, "--random"))
    assert "value 'wide' (float32[1048576, 1048576]) needs 4.0 TiB" in line
    np.savez(tmp_path / "in.npz", x=np.zeros(2**20, np.float32))
    line = one_line_error(run_cli("run", model, "--inputs", tmp_path / "in.npz",
                                  "--executor", "reference"))
    assert "value 'wide'" in line


def test_shape_on_fixed_workload_must_agree():
    line = one_line_error(run_cli("run", "workload:rmsnorm_matmul:small", "--random", "--shape",
                                  "X=3x64"))
    assert "input 'X' is fixed at" in line
    line = one_line_error(run_cli("inspect", "workload:rmsnorm_matmul:small", "--shape", "Q=1"))
    assert "unknown input 'Q'" in line


# ---- options --------------------------------------------------------------------------------
def test_seed_and_executor_options():
    line = one_line_error(run_cli("run", EXAMPLE, "--random", "--seed", "-1"), code=2)
    assert "--seed" in line
    assert run_cli("run", EXAMPLE, "--random", "--seed", str(2**70)).returncode == 0
    assert one_line_error(run_cli("run", EXAMPLE, "--random", "--seed", "1.5"), code=2)
    line = one_line_error(run_cli("run", EXAMPLE, "--random", "--executor", "gpu"), code=2)
    assert "--executor" in line


def test_output_paths_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    line = one_line_error(run_cli("run", EXAMPLE, "--random", "--output", blocker / "o.npz"))
    assert "cannot write here" in line
    line = one_line_error(run_cli("run", EXAMPLE, "--random", "--output", tmp_path))
    assert "is a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert blocker.read_text() == "keep"


def test_output_names_that_np_savez_would_misread(tmp_path):
    builder = GraphBuilder("names")
    x = builder.input("x", (3,))
    model = saved(tmp_path, builder, builder.op("Relu", x, name="file"),
                  builder.op("Neg", x, name="allow_pickle"))
    result = run_cli("run", model, "--random", "--output", tmp_path / "o.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "o.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["allow_pickle", "file"]
        x = -data["allow_pickle"]  # file = relu(x), allow_pickle = -x
        np.testing.assert_array_equal(data["file"], np.maximum(x, 0))


# ---- inspect and model specs --------------------------------------------------------------------
def test_inspect_nodes_must_be_non_negative():
    assert "--nodes" in one_line_error(run_cli("inspect", EXAMPLE, "--nodes", "-1"), code=2)
    result = run_cli("inspect", EXAMPLE, "--nodes", "0")
    assert result.returncode == 0 and "11 more nodes" in result.stdout


@pytest.mark.parametrize("spec, message", [
    ("no/such/model.onnx", "no such file"),
    ("nothing_here", "no such file; a model is"),
    ("workload:no_such_workload", "unknown workload 'no_such_workload'"),
    ("mlc_no_such_module_xyz:build", "cannot import module 'mlc_no_such_module_xyz'"),
    ("json:no_such_callable", "module 'json' has no attribute 'no_such_callable'"),
    ("os.path:sep", "has a non-callable 'sep'"),
    ("json:dumps", "dumps() raised TypeError"),
    (":build", "not module:callable"),
    ("json:", "not module:callable"),
])
def test_model_specs_that_do_not_resolve(spec, message):
    assert message in one_line_error(run_cli("inspect", spec))


def test_plain_folder_is_not_an_artifact(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    assert "not an mlc artifact directory" in one_line_error(run_cli("inspect", tmp_path))


def test_user_callables_that_fail(tmp_path, monkeypatch):
    (tmp_path / "mlc_hostile_user_models.py").write_text(
        "def boom():\n    raise RuntimeError('no GPU here')\n"
        "def wrong():\n    return 42\n"
        "def not_a_module():\n    return ('model', ())\n")
    (tmp_path / "mlc_hostile_broken.py").write_text("raise ValueError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {"mlc_hostile_user_models:boom": "boom() raised RuntimeError: no GPU here",
             "mlc_hostile_user_models:wrong": "must return (torch_module, example_inputs), "
                                              "got int",
             "mlc_hostile_user_models:not_a_module": "got (str, tuple)",
             "mlc_hostile_broken:build": "importing 'mlc_hostile_broken' raised ValueError"}
    for spec, message in cases.items():
        assert message in one_line_error(run_cli("inspect", spec))


def test_compiled_artifact_inputs_are_checked_too(tmp_path):
    """An `mlc compile` artifact (a µGraph beside its kernels): --shape does not apply, and its
    .npz inputs pass the same checks (here a complex array)."""
    folder = tmp_path / "compiled"
    (folder / "kernels").mkdir(parents=True)
    mugraphs = Path(__file__).resolve().parents[2] / "specs" / "mugraphs"
    (folder / "kernels" / "mugraph.json").write_text((mugraphs / "lora_small.json").read_text())
    line = one_line_error(run_cli("run", folder, "--random", "--shape", "X=1"))
    assert "a compiled artifact has fixed shapes" in line
    np.savez(tmp_path / "in.npz", X=np.ones((4, 32), np.complex64), W=np.ones((32, 48)),
             A=np.ones((32, 4)), B=np.ones((4, 48)))
    line = one_line_error(run_cli("run", folder, "--inputs", tmp_path / "in.npz"))
    assert "input 'X' is complex64" in line


def test_shape_on_graph_json_must_agree(tmp_path):
    builder = GraphBuilder("fixed")
    model = saved(tmp_path, builder, builder.op("Relu", builder.input("x", (2, 3))))
    assert "input 'x' is fixed at [2, 3]" in one_line_error(
        run_cli("run", model, "--random", "--shape", "x=3x3"))
    assert run_cli("run", model / "graph.json", "--random", "--shape", "x=2x3").returncode == 0


def test_out_of_range_gather_indices_are_refused_before_running(tmp_path):
    """An embedding lookup with an id past the table: one line naming the input and the valid
    range, from either executor (torch used to raise IndexError, numpy to read the message)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"])], "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "emb.onnx")
    for executor in ("torch", "reference"):
        line = one_line_error(run_npz(tmp_path, tmp_path / "emb.onnx", "--executor", executor,
                                      ids=np.array([1, 50, -20])))
        assert "input 'ids': index 50 is out of range" in line and "-10 to 9" in line
    good = run_npz(tmp_path, tmp_path / "emb.onnx", ids=np.array([1, 9, -10]))
    assert good.returncode == 0, good.stderr
