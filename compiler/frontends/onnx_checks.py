"""Well-formedness checks of an ONNX model before import: supported opset range, each node
against its op's schema at the model's opset, single-assignment names, an acyclic graph with
every name defined, and tensors whose declared shape, type and data agree.

Every check raises MlcError naming the file, the node (or tensor) and what to do; the importer
relies on them so that a hostile model never reaches a converter as a KeyError or MemoryError.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import onnx
from onnx import defs, numpy_helper

from ..errors import MlcError
from ..ir.shapes import MAX_ELEMENTS, check_allocation
from ..ir.types import dtype_name, np_dtype

DEFAULT_DOMAINS = ("", "ai.onnx")
# ONNX Runtime guarantees opset 7 and up; the newest is whatever the installed onnx knows,
# because each node is checked against that package's schemas. An older model is imported
# only when none of its ops changed between its opset and opset 7 (LEGACY_OPSET).
MIN_OPSET = 7
MAX_OPSET = defs.onnx_opset_version()
LEGACY_OPSET = 1
_BITS = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.FLOAT4E2M1: 4}
for _name in ("INT2", "UINT2"):  # newer onnx releases only
    if hasattr(onnx.TensorProto, _name):
        _BITS[getattr(onnx.TensorProto, _name)] = 2


# ---- opsets -----------------------------------------------------------------------------------

def check_ir_version(model: onnx.ModelProto, source: str) -> None:
    """The file format version must be one the installed onnx package knows (3 is the first
    with opset imports); a larger one is a newer format or a corrupt file."""
    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise MlcError(f"{source}: ONNX IR version {model.ir_version} is outside the range this "
                       f"mlc reads (3..{onnx.IR_VERSION}); the file is corrupt or needs a newer "
                       "onnx package")


def default_opset(model: onnx.ModelProto, source: str) -> int:
    """The model's default-domain opset, refused when absent, ambiguous or out of range."""
    versions = {o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS}
    if not versions:
        raise MlcError(f"{source}: the model declares no opset for the default ONNX domain "
                       "(opset_import has no entry with domain ''), so op semantics are unknown;"
                       f" re-export it with an opset in {MIN_OPSET}..{MAX_OPSET}")
    if len(versions) > 1:
        raise MlcError(f"{source}: the model declares the default ONNX domain twice, with opsets "
                       f"{sorted(versions)}; keep one")
    opset = versions.pop()
    if not LEGACY_OPSET <= opset <= MAX_OPSET:
        raise MlcError(f"{source}: opset {opset} is outside the supported range "
                       f"{MIN_OPSET}..{MAX_OPSET}; re-export the model with an opset in range "
                       "(or convert it with onnx.version_converter)")
    return opset


# ---- text: protobuf hands back bytes for a string field that is not UTF-8 ---------------------

def check_text(model: onnx.ModelProto, source: str) -> None:
    """Every name the importer reads is text (valid UTF-8), so no bytes object reaches a
    message, a sort or a path."""
    graph = model.graph
    for what, text in _named_texts(model, graph):
        if not isinstance(text, str):
            raise MlcError(f"{source}: {what} {text[:40]!r} is not valid UTF-8 text; the file "
                           "is corrupt")


def _named_texts(model, graph):
    yield "graph name", graph.name
    for entry in model.opset_import:
        yield "opset domain", entry.domain
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        yield "value name", value.name
        for dim in value.type.tensor_type.shape.dim:
            yield "dim name", dim.dim_param
    for tensor in graph.initializer:
        yield "initializer name", tensor.name
        for entry in tensor.external_data:
            yield "external data entry", entry.key
            yield "external data entry", entry.value
    for node in graph.node:
        yield "node name", node.name
        yield "op type", node.op_type
        yield "node domain", node.domain
        for name in list(node.input) + list(node.output):
            yield "value name", name
        for attr in node.attribute:
            yield "attribute name", attr.name
            yield "attribute reference", attr.ref_attr_name
            if attr.HasField("t"):
                yield "tensor name", attr.t.name
                for entry in attr.t.external_data:
                    yield "external data entry", entry.key
                    yield "external data entry", entry.value


# ---- nodes against their schema ---------------------------------------------------------------

# Integer attributes that are booleans: runtimes read other values differently (onnxruntime
# tests `== 1`, numpy truthiness), so anything but 0 and 1 is refused.
FLAG_ATTRIBUTES = frozenset({
    "keepdims", "noop_with_empty_axes", "transA", "transB", "select_last_index", "ceil_mode",
    "count_include_pad", "allowzero", "detect_negative", "detect_positive", "fmod",
    "training_mode", "saturate", "spatial"})

def check_node_schema(node: onnx.NodeProto, opset: int, where: str):
    """Input and output counts, required operands and attributes (names and types) as the op's
    schema at `opset` defines them: what ONNX Runtime enforces at load time. Returns the
    schema (its type constraints are checked once input types are known)."""
    try:
        schema = defs.get_schema(node.op_type, opset, "")
    except defs.SchemaError:
        raise MlcError(f"{where}: {node.op_type} does not exist at opset {opset}; re-export the "
                       "model with a newer opset or without this op") from None
    if schema.deprecated:
        raise MlcError(f"{where}: {node.op_type} is deprecated at opset {opset}")
    if opset < MIN_OPSET and _changed_by(node.op_type, schema, MIN_OPSET):
        raise MlcError(f"{where}: {node.op_type}-{schema.since_version} (opset {opset}) differs "
                       f"from its opset-{MIN_OPSET} definition, and mlc supports opsets "
                       f"{MIN_OPSET}..{MAX_OPSET}; convert the model with "
                       "onnx.version_converter.convert_version(model, 13)")
    label = f"{node.op_type}-{schema.since_version}"
    _check_counts(node, schema, label, where)
    optional = defs.OpSchema.FormalParameterOption.Optional
    for index, name in enumerate(node.input):
        formal = schema.inputs[min(index, len(schema.inputs) - 1)] if schema.inputs else None
        if not name and (formal is None or formal.option != optional):
            shown = formal.name if formal is not None else str(index)
            raise MlcError(f"{where}: input {index} ({shown!r}) of {label} is empty, and only "
                           "optional inputs may be left out")
    _check_attributes(node, schema, label, where)
    return schema


def _changed_by(op_type: str, schema, opset: int) -> bool:
    """Whether `op_type` got a new definition after `schema` and up to `opset`."""
    return defs.get_schema(op_type, opset, "").since_version != schema.since_version


_FIELDS = {  # the AttributeProto field that holds each attribute type's value
    onnx.AttributeProto.FLOAT: "f", onnx.AttributeProto.INT: "i", onnx.AttributeProto.STRING: "s",
    onnx.AttributeProto.TENSOR: "t", onnx.AttributeProto.GRAPH: "g",
    onnx.AttributeProto.SPARSE_TENSOR: "sparse_tensor", onnx.AttributeProto.TYPE_PROTO: "tp",
    onnx.AttributeProto.FLOATS: "floats", onnx.AttributeProto.INTS: "ints",
    onnx.AttributeProto.STRINGS: "strings", onnx.AttributeProto.TENSORS: "tensors",
    onnx.AttributeProto.GRAPHS: "graphs", onnx.AttributeProto.SPARSE_TENSORS: "sparse_tensors",
    onnx.AttributeProto.TYPE_PROTOS: "type_protos",
}


def _check_attribute_fields(attr: onnx.AttributeProto, where: str) -> None:
    """Only the field of the attribute's declared type holds a value (a FLOAT attribute with an
    int in it is ambiguous: readers would disagree on its value)."""
    own = _FIELDS.get(attr.type)
    if own is None:
        raise MlcError(f"{where}: attribute {attr.name!r} has no valid type ({attr.type})")
    for kind, field in _FIELDS.items():
        if field == own:
            continue
        value = getattr(attr, field)
        filled = len(value) if kind in _REPEATED else attr.HasField(field)
        if filled:
            raise MlcError(f"{where}: attribute {attr.name!r} is declared "
                           f"{onnx.AttributeProto.AttributeType.Name(attr.type)} but also holds "
                           f"a {onnx.AttributeProto.AttributeType.Name(kind)} value")


_REPEATED = {onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS, onnx.AttributeProto.STRINGS,
             onnx.AttributeProto.TENSORS, onnx.AttributeProto.GRAPHS,
             onnx.AttributeProto.SPARSE_TENSORS, onnx.AttributeProto.TYPE_PROTOS}


def _check_counts(node, schema, label, where) -> None:
    for kind, given, low, high in (("inputs", len(node.input), schema.min_input,
                                    schema.max_input),
                                   ("outputs", len(node.output), schema.min_output,
                                    schema.max_output)):
        if not low <= given <= high:
            shown = f"{low}" if low == high else f"{low}..{high if high < 2**31 - 1 else 'any'}"
            raise MlcError(f"{where}: {label} takes {shown} {kind}, the node has {given}")


def _check_attributes(node, schema, label, where) -> None:
    seen = set()
    for attr in node.attribute:
        if attr.name in seen:
            raise MlcError(f"{where}: attribute {attr.name!r} is given twice")
        seen.add(attr.name)
        spec = schema.attributes.get(attr.name)
        if spec is None:
            known = ", ".join(sorted(schema.attributes)) or "none"
            raise MlcError(f"{where}: {label} has no attribute {attr.name!r} (it takes: {known})")
        if attr.ref_attr_name:
            raise MlcError(f"{where}: attribute {attr.name!r} refers to a function attribute; "
                           "only plain values are supported")
        _check_attribute_fields(attr, where)
        if int(attr.type) != int(spec.type):
            got = onnx.AttributeProto.AttributeType.Name(attr.type) \
                if attr.type in onnx.AttributeProto.AttributeType.values() else str(attr.type)
            raise MlcError(f"{where}: attribute {attr.name!r} has type {got}; {label} expects "
                           f"{spec.type.name}")
        if attr.name in FLAG_ATTRIBUTES and attr.type == onnx.AttributeProto.INT and \
                attr.i not in (0, 1):
            raise MlcError(f"{where}: attribute {attr.name}={attr.i} must be 0 or 1")
    missing = [name for name, spec in schema.attributes.items()
               if spec.required and name not in seen]
    if missing:
        raise MlcError(f"{where}: {label} needs attribute(s) {missing}")


# ---- the graph: unique names, defined before use, no cycles -----------------------------------

def node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type.lower()}_{index}"


def check_names(graph: onnx.GraphProto, source: str) -> None:
    """Graph inputs, initializers and node outputs each define a name once (static single
    assignment), and every graph output is defined."""
    defined: dict[str, str] = {}

    def define(name: str, what: str) -> None:
        if name in defined:
            raise MlcError(f"{source}: {what} redefines {name!r}, already {defined[name]}; ONNX "
                           "names must be assigned once")
        defined[name] = what

    initializers = set()
    for tensor in graph.initializer:
        define(tensor.name, f"initializer {tensor.name!r}")
        initializers.add(tensor.name)
    seen_inputs = set()
    for value in graph.input:
        if value.name in seen_inputs:
            raise MlcError(f"{source}: graph input {value.name!r} is listed twice")
        seen_inputs.add(value.name)
        if value.name not in initializers:  # old exporters list initializers as inputs too
            define(value.name, f"graph input {value.name!r}")
    for i, node in enumerate(graph.node):
        for name in node.output:
            if name:
                define(name, f"output of node {node_label(node, i)!r} ({node.op_type})")
    if graph.sparse_initializer:
        raise MlcError(f"{source}: sparse initializers are not supported; store them dense")
    if not graph.output:
        raise MlcError(f"{source}: the graph has no outputs")
    for value in graph.output:
        if value.name not in defined:
            raise MlcError(f"{source}: graph output {value.name!r} is never defined (no input, "
                           "initializer or node produces it)")


def topological_order(graph: onnx.GraphProto, source: str) -> list[int]:
    """Node indices in an order where each node follows the producers of its inputs (file order
    when that already holds, as ONNX requires but ONNX Runtime does not); undefined names and
    cycles are refused with the nodes involved."""
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output if name}
    given = {t.name for t in graph.initializer} | {v.name for v in graph.input}
    waiting_on: list[set[int]] = []
    users: dict[int, set[int]] = {}
    for i, node in enumerate(graph.node):
        needs = set()
        for name in node.input:
            if not name or name in given:
                continue
            if name not in producer:
                raise MlcError(f"{source}: node {node_label(node, i)!r} ({node.op_type}) reads "
                               f"{name!r}, which no input, initializer or node defines")
            needs.add(producer[name])
            users.setdefault(producer[name], set()).add(i)
        waiting_on.append(needs)
    ready = [i for i, needs in enumerate(waiting_on) if not needs]
    heapq.heapify(ready)  # smallest index first: keeps file order for sorted graphs
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for user in users.get(i, ()):
            waiting_on[user].discard(i)
            if not waiting_on[user]:
                heapq.heappush(ready, user)
    if len(order) < len(graph.node):
        stuck = [node_label(graph.node[i], i) for i in range(len(graph.node))
                 if waiting_on[i]]
        raise MlcError(f"{source}: the graph has a cycle through node(s) "
                       f"{', '.join(map(repr, stuck[:6]))}{', ...' if len(stuck) > 6 else ''}; "
                       "an ONNX graph must be acyclic")
    return order


# ---- tensors: type, shape and data agree ------------------------------------------------------

def element_type(elem_type: int, where: str) -> str:
    """IR dtype name of an ONNX element type; unknown and unsupported types are refused."""
    if elem_type not in onnx.TensorProto.DataType.values():
        raise MlcError(f"{where}: element type {elem_type} is not an ONNX element type")
    name = onnx.TensorProto.DataType.Name(elem_type)
    try:
        return dtype_name(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        raise MlcError(f"{where}: element type {name} is not supported by the mlc IR") from None


def tensor_to_array(tensor: onnx.TensorProto, where: str) -> np.ndarray:
    """A TensorProto's value, after checking its type, its declared shape (non-negative, bounded
    by MAX_ELEMENTS and by free memory) and that its data holds exactly that many elements."""
    dtype = element_type(tensor.data_type, where)
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise MlcError(f"{where}: declared shape {dims} has a negative dim")
    numel = math.prod(dims)
    if numel > MAX_ELEMENTS:
        raise MlcError(f"{where}: declared shape {dims} has {numel} elements, more than the "
                       f"{MAX_ELEMENTS} mlc accepts in one tensor")
    if tensor.HasField("segment"):
        raise MlcError(f"{where}: segmented tensors are not supported")
    if tensor.data_location == onnx.TensorProto.EXTERNAL and not tensor.HasField("raw_data"):
        raise MlcError(f"{where}: external data was not loaded")
    if tensor.HasField("raw_data"):
        bits = _BITS.get(tensor.data_type, np.dtype(_np_dtype(tensor)).itemsize * 8)
        want = (numel * bits + 7) // 8
        if len(tensor.raw_data) != want:
            raise MlcError(f"{where}: raw_data holds {len(tensor.raw_data)} bytes, but shape "
                           f"{dims} of {dtype} needs {want}; the file is corrupt or truncated")
    try:
        check_allocation(numel * np.dtype(_np_dtype(tensor)).itemsize, where)
    except ValueError as err:
        raise MlcError(str(err)) from None
    try:
        array = numpy_helper.to_array(tensor)
    except (ValueError, TypeError, IndexError) as err:
        raise MlcError(f"{where}: data does not match declared shape {dims} of {dtype} ({err})"
                       ) from None
    if array.size != numel:
        raise MlcError(f"{where}: holds {array.size} elements, declared shape {dims} needs "
                       f"{numel}")
    return array


def _np_dtype(tensor: onnx.TensorProto) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))


def declared_dims(value: onnx.ValueInfoProto, where: str) -> list[int | None] | None:
    """A graph input's declared dims (None for a dynamic dim); None when the rank is unknown."""
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise MlcError(f"{where}: only tensor inputs are supported (this one is "
                       f"{value.type.WhichOneof('value') or 'untyped'})")
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for i, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            if dim.dim_value < 0:
                raise MlcError(f"{where}: dim {i} is {dim.dim_value}; dims must be >= 0")
            dims.append(dim.dim_value)
        else:
            dims.append(None)
    return dims


def onnx_type_string(dtype: str) -> str:
    """The schema spelling of an IR dtype, e.g. "float32" -> "tensor(float)"."""
    elem = onnx.helper.np_dtype_to_tensor_dtype(np_dtype(dtype))
    return f"tensor({onnx.TensorProto.DataType.Name(elem).lower()})"


def check_node_types(node: onnx.NodeProto, schema, types, where: str) -> None:
    """Each input's element type (`types`: name -> TensorType) is one its schema allows, and
    inputs bound to one type parameter agree (ONNX Runtime's type check at load; numpy would
    silently promote)."""
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    bound: dict[str, tuple[str, str]] = {}
    for index, name in enumerate(node.input):
        if not name or name not in types or not schema.inputs:
            continue
        formal = schema.inputs[min(index, len(schema.inputs) - 1)]
        given = onnx_type_string(types[name].dtype)
        options = allowed.get(formal.type_str, {formal.type_str})
        if given not in options:
            raise MlcError(f"{where}: input {formal.name!r} ({name!r}) is {given}, which "
                           f"{node.op_type}-{schema.since_version} does not take")
        if formal.type_str not in allowed or not formal.is_homogeneous and \
                formal.option == defs.OpSchema.FormalParameterOption.Variadic:
            continue
        first = bound.setdefault(formal.type_str, (name, given))
        if first[1] != given:
            raise MlcError(f"{where}: inputs {first[0]!r} ({first[1]}) and {name!r} ({given}) "
                           f"must have the same type; insert a Cast")
    _check_float_mod(node, types, where)


def _check_float_mod(node: onnx.NodeProto, types, where: str) -> None:
    """ONNX: Mod on floating-point inputs requires fmod=1 (C fmod); integer-style Mod of floats
    is undefined, and onnxruntime refuses it at run time."""
    if node.op_type != "Mod" or not node.input or node.input[0] not in types:
        return
    fmod = next((a.i for a in node.attribute if a.name == "fmod"), 0)
    if fmod != 1 and types[node.input[0]].dtype.startswith(("float", "bfloat")):
        raise MlcError(f"{where}: Mod of {types[node.input[0]].dtype} inputs needs fmod=1 (the "
                       "ONNX rule for floating point); set the attribute or Cast to integers")
