"""Read a torch.export `.pt2` archive without running anything that is inside it.

`torch.export.load` unpickles several entries (sample inputs, tensor-subclass weights and
constants, custom and opaque objects, legacy state dicts), loads AOTInductor shared libraries,
and turns parts of the model JSON into code (pt2_model checks those). So every entry is
checked here against the layout `torch.export.save` writes for plain tensors, and torch then
reads a fresh in-memory archive holding only the checked entries, with the sample inputs
(always a pickle, and never needed by mlc) left empty.

    ep = read_export_archive("model.pt2")
"""

from __future__ import annotations

import io
import json
import math
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.export.pt2_archive import constants as layout

from ..errors import MlcError
from ..safe_io import parse_json
from .pt2_model import MODULE_PATH, check_model_json
from .pt2_model import EntryRefused as _Refused

REEXPORT = ("mlc reads only plain torch.export archives; re-export the model with "
            "torch.export.save(torch.export.export(model, example_inputs), 'model.pt2')")
NOT_AN_ARCHIVE = "only torch.export archives (.pt2) are accepted; re-export with torch.export.save"

MAX_ENTRIES = 100_000
MAX_COMPRESSION_RATIO = 1_000  # deflated JSON reaches ~20; more is a zip bomb
MAX_BROADCAST = 64  # elements per stored element of a weight with zero strides

# ---- the entries torch.export.save writes (paths relative to the archive's root folder) ----
_TEXT_ENTRIES = {  # entry -> the pattern its whole text must match
    layout.ARCHIVE_FORMAT_PATH: re.escape(layout.ARCHIVE_FORMAT_VALUE),
    layout.ARCHIVE_VERSION_PATH: re.escape(layout.ARCHIVE_VERSION_VALUE),
    "byteorder": "little|big",
    ".data/version": r"\d{1,6}\n?",
    ".data/serialization_id": r"[0-9A-Za-z]{1,64}",
}
_RAW_DIRS = {layout.WEIGHTS_DIR: layout.WEIGHT_FILENAME_PREFIX,
             layout.CONSTANTS_DIR: layout.TENSOR_CONSTANT_FILENAME_PREFIX}

# ---- the sample inputs: a torch.save pickle that may only rebuild plain tensors -------------
_SAMPLE_INPUT_GLOBALS = frozenset(
    ["torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
     "torch._utils._rebuild_parameter_with_state", "collections.OrderedDict"]
    + [f"torch.{kind}Storage" for kind in ("Byte", "Char", "Short", "Int", "Long", "Half",
                                           "Float", "Double", "Bool", "BFloat16")])
_STRING_OPS = frozenset(["STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                         "SHORT_BINUNICODE", "BINUNICODE8"])
_MEMO_PUT_OPS = frozenset(["PUT", "BINPUT", "LONG_BINPUT"])
_MEMO_GET_OPS = frozenset(["GET", "BINGET", "LONG_BINGET"])


@dataclass
class _Archive:
    """The checked entries of one archive, by path relative to its root folder."""

    root: str
    entries: dict[str, bytes] = field(default_factory=dict)
    model: str = ""


def read_export_archive(path) -> torch.export.ExportedProgram:
    """The ExportedProgram of a `.pt2` archive; an entry that could run code is an MlcError.

    >>> ep = read_export_archive("cnn.pt2")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        archive = _check_archive(path)
    except _Refused as err:
        raise MlcError(f"{path}: entry {err.entry!r} {err.reason}; {REEXPORT}") from None
    from torch.export.pt2_archive._package import load_pt2 as torch_load_pt2
    try:
        contents = torch_load_pt2(_rebuilt(archive))
        return contents.exported_programs[archive.model]
    except Exception as err:  # torch's own checks on what passed ours: bad shapes, versions
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise MlcError(f"{path}: cannot read the torch.export archive ({first}); "
                       "re-export with torch.export.save") from None


# ---- the archive as a whole ----------------------------------------------------------------
def _check_archive(path: Path) -> _Archive:
    """Read every entry once and check it; nothing of it reaches torch before this returns."""
    try:
        with zipfile.ZipFile(path) as zipped:
            infos = zipped.infolist()
            archive = _Archive(root=_root_folder(infos))
            for info in infos:
                archive.entries[_relative(info, archive.root)] = _read_entry(zipped, info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
        raise MlcError(f"{path}: {NOT_AN_ARCHIVE}") from None
    except OSError as err:
        raise MlcError(f"{path}: cannot read ({err.strerror or err})") from None
    if layout.ARCHIVE_FORMAT_PATH not in archive.entries:
        raise MlcError(f"{path}: {NOT_AN_ARCHIVE}")
    _check_entries(archive)
    return archive


def _root_folder(infos: list[zipfile.ZipInfo]) -> str:
    """The one folder every entry lives in (torch.save's layout); anything else is not ours."""
    if not infos or len(infos) > MAX_ENTRIES:
        raise zipfile.BadZipFile("no entries" if not infos else "too many entries")
    root = infos[0].filename.split("/", 1)[0]
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise _Refused(duplicate, "appears twice (a reader could pick either copy)")
    return root


def _relative(info: zipfile.ZipInfo, root: str) -> str:
    name = info.filename
    if not name.startswith(root + "/") or info.is_dir() or ".." in name.split("/"):
        raise _Refused(name, f"is outside the archive's folder {root!r}")
    return name[len(root) + 1:]


def _read_entry(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if (info.compress_type != zipfile.ZIP_STORED and info.file_size > 2**20
            and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)):
        raise _Refused(info.filename, f"expands {info.file_size // max(info.compress_size, 1)}"
                       " times (a zip bomb)")
    try:
        return zipped.read(info)
    except (RuntimeError, NotImplementedError, zipfile.BadZipFile, EOFError) as err:
        raise _Refused(info.filename, f"cannot be read ({err})") from None


def _check_entries(archive: _Archive) -> None:
    """Every entry must be one torch.export.save writes, and none may hold a pickle it need not."""
    models = [name for name in archive.entries if name.startswith(layout.MODELS_DIR)]
    if len(models) != 1 or not re.fullmatch(r"models/\w+\.json", models[0]):
        raise _Refused(layout.MODELS_DIR, f"must hold exactly one model JSON, found {models}")
    archive.model = models[0][len(layout.MODELS_DIR):-len(".json")]
    expected = _expected_entries(archive)
    for name, data in archive.entries.items():
        kind = expected.get(name)
        if kind is None:
            raise _Refused(name, _unknown_reason(name))
        if kind != "sample inputs":
            _refuse_pickle(name, data)
        if kind in _TEXT_ENTRIES:
            _check_text(name, data, _TEXT_ENTRIES[kind])
        elif kind == "model":
            archive.entries[name] = _checked_model(data, name)
        elif kind == "sample inputs":
            _check_sample_inputs(name, data)
    _check_payloads(archive)


def _expected_entries(archive: _Archive) -> dict[str, str]:
    """Entry name -> kind, for every entry a plain archive of this model may hold."""
    model = archive.model
    expected = {name: name for name in _TEXT_ENTRIES}
    expected[layout.MODELS_FILENAME_FORMAT.format(model)] = "model"
    expected[layout.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)] = "sample inputs"
    expected[layout.WEIGHTS_CONFIG_FILENAME_FORMAT.format(model)] = "weights config"
    expected[layout.CONSTANTS_CONFIG_FILENAME_FORMAT.format(model)] = "constants config"
    for name in archive.entries:  # raw tensor bytes are checked against the configs later
        folder, _, file = name.rpartition("/")
        prefix = _RAW_DIRS.get(folder + "/")
        if prefix and re.fullmatch(re.escape(prefix) + r"\d+", file):
            expected[name] = "raw tensor"
    return expected


def _unknown_reason(name: str) -> str:
    if name.startswith(layout.AOTINDUCTOR_DIR):
        return "is an AOTInductor binary, which loading would run"
    if name.endswith((".pkl", ".pt", ".pth")) or "custom_obj_" in name or "opaque_obj_" in name:
        return "is a pickle, which loading would run"
    return "is not part of a torch.export archive of plain tensors"


def _parse_json(data: bytes, entry: str, max_depth: int = 64):
    """JSON through mlc's bounded parser; a problem names the archive and the entry."""
    try:
        return parse_json(data, "has bad JSON", max_depth=max_depth)
    except MlcError as err:
        raise _Refused(entry, str(err)) from None


def _check_text(name: str, data: bytes, pattern: str) -> None:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is None or not re.fullmatch(pattern, text):
        raise _Refused(name, f"holds {data[:40]!r}, not what torch.export.save writes")


# ---- pickles ---------------------------------------------------------------------------------
def _refuse_pickle(name: str, data: bytes) -> None:
    """Raw tensors and JSON are never pickles; finding one means a planted payload."""
    if data.startswith(b"PK\x03\x04"):
        raise _Refused(name, "is a zip (a torch.save pickle), which loading would run")
    if _is_pickle(data):
        raise _Refused(name, "is a pickle, which loading would run")


def _is_pickle(data: bytes, max_ops: int = 1_000_000) -> bool:
    """Whether `data` parses, from its first byte to its last, as one pickle (never run)."""
    if not data.endswith(b"."):
        return False
    try:
        for count, (opcode, _, position) in enumerate(pickletools.genops(data)):
            if opcode.name == "STOP":
                return position == len(data) - 1
            if count > max_ops:
                return False
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError):
        return False
    return False


def pickle_globals(data: bytes) -> list[str]:
    """Every `module.name` a pickle would import, read from its opcodes without running it.

    STACK_GLOBAL names whose two strings are not pushed right before it (the only way Python's
    pickler writes them) come out as "<unresolved>", so they never match an allow list.

    >>> pickle_globals(b"\\x80\\x02ccollections\\nOrderedDict\\n)R.")
    ['collections.OrderedDict']
    """
    found, memo, recent = [], {}, []  # recent: strings pushed since the last other opcode
    for opcode, arg, _ in pickletools.genops(data):
        op = opcode.name
        if op in ("GLOBAL", "INST"):
            found.append(arg.replace(" ", "."))
        elif op == "STACK_GLOBAL":
            found.append(".".join(recent[-2:]) if len(recent) >= 2 else "<unresolved>")
        if op in _STRING_OPS:
            recent.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
        elif op in _MEMO_PUT_OPS or op == "MEMOIZE":
            memo[len(memo) if op == "MEMOIZE" else arg] = recent[-1] if recent else None
        elif op in _MEMO_GET_OPS and isinstance(memo.get(arg), str):
            recent.append(memo[arg])
        elif op not in ("FRAME", "PROTO"):
            recent = []
    return found


def _check_sample_inputs(name: str, data: bytes) -> None:
    """The sample inputs are never read, but a payload there is refused all the same."""
    if not data:
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            pickles = [i for i in inner.infolist() if i.filename.endswith(".pkl")]
            if len(pickles) != 1 or not pickles[0].filename.endswith("/data.pkl"):
                raise _Refused(name, "is not a torch.save file of tensors")
            imports = pickle_globals(inner.read(pickles[0]))
    except (zipfile.BadZipFile, ValueError, EOFError, RuntimeError, NotImplementedError):
        raise _Refused(name, "is not a torch.save file of tensors") from None
    unknown = sorted(set(imports) - _SAMPLE_INPUT_GLOBALS)
    if unknown:
        raise _Refused(name, f"is a pickle that imports {', '.join(unknown[:3])}, "
                             "which loading would run")


# ---- the model JSON --------------------------------------------------------------------------
def _checked_model(data: bytes, entry: str) -> bytes:
    """The model JSON, checked, without its guards: torch compiles `guards_code` strings into a
    Python function (exec) when it decomposes the program, and mlc fixes shapes itself."""
    doc = _parse_json(data, entry, max_depth=128)
    if not isinstance(doc, dict):
        raise _Refused(entry, "is not a torch.export model (a JSON object)")
    check_model_json(doc, entry)
    doc["guards_code"] = []
    return json.dumps(doc).encode()


# ---- weights and constants -------------------------------------------------------------------
_ITEM_BYTES = {"BYTE": 1, "CHAR": 1, "SHORT": 2, "INT": 4, "LONG": 8, "HALF": 2, "FLOAT": 4,
               "DOUBLE": 8, "COMPLEXHALF": 4, "COMPLEXFLOAT": 8, "COMPLEXDOUBLE": 16, "BOOL": 1,
               "BFLOAT16": 2, "UINT16": 2, "UINT32": 4, "UINT64": 8}


def _check_payloads(archive: _Archive) -> None:
    """Each weight and constant is raw bytes (no pickle), big enough for its shape and strides,
    and every raw entry belongs to one of them."""
    from torch._export.serde.schema import ScalarType
    item_bytes = {ScalarType[name].value: size for name, size in _ITEM_BYTES.items()}
    used = set()
    for folder, fmt, prefix in (
            (layout.WEIGHTS_DIR, layout.WEIGHTS_CONFIG_FILENAME_FORMAT, "weight_"),
            (layout.CONSTANTS_DIR, layout.CONSTANTS_CONFIG_FILENAME_FORMAT, "tensor_")):
        config_name = fmt.format(archive.model)
        if config_name not in archive.entries:
            raise _Refused(config_name, "is missing")
        config = _parse_json(archive.entries[config_name], config_name)
        if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
            raise _Refused(config_name, "has no 'config' mapping")
        for fqn, meta in config["config"].items():
            if not (fqn and MODULE_PATH.fullmatch(fqn)):
                raise _Refused(config_name, f"names a tensor {fqn[:60]!r}, which is not a "
                                            "dotted module path")
            entry = _check_payload(archive, folder, prefix, meta, item_bytes, config_name, fqn)
            used.add(entry)
    unused = [name for name in archive.entries if name.startswith(tuple(_RAW_DIRS))
              and not name.endswith(".json") and name not in used]
    if unused:
        raise _Refused(unused[0], "is not a tensor the model's configs list")


def _check_payload(archive: _Archive, folder: str, prefix: str, meta, item_bytes: dict,
                   config_name: str, fqn: str) -> str:
    where = f"lists {fqn!r}"
    if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
        raise _Refused(config_name, f"{where} as a pickle (a tensor subclass or custom object),"
                                    " which loading would run")
    path_name = meta.get("path_name")
    entry = folder + str(path_name)
    if not (isinstance(path_name, str) and re.fullmatch(prefix + r"\d+", path_name)
            and entry in archive.entries):
        raise _Refused(config_name, f"{where} in {str(path_name)[:40]!r}, which the archive "
                                    "does not hold as raw tensor bytes")
    tensor = meta.get("tensor_meta") if isinstance(meta.get("tensor_meta"), dict) else {}
    dtype = tensor.get("dtype")
    size = item_bytes.get(dtype) if type(dtype) is int else None
    shape, strides = _ints(tensor.get("sizes")), _ints(tensor.get("strides"))
    offset = _ints([tensor.get("storage_offset")])
    if size is None or shape is None or strides is None or offset is None \
            or len(shape) != len(strides):
        raise _Refused(config_name, f"{where} with a dtype, shape or strides mlc cannot read")
    if 0 in shape:
        return entry
    needed = offset[0] + 1 + sum((dim - 1) * stride for dim, stride in zip(shape, strides))
    if needed * size > len(archive.entries[entry]):
        raise _Refused(entry, f"holds {len(archive.entries[entry])} bytes, too few for "
                              f"{fqn!r} of shape {shape}")
    elements = math.prod(shape)
    if elements > max(MAX_BROADCAST * needed, 2**24):  # zero strides: a view mlc would copy
        raise _Refused(config_name, f"{where} as {elements:,} elements over {needed:,} stored "
                                    "(a broadcast too large to import)")
    return entry


def _ints(values) -> list[int] | None:
    """The concrete, non-negative integers of a serialized size list, or None."""
    if not isinstance(values, list):
        return None
    out = []
    for value in values:
        number = value.get("as_int") if isinstance(value, dict) else None
        if type(number) is not int or number < 0:
            return None
        out.append(number)
    return out


# ---- the archive torch reads -----------------------------------------------------------------
def _rebuilt(archive: _Archive) -> io.BytesIO:
    """A new archive of exactly the checked entries, the sample inputs emptied: torch reads
    this, never the user's file (so no second copy or zip trick can differ from what we saw)."""
    buffer = io.BytesIO()
    sample_inputs = layout.SAMPLE_INPUTS_FILENAME_FORMAT.format(archive.model)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        for name, data in archive.entries.items():
            if name != sample_inputs:
                out.writestr(f"{archive.root}/{name}", data)
        out.writestr(f"{archive.root}/{sample_inputs}", b"")  # torch reads it even if absent
    buffer.seek(0)
    return buffer
