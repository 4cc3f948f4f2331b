"""Hostile `.pt2` archives: a payload planted in any entry (a pickle, a sympy expression, a
callable target) is refused with one clear line, and nothing in it runs.

Payloads are built from pickle opcodes and never loaded here; each would create a marker file
if anything unpickled or evaluated it, so the tests check the marker does not exist."""

from __future__ import annotations

import io
import json
import pickletools
import struct
import warnings
import zipfile

import numpy as np
import pytest
import torch

from mlc.cli.testing import run_cli
from mlc.compiler.errors import MlcError
from mlc.compiler.frontends.pt2_archive import pickle_globals, read_export_archive
from mlc.compiler.frontends.torch_frontend import load_pt2
from mlc.compiler.ir import interpret

MODEL = "model"


class _Small(torch.nn.Module):
    """Weights, a buffer and a lifted constant: every payload entry kind torch.export writes."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.register_buffer("shift", torch.ones(3))
        self.scale = torch.tensor([2.0, 3.0, 4.0])

    def forward(self, x):
        return self.linear(x) * self.scale + self.shift


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """(path of a real archive, its entries by full name, the module it was exported from)."""
    path, module = tmp_path_factory.mktemp("pt2") / "small.pt2", _Small().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module, (torch.randn(2, 4),)), str(path))
    with zipfile.ZipFile(path) as zipped:
        entries = {name: zipped.read(name) for name in zipped.namelist()}
    return path, entries, module


def _payload(marker, protocol: int = 2) -> bytes:
    """A pickle that would create `marker` when loaded: builtins.open(marker, "w")."""
    path = str(marker)
    if protocol == 0:  # the text form, no PROTO header
        return f"cbuiltins\nopen\n(V{path}\nVw\ntR.".encode()
    encoded = path.encode()
    return (b"\x80\x02cbuiltins\nopen\n(X" + struct.pack("<I", len(encoded)) + encoded
            + b"X\x01\x00\x00\x00wtR.")


def _torch_save_zip(data_pkl: bytes) -> bytes:
    """A torch.save-shaped zip whose data.pkl is `data_pkl`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("archive/data.pkl", data_pkl)
        zipped.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def _write(path, entries: dict[str, bytes], extra: list[tuple[str, bytes]] = ()) -> None:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in [*entries.items(), *extra]:
            zipped.writestr(name, data)


def _name(entries, suffix: str) -> str:
    return next(name for name in entries if name.endswith(suffix))


def _edit_json(entries, suffix: str, edit) -> dict[str, bytes]:
    name = _name(entries, suffix)
    doc = json.loads(entries[name])
    edit(doc)
    return {**entries, name: json.dumps(doc).encode()}


def _as_pickled(entries, config_suffix: str, payload: bytes) -> dict[str, bytes]:
    """Mark the first payload of a config as pickled, as torch writes tensor subclasses."""
    config = json.loads(entries[_name(entries, config_suffix)])
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    folder = _name(entries, config_suffix).rsplit("/", 1)[0]
    return {**entries, _name(entries, config_suffix): json.dumps(config).encode(),
            f"{folder}/{first['path_name']}": _torch_save_zip(payload)}


def _rename(doc, old: str, new: str):
    """Replace the name `old` by `new` in every key and string value of a JSON document."""
    stack = [doc]
    while stack:
        value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in list(items):
            if item == old:
                value[key] = new
            elif isinstance(item, (dict, list)):
                stack.append(item)
        if isinstance(value, dict) and old in value:
            value[new] = value.pop(old)
    return doc


def _first_node(doc):
    return doc["graph_module"]["graph"]["nodes"][0]


# variant name -> (function(entries, marker) -> entries, extra entries, expected words)
def _variants():
    def sample_inputs(entries, marker):
        return {**entries, _name(entries, "sample_inputs/model.pt"):
                _torch_save_zip(_payload(marker))}

    def sample_inputs_raw(entries, marker):
        return {**entries, _name(entries, "sample_inputs/model.pt"): _payload(marker)}

    def weight_bytes(entries, marker):
        return {**entries, _name(entries, "weights/weight_0"): _payload(marker)}

    def constant_bytes(entries, marker):
        return {**entries, _name(entries, "constants/tensor_0"): _payload(marker, protocol=0)}

    def weight_zip(entries, marker):
        return {**entries, _name(entries, "weights/weight_0"): _torch_save_zip(_payload(marker))}

    def weights_config_pickled(entries, marker):
        return _as_pickled(entries, "model_weights_config.json", _payload(marker))

    def constants_config_pickled(entries, marker):
        return _as_pickled(entries, "model_constants_config.json", _payload(marker))

    def custom_object(entries, marker):
        def edit(doc):
            doc["config"]["obj"] = {"path_name": "custom_obj_0", "is_param": False,
                                    "use_pickle": True, "tensor_meta": None}
        edited = _edit_json(entries, "model_constants_config.json", edit)
        root = _name(entries, "archive_format").split("/")[0]
        return {**edited, f"{root}/data/constants/custom_obj_0": _payload(marker)}

    def model_json_is_pickle(entries, marker):
        return {**entries, _name(entries, "models/model.json"): _payload(marker)}

    def config_is_pickle(entries, marker):
        return {**entries, _name(entries, "model_weights_config.json"): _payload(marker)}

    def sympy_expression(entries, marker):
        def edit(doc):
            sizes = next(iter(doc["graph_module"]["graph"]["tensor_values"].values()))["sizes"]
            sizes[0] = {"as_expr": {"expr_str": f"__import__('os').system('touch {marker}')",
                                    "hint": {"as_int": 2}}}
        return _edit_json(entries, "models/model.json", edit)

    def callable_target(entries, marker):
        def edit(doc):
            node = _first_node(doc)
            node["target"] = "torch.os.system"
            node["inputs"] = [{"name": "command", "arg": {"as_string": f"touch {marker}"},
                               "kind": 1}]
        return _edit_json(entries, "models/model.json", edit)

    def operator_argument(entries, marker):
        def edit(doc):
            _first_node(doc)["inputs"][0]["arg"] = {"as_operator": "torch.os.system"}
        return _edit_json(entries, "models/model.json", edit)

    def placeholder_name(entries, marker):
        """Rename the input `x` everywhere: torch.fx writes placeholder names into the
        `def forward(...)` it execs, so a default value would run."""
        hostile = f"x=__import__('os').system('touch {marker}')"
        return _edit_json(entries, "models/model.json", lambda doc: _rename(doc, "x", hostile))

    def module_path(entries, marker):
        """A parameter path with quotes: torch.fx writes it as getattr(self, "...")."""
        hostile = f'linear.weight")or __import__("os").system("touch {marker}")or getattr(self,"w'
        edited = _edit_json(entries, "models/model.json",
                            lambda doc: _rename(doc, "linear.weight", hostile))
        return _edit_json(edited, "model_weights_config.json",
                          lambda doc: _rename(doc, "linear.weight", hostile))

    def plant(name):
        def planted(entries, marker):
            root = _name(entries, "archive_format").split("/")[0]
            return {**entries, name.format(root=root): _payload(marker)}
        return planted

    return {
        "sample inputs (torch.save zip)": (sample_inputs, "imports builtins.open"),
        "sample inputs (bare pickle)": (sample_inputs_raw, "not a torch.save file"),
        "weight bytes": (weight_bytes, "is a pickle"),
        "constant bytes (protocol 0)": (constant_bytes, "is a pickle"),
        "weight bytes (torch.save zip)": (weight_zip, "is a zip"),
        "weights config use_pickle": (weights_config_pickled, "pickle"),
        "constants config use_pickle": (constants_config_pickled, "pickle"),
        "custom object constant": (custom_object, "is a pickle"),
        "model json replaced": (model_json_is_pickle, "is a pickle"),
        "weights config replaced": (config_is_pickle, "is a pickle"),
        "sympy shape expression": (sympy_expression, "shape expression"),
        "callable node target": (callable_target, "not an aten or prims operator"),
        "callable argument": (operator_argument, "passes a Python callable"),
        "placeholder name": (placeholder_name, "not a plain identifier"),
        "module path": (module_path, "module path"),
        "legacy pickled weights": (plant("{root}/data/weights/model.pt"), "is a pickle"),
        "legacy pickled constants": (plant("{root}/data/constants/model.pt"), "is a pickle"),
        "opaque object": (plant("{root}/data/constants/opaque_obj_0"), "is a pickle"),
        "extra data.pkl": (plant("{root}/data.pkl"), "is a pickle"),
        "extra file": (plant("{root}/extra/notes.txt"), "not part of a torch.export archive"),
        "AOTInductor binary": (plant("{root}/data/aotinductor/model/model.so"), "AOTInductor"),
        "unlisted weight": (plant("{root}/data/weights/weight_9"), "is a pickle"),
        "outside the root": (plant("evil/data.pkl"), "outside the archive's folder"),
    }


VARIANTS = _variants()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_planted_payload_is_refused_and_never_runs(archive, tmp_path, variant):
    _, entries, _ = archive
    build, expected = VARIANTS[variant]
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt2"
    _write(hostile, build(entries, marker))
    for args in (["inspect", hostile], ["run", hostile, "--random"],
                 ["import", hostile, "--out", tmp_path / "out"]):
        result = run_cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert str(hostile) in lines[0] and expected in lines[0], lines[0]
        assert "re-export" in lines[0] and "Traceback" not in result.stderr
        assert not marker.exists(), f"{variant}: the payload ran on mlc {args[0]}"
    assert not (tmp_path / "out").exists()


def test_refusal_names_the_entry(archive, tmp_path):
    _, entries, _ = archive
    hostile = tmp_path / "m.pt2"
    _write(hostile, VARIANTS["weight bytes"][0](entries, tmp_path / "pwned"))
    with pytest.raises(MlcError, match=r"m\.pt2: entry 'data/weights/weight_0' is a pickle"):
        load_pt2(hostile)


def test_duplicate_entries_are_refused(archive, tmp_path):
    _, entries, _ = archive
    hostile, model = tmp_path / "dup.pt2", _name(entries, "models/model.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        _write(hostile, entries, [(model, entries[model])])
    with pytest.raises(MlcError, match="appears twice"):
        load_pt2(hostile)


def test_weight_shorter_than_its_shape_is_refused(archive, tmp_path):
    _, entries, _ = archive
    hostile, weight = tmp_path / "short.pt2", _name(entries, "weights/weight_0")
    _write(hostile, {**entries, weight: entries[weight][:4]})
    with pytest.raises(MlcError, match="too few"):
        load_pt2(hostile)


def test_real_archive_loads_without_any_unpickling(archive, monkeypatch):
    """The sample inputs (a pickle in every real archive) are never read: unpickling is made
    to fail for the whole load, and the model still imports and matches torch."""
    path, _, module = archive

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for owner, name in ((torch, "load"), (torch._C, "_pickle_load_obj")):
        monkeypatch.setattr(owner, name, refuse)
    import pickle
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    ep = read_export_archive(path)
    assert ep.example_inputs is None
    graph = load_pt2(path)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    got = interpret(graph, {"x": x})[graph.outputs[0]]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_legit_archive_still_runs(archive):
    path, _, module = archive
    result = run_cli("inspect", path)
    assert result.returncode == 0, result.stderr


def test_payload_builder_is_a_pickle_of_the_expected_global(tmp_path):
    """The planted payloads really are pickles importing builtins.open (read, never run)."""
    for protocol in (0, 2):
        data = _payload(tmp_path / "pwned", protocol)
        assert pickle_globals(data) == ["builtins.open"]
        assert [op.name for op, _, _ in pickletools.genops(data)][-2:] == ["REDUCE", "STOP"]


def test_stack_global_is_resolved_only_when_unambiguous():
    """A protocol-4 STACK_GLOBAL is read from the two strings pushed right before it; strings
    popped in between cannot disguise the real import."""
    def short(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()

    plain = b"\x80\x04" + short("os") + b"\x94" + short("system") + b"\x94\x93."
    assert pickle_globals(plain) == ["os.system"]
    disguised = (b"\x80\x04" + short("os") + short("system") + short("torch._utils")
                 + short("_rebuild_tensor_v2") + b"00\x93.")  # 0 is POP
    assert pickle_globals(disguised) == ["<unresolved>"]


def test_zero_stride_weight_too_large_to_import_is_refused(archive, tmp_path):
    _, entries, _ = archive

    def edit(doc):
        meta = doc["config"]["shift"]["tensor_meta"]
        meta["sizes"], meta["strides"] = [{"as_int": 2**40}], [{"as_int": 0}]
    hostile = tmp_path / "broadcast.pt2"
    _write(hostile, _edit_json(entries, "model_weights_config.json", edit))
    result = run_cli("inspect", hostile)
    assert result.returncode == 1 and "broadcast too large" in result.stderr, result.stderr


class _Folded(torch.nn.Module):
    def forward(self, x):
        return x + torch.full((4, 4), 1.0).sum()


def test_huge_folded_constant_is_bad_input_not_a_crash(tmp_path):
    """A node whose constant inputs ask torch for 2^40 elements: exit 1, nothing allocated."""
    path = tmp_path / "folded.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(_Folded(), (torch.randn(4, 4),)), str(path))
    with zipfile.ZipFile(path) as zipped:
        entries = {name: zipped.read(name) for name in zipped.namelist()}

    def edit(doc):
        graph = doc["graph_module"]["graph"]
        node = next(n for n in graph["nodes"] if n["target"].endswith("aten.full.default"))
        node["inputs"][0]["arg"] = {"as_ints": [2**20, 2**20]}
        value = graph["tensor_values"][node["outputs"][0]["as_tensor"]["name"]]
        value["sizes"] = [{"as_int": 2**20}, {"as_int": 2**20}]
        value["strides"] = [{"as_int": 2**20}, {"as_int": 1}]
    hostile = tmp_path / "huge.pt2"
    _write(hostile, _edit_json(entries, "models/model.json", edit))
    result = run_cli("inspect", hostile)
    assert result.returncode == 1, result.stderr
    assert "a constant of 1,099,511,627,776 elements" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_guards_code_is_dropped_not_run(archive, tmp_path):
    """torch.export compiles `guards_code` strings with exec when it decomposes a program; mlc
    drops them (it fixes shapes itself), so the model imports and nothing runs."""
    _, entries, _ = archive
    marker = tmp_path / "pwned"

    def edit(doc):
        doc["guards_code"] = [f"__import__('os').system('touch {marker}') or True"]
    hostile = tmp_path / "guards.pt2"
    _write(hostile, _edit_json(entries, "models/model.json", edit))
    result = run_cli("run", hostile, "--random")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("tensor_meta", [5, [], {"dtype": [7]}, {"dtype": 7, "sizes": "2"}])
def test_malformed_tensor_meta_is_a_clear_error(archive, tmp_path, tensor_meta):
    _, entries, _ = archive

    def edit(doc):
        doc["config"]["linear.weight"]["tensor_meta"] = tensor_meta
    hostile = tmp_path / "meta.pt2"
    _write(hostile, _edit_json(entries, "model_weights_config.json", edit))
    result = run_cli("inspect", hostile)
    assert result.returncode == 1, result.stderr
    assert "dtype, shape or strides mlc cannot read" in result.stderr
