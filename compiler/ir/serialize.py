"""JSON round-trip of graphs: graph.json for structure, weights.safetensors beside it.

Weights are never pickled. Dtypes safetensors cannot hold go to weights.npz (allow_pickle off).
A graph.json is a file a user may hand us, so `load_graph` checks every field (types, names,
shapes, dtypes, ops, attributes, weights) and names the file and the node in each error.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import MlcError
from ..safe_io import dump_json, parse_json, read_json
from .graph import Graph, IRError, Node
from .ops import OPS
from .types import DTYPES, TensorType, available_memory, format_bytes, np_dtype

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
WEIGHTS_SUFFIXES = (".safetensors", ".npz")
MAX_NPZ_MEMBERS = 100_000
NONFINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}

# ---- attribute kinds, by attribute name (names mean the same thing in every op) ----------------
# int: a whole number; ints: a list of them; float: a number (or {"float": "inf"}); "?" allows
# null; dtype: an IR dtype name; json: a JSON document in a string (MuGraphCall's µGraph).
ATTR_KINDS = {
    **dict.fromkeys(("keepdims", "select_last_index", "transA", "transB", "group", "ceil_mode",
                     "count_include_pad", "num_outputs", "fmod", "batch_dims", "bits",
                     "detect_negative", "detect_positive", "saturate"), "int"),
    "axis": "int?",
    "axes": "ints?",
    **dict.fromkeys(("strides", "pads", "dilations", "kernel_shape", "shape", "perm", "split",
                     "starts", "ends", "steps", "repeats"), "ints"),
    **dict.fromkeys(("alpha", "beta", "gamma", "epsilon", "value"), "float"),
    **dict.fromkeys(("min", "max"), "float?"),
    **dict.fromkeys(("mode", "approximate"), "str"),
    "to": "dtype",
    "mugraph": "json",
}


def graph_to_json(graph: Graph) -> dict:
    """The JSON document of a graph (without weight data)."""
    return {
        "format_version": FORMAT_VERSION,
        "name": graph.name,
        "inputs": [{"name": n, "shape": list(t.shape), "dtype": t.dtype}
                   for n, t in graph.inputs.items()],
        "outputs": list(graph.outputs),
        "weights_file": WEIGHTS_FILE,
        "weights": [{"name": n, "shape": list(w.shape), "dtype": TensorType.of(w).dtype}
                    for n, w in graph.weights.items()],
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
                   "outputs": list(n.outputs), "attrs": _attrs_to_json(n.attrs)}
                  for n in graph.nodes],
    }


def _attrs_to_json(attrs: dict) -> dict:
    def convert(v):
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        if isinstance(v, float) and not np.isfinite(v):
            return {"float": repr(v)}  # JSON has no inf/nan
        return v
    return {k: convert(v) for k, v in attrs.items()}


def save_graph(graph: Graph, directory: Path) -> None:
    """Write graph.json and the weights file into an existing directory."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    directory = Path(directory)
    doc = graph_to_json(graph)
    try:
        save_file({k: np.require(v, requirements="C") for k, v in graph.weights.items()},
                  str(directory / WEIGHTS_FILE))
    except (ValueError, TypeError, SafetensorError):  # a dtype safetensors lacks (int4, ...)
        doc["weights_file"] = "weights.npz"
        write_npz(directory / "weights.npz", graph.weights)
    (directory / "graph.json").write_text(dump_json(doc, indent=1) + "\n")


# ---- .npz files: written and read member by member, bounded, never pickled ---------------------
def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays by name into an .npz file. Unlike np.savez, any name works (a tensor named
    `file` or `allow_pickle` is stored, not taken for an argument)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def read_npz(path, what: str = ".npz file") -> dict[str, np.ndarray]:
    """Arrays by name from an .npz file, refusing pickles, non-array members, duplicate names
    and headers whose arrays would not fit in memory (checked before anything is allocated)."""
    path = Path(path)
    if path.is_dir():
        raise MlcError(f"{path}: is a folder; expected a {what} (np.savez(path, name=array))")
    if path.exists() and not path.is_file():  # /dev/zero, a FIFO: zipfile would read forever
        raise MlcError(f"{path}: is not a regular file; expected a {what}")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_npz_members(archive, path, what)
    except FileNotFoundError:
        raise MlcError(f"{path}: no such file (expected a {what})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError):
        hint = " (it is a .npy file: save named arrays with np.savez)" if _is_npy(path) else ""
        raise MlcError(f"{path}: not an .npz archive{hint}; expected a {what}") from None
    except OSError as err:
        raise MlcError(f"{path}: cannot read ({err.strerror or err})") from None


def _is_npy(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(6) == b"\x93NUMPY"
    except OSError:
        return False


def _read_npz_members(archive: zipfile.ZipFile, path: Path, what: str) -> dict:
    members = archive.infolist()
    if len(members) > MAX_NPZ_MEMBERS:
        raise MlcError(f"{path}: {len(members):,} members, more than a {what} may hold")
    arrays: dict[str, np.ndarray] = {}
    budget = available_memory()
    for member in members:
        name = member.filename.removesuffix(".npy")
        where = f"{path}: member {member.filename!r}"
        if member.is_dir() or not member.filename.endswith(".npy"):
            raise MlcError(f"{where} is not a .npy array; expected a {what} of named arrays")
        if name in arrays:
            raise MlcError(f"{where} appears twice; each array name must be unique")
        try:
            with archive.open(member) as handle:
                arrays[name] = _read_npy(handle, member, where, budget)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise MlcError(f"{where}: not a readable array ({err})") from None
        budget -= arrays[name].nbytes
    return arrays


def _read_npy(handle, member: zipfile.ZipInfo, where: str, budget: int) -> np.ndarray:
    """One .npy member: header first, so a hostile shape is refused before any allocation."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise MlcError(f"{where}: holds Python objects (a pickle); mlc only reads plain "
                       "numeric arrays")
    count = int(np.prod(shape, dtype=object))
    nbytes = count * dtype.itemsize
    if nbytes > budget:
        raise MlcError(f"{where}: its header claims {list(shape)} {dtype} ({format_bytes(nbytes)})"
                       f", more than the {format_bytes(max(budget, 0))} of memory available")
    if nbytes > member.file_size:  # the zip's own size record: refuse before allocating
        raise ValueError(f"holds {member.file_size} bytes, its header claims {nbytes} of data")
    data = bytearray(nbytes)
    if handle.readinto(data) != nbytes:
        raise ValueError(f"the data ends before the {nbytes} bytes its header claims")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


# ---- loading graph.json -----------------------------------------------------------------------
def load_graph(path: Path) -> Graph:
    """Read a graph.json (and its weights) written by save_graph, checking every field."""
    path = Path(path)
    doc = read_json(path, "mlc graph.json")
    _expect(isinstance(doc, dict), path, "the document is not a JSON object")
    _only_keys(doc, {"format_version", "name", "inputs", "outputs", "weights_file", "weights",
                     "nodes"}, path, "the document")
    version = doc.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise MlcError(f"{path}: format_version {version!r} is not {FORMAT_VERSION}; re-import "
                       "the model with this mlc")
    name = _field(doc, "name", str, path, "the document")
    inputs = _tensor_list(doc, "inputs", path)
    weight_types = _tensor_list(doc, "weights", path)
    outputs = _name_list(_field(doc, "outputs", list, path, "the document"), path, "outputs")
    _unique(outputs, path, "graph output")
    nodes = [_node(entry, i, path) for i, entry in
             enumerate(_field(doc, "nodes", list, path, "the document"))]
    weights = _weights(path, doc, weight_types)
    try:
        return Graph.build(name, inputs, nodes, outputs, weights)
    except (IRError, ValueError) as err:
        raise MlcError(f"{path}: not a valid mlc graph ({err})") from None


def _expect(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise MlcError(f"{path}: {message}; is this a graph.json written by mlc?")


def _only_keys(entry: dict, allowed: set[str], path: Path, where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    _expect(not unknown, path, f"{where} has unknown field(s) {unknown}")


def _field(entry: dict, key: str, kind: type, path: Path, where: str):
    value = entry.get(key)
    _expect(isinstance(value, kind) and not isinstance(value, bool), path,
            f"{where}: {key!r} must be a {kind.__name__}, got {value!r:.80}")
    return value


def _name_list(values: list, path: Path, where: str) -> list[str]:
    for value in values:
        _expect(isinstance(value, str) and value != "", path,
                f"{where}: {value!r:.80} is not a tensor name (a non-empty string)")
    return values


def _unique(names: list[str], path: Path, what: str) -> None:
    seen = set()
    for name in names:
        _expect(name not in seen, path, f"{what} {name!r} is listed twice")
        seen.add(name)


def _tensor_list(doc: dict, key: str, path: Path) -> dict[str, TensorType]:
    """`inputs` / `weights`: [{name, shape, dtype}], names unique, shapes whole and >= 0."""
    types: dict[str, TensorType] = {}
    for i, entry in enumerate(_field(doc, key, list, path, "the document")):
        where = f"{key}[{i}]"
        _expect(isinstance(entry, dict), path, f"{where} is not an object")
        _only_keys(entry, {"name", "shape", "dtype"}, path, where)
        name = _name_list([entry.get("name")], path, where)[0]
        _expect(name not in types, path, f"{key} name {name!r} is listed twice")
        shape = _field(entry, "shape", list, path, f"{where} ({name})")
        for dim in shape:
            _expect(type(dim) is int and dim >= 0, path,
                    f"{where} ({name}): shape {shape} holds {dim!r}; dims are whole numbers >= 0")
        dtype = entry.get("dtype")
        _expect(dtype in DTYPES, path, f"{where} ({name}): dtype {dtype!r:.40} is not an IR dtype "
                f"({', '.join(DTYPES)})")
        types[name] = TensorType(tuple(shape), dtype)
    return types


def _node(entry, index: int, path: Path) -> Node:
    """One node entry, with its op known and its attributes of the right kinds."""
    where = f"nodes[{index}]"
    _expect(isinstance(entry, dict), path, f"{where} is not an object")
    _only_keys(entry, {"name", "op", "inputs", "outputs", "attrs"}, path, where)
    name = _field(entry, "name", str, path, where)
    where = f"node {name!r} ({where})"
    op = _field(entry, "op", str, path, where)
    if op not in OPS:
        raise MlcError(f"{path}: {where}: unknown op {op!r:.80}; `mlc ops` lists the IR ops")
    where = f"node {name!r} ({op})"
    inputs = _name_list(_field(entry, "inputs", list, path, where), path, f"{where} inputs")
    outputs = _name_list(_field(entry, "outputs", list, path, where), path, f"{where} outputs")
    _unique(outputs, path, f"{where}: output")
    attrs = _field(entry, "attrs", dict, path, where)
    converted = {key: _attr(key, value, path, f"{where}: attribute {key!r}")
                 for key, value in attrs.items()}
    return Node(op, inputs, outputs, converted, name)


def _attr(key: str, value, path: Path, where: str):
    """An attribute value checked against its kind (see ATTR_KINDS) and converted to IR form."""
    kind = ATTR_KINDS.get(key, "any")
    if value is None and (kind.endswith("?") or kind == "any"):
        return None
    kind = kind.rstrip("?")
    if kind == "int":
        _expect(type(value) is int, path, f"{where} must be a whole number, got {value!r:.80}")
        return value
    if kind == "ints":
        _expect(isinstance(value, list) and all(type(v) is int for v in value), path,
                f"{where} must be a list of whole numbers, got {value!r:.80}")
        return tuple(value)
    if kind == "float":
        return _float_attr(value, path, where)
    if kind == "str":
        _expect(isinstance(value, str), path, f"{where} must be a string, got {value!r:.80}")
        return value
    if kind == "dtype":
        _expect(value in DTYPES, path, f"{where}: {value!r:.40} is not an IR dtype")
        return value
    if kind == "json":
        _expect(isinstance(value, str), path, f"{where} must be a JSON string")
        parse_json(value, f"{path}: {where}")  # bounded: depth, NaN, encoding
        return value
    return _any_attr(value, path, where)


def _float_attr(value, path: Path, where: str) -> float:
    if isinstance(value, dict) and set(value) == {"float"} and value["float"] in NONFINITE:
        return NONFINITE[value["float"]]
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool), path,
            f"{where} must be a number, got {value!r:.80}")
    return value


def _any_attr(value, path: Path, where: str):
    """An attribute of an op added after ATTR_KINDS: plain scalars or lists of them."""
    if isinstance(value, list):
        return tuple(_any_attr(v, path, where) for v in value)
    if isinstance(value, dict):
        return _float_attr(value, path, where)
    return value


def _weights(path: Path, doc: dict, types: dict[str, TensorType]) -> dict[str, np.ndarray]:
    """The weights file beside graph.json, holding exactly the listed arrays and types."""
    file_name = _field(doc, "weights_file", str, path, "the document")
    _expect(Path(file_name).name == file_name and not file_name.startswith(".")
            and Path(file_name).suffix in WEIGHTS_SUFFIXES, path,
            f"weights_file {file_name!r:.80} must be a .safetensors or .npz file name beside "
            "graph.json")
    if not types:
        return {}
    weights_path = path.parent / file_name
    if weights_path.is_symlink() or not weights_path.is_file():
        raise MlcError(f"{weights_path}: weights file is missing (or not a plain file); "
                       f"{path} lists {len(types)} weights")
    weights = _load_weights(weights_path)
    missing = [name for name in types if name not in weights]
    if missing:
        raise MlcError(f"{weights_path}: missing weights {missing[:5]} that {path.name} lists")
    extra = sorted(set(weights) - set(types))
    if extra:
        raise MlcError(f"{weights_path}: holds arrays {extra[:5]} that {path.name} does not list")
    for name, expected in types.items():
        weights[name] = _with_listed_dtype(weights[name], expected.dtype)
        try:
            got = TensorType.of(weights[name])
        except ValueError as err:
            raise MlcError(f"{weights_path}: weight {name!r}: {err}") from None
        if got != expected:
            raise MlcError(f"{weights_path}: weight {name!r} is {got}, {path.name} says "
                           f"{expected}")
    return {name: weights[name] for name in types}  # graph.json's order, not the file's


def _with_listed_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """.npy has no names for ml_dtypes (int4, float8, ...): it stores them as raw bytes, and
    graph.json's listed dtype says what those bytes are."""
    target = np_dtype(dtype)
    if array.dtype.kind == "V" and array.dtype.itemsize == target.itemsize:
        return array.view(target)
    return array


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        return read_npz(path, "weights file")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise MlcError(f"{path}: not a readable safetensors file ({err})") from None
