"""ONNX frontend: an .onnx file (opset 7+, external data beside it) -> IR Graph.

The model is checked first (onnx_checks: opset range, schemas, names, acyclic, tensors); ops
whose semantics changed across opsets are converted per opset (onnx_ops).

Import folds constants and shape arithmetic: once input shapes are fixed, Shape/Size/Range/
ConstantOfShape and every node whose inputs are all constant are evaluated with the op table's
numpy semantics, so the IR only holds the computation that depends on the inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from ..errors import MlcError, UnsupportedOpsError
from ..ir.graph import Graph, IRError, Node
from ..ir.ops import OPS, compute, resolve_attrs
from ..ir.shapes import ShapeError, check_allocation, check_constant_operands, check_size
from ..ir.types import TensorType
from .onnx_checks import (
    DEFAULT_DOMAINS,
    check_ir_version,
    check_names,
    check_node_schema,
    check_node_types,
    check_text,
    declared_dims,
    default_opset,
    element_type,
    node_label,
    tensor_to_array,
    topological_order,
)
from .onnx_ops import CONVERTERS, ConvertError, NeedsConstant

log = logging.getLogger("mlc")


def onnx_dtype(elem_type: int, where: str) -> str:
    """IR dtype name of an ONNX TensorProto element type (MlcError when unknown)."""
    return element_type(elem_type, where)


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX model and its external data, refusing data paths outside its folder."""
    path = Path(path)
    if not path.is_file():
        raise MlcError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises assorted errors on non-ONNX bytes
        raise MlcError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None
    if not model.graph.node and not model.graph.output:
        raise MlcError(f"{path}: not an ONNX model (no graph found)")
    check_text(model, str(path))
    base = path.parent.resolve()
    for tensor in _all_initializers(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        if "\0" in location:
            raise MlcError(f"{path}: initializer {tensor.name!r} has an external data location "
                           "with a NUL character; the file is corrupt")
        target = (base / location).resolve()
        if base not in target.parents:
            raise MlcError(f"{path}: initializer {tensor.name!r} points at external data "
                           f"{location!r} outside the model's folder; refusing (path traversal)")
        if not target.is_file():
            raise MlcError(f"{path}: external data file {location!r} for {tensor.name!r} is "
                           "missing; keep it next to the model")
    try:
        onnx.load_external_data_for_model(model, str(base))
    except Exception as err:
        raise MlcError(f"{path}: cannot read external data ({err})") from None
    return model


def _all_initializers(model):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


class StaticOperandError(MlcError):
    """A shape-like operand depends on run-time data; `value_name` names it."""

    def __init__(self, message: str, value_name: str):
        super().__init__(message)
        self.value_name = value_name


class _Importer:
    """Walks ONNX nodes in order, folding constants and emitting IR nodes."""

    def __init__(self, source: str, opset: int, taken_names=()):
        self.source = source
        self.opset = opset
        self.consts: dict[str, np.ndarray] = {}
        self.types: dict[str, TensorType] = {}
        self.nodes: list[Node] = []
        self.node_name = ""
        self._fresh = 0
        self._taken = set(taken_names)  # every name in the model: fresh names avoid them

    # ---- used by the converters ---------------------------------------------------------------
    def type_of(self, name: str) -> TensorType:
        if name not in self.types:
            raise ConvertError(f"value {name!r} has no type (its producer made no value)")
        return self.types[name]

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str, what: str) -> np.ndarray:
        """The constant value of an input that the IR needs at import (a shape, axes, ...)."""
        if name not in self.consts:
            raise NeedsConstant(name, what)
        return self.consts[name]

    def fresh(self, stem: str) -> str:
        """A value or node name used nowhere in the model or the import so far."""
        while True:
            self._fresh += 1
            name = f"{stem}__{self._fresh}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def set_const(self, name: str, value: np.ndarray) -> None:
        value = np.asarray(value)
        self.consts[name] = value
        self.types[name] = TensorType.of(value)

    def emit(self, op: str, inputs, outputs, *, fold: bool = True, **attrs) -> None:
        """Add one IR node, or evaluate it now when every input is constant (and fold)."""
        opdef = OPS[op]
        in_types = [self.type_of(i) for i in inputs]
        try:
            resolved = resolve_attrs(opdef, attrs)
            out_types = opdef.infer(in_types, resolved)
            for t in out_types:
                check_size(t)
            check_constant_operands(op, in_types, [self.consts.get(i) for i in inputs],
                                    resolved)
        except (ShapeError, ValueError, TypeError, IndexError, ArithmeticError) as err:
            raise ConvertError(str(err)) from None
        if fold and all(i in self.consts for i in inputs):
            self._fold(op, inputs, outputs, attrs, out_types)
            return
        node_name = self.node_name if not any(n.name == self.node_name for n in self.nodes) \
            else self.fresh(self.node_name or op)
        self.nodes.append(Node(op, inputs, outputs, attrs, node_name))
        self.types.update(zip(outputs, out_types))

    def _fold(self, op, inputs, outputs, attrs, out_types) -> None:
        """Evaluate a node whose inputs are all constant, after checking the memory it takes."""
        try:
            check_allocation(sum(t.nbytes for t in out_types), f"folding {op} at import")
        except ShapeError as err:
            raise ConvertError(str(err)) from None
        with np.errstate(all="ignore"):  # ONNX defines inf/nan results; numpy only warns
            values = compute(op, [self.consts[i] for i in inputs], attrs)
        for name, value, t in zip(outputs, values, out_types):
            self.set_const(name, np.asarray(value).astype(value.dtype if t.dtype == "bfloat16"
                                                          else t.dtype))


def import_onnx(model: onnx.ModelProto, source: str = "model.onnx",
                input_shapes: dict[str, tuple[int, ...]] | None = None,
                name: str | None = None,
                constant_inputs: dict[str, np.ndarray] | None = None,
                shape_hints: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Convert a loaded ONNX model to an IR Graph (see module docstring).

    input_shapes fixes dynamic input dims; constant_inputs binds graph inputs to values (they
    become weights), for operands the IR needs at import such as a Reshape's target shape.
    shape_hints only fill dynamic dims (e.g. from the arrays a user is about to run).
    """
    graph = model.graph
    check_text(model, source)
    check_ir_version(model, source)
    opset = default_opset(model, source)
    order, schemas = _checked_node_order(graph, source, opset)
    taken = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {
        o for node in graph.node for o in node.output} | {n.name for n in graph.node}
    imp = _Importer(source, opset, taken)
    for tensor in graph.initializer:
        imp.set_const(tensor.name, tensor_to_array(tensor, f"{source}: initializer "
                                                           f"{tensor.name!r}"))
    for input_name, value in (constant_inputs or {}).items():
        imp.set_const(input_name, value)
    inputs = _graph_inputs(graph, imp, source, input_shapes or {}, shape_hints)
    for i in order:
        node = graph.node[i]
        imp.node_name = node_label(node, i)
        where = f"{source}: node {imp.node_name!r} ({node.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        check_node_types(node, schemas[i], imp.types, where)
        try:
            CONVERTERS[node.op_type](imp, list(node.input), list(node.output), attrs)
        except NeedsConstant as err:
            raise StaticOperandError(f"{where}: {err}", err.value_name) from None
        except (ConvertError, MlcError) as err:
            raise MlcError(f"{where}: {err}") from None
    outputs = _graph_outputs(graph, imp, source)
    used = {i for n in imp.nodes for i in n.inputs}
    weights = {k: v for k, v in imp.consts.items() if k in used}
    try:
        return Graph.build(name or graph.name or Path(source).stem, inputs, imp.nodes, outputs,
                           weights)
    except IRError as err:
        raise MlcError(f"{source}: import produced an invalid graph: {err}") from None


def _checked_node_order(graph, source: str, opset: int):
    """Refuse unknown ops (all listed at once), then check every node against its schema and
    the graph's names; returns the node indices in a producer-first order and their schemas."""
    unsupported: dict[str, list[str]] = {}
    for i, node in enumerate(graph.node):
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in CONVERTERS:
            op = node.op_type if node.domain in DEFAULT_DOMAINS \
                else f"{node.domain}.{node.op_type}"
            unsupported.setdefault(op, []).append(node.name or f"#{i}")
    if unsupported:
        raise UnsupportedOpsError(source, unsupported)
    schemas = [check_node_schema(node, opset, f"{source}: node {node_label(node, i)!r} "
                                              f"({node.op_type})")
               for i, node in enumerate(graph.node)]
    check_names(graph, source)
    return topological_order(graph, source), schemas


def _graph_outputs(graph, imp: _Importer, source: str) -> list[str]:
    """IR output names, one per ONNX graph output (in order, repeats included, as ONNX Runtime
    returns them); a constant or repeated output gets an Identity node of its own."""
    outputs = []
    for value in graph.output:
        if value.name not in imp.types:
            raise MlcError(f"{source}: graph output {value.name!r} is never computed")
        declared = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
        if declared and element_type(declared, f"{source}: output {value.name!r}") \
                != imp.types[value.name].dtype:
            raise MlcError(f"{source}: graph output {value.name!r} is declared "
                           f"{onnx.TensorProto.DataType.Name(declared)} but computes "
                           f"{imp.types[value.name].dtype}; fix the output's type")
        if value.name in imp.consts:  # folded (Shape, Constant, ...): still an output
            outputs.append(_constant_output(imp, value.name))
        elif value.name in outputs:
            copy = _identity_output(imp, value.name, imp.fresh(value.name))
            log.warning("%s: output %r is listed twice; the repeat is returned as %r", source,
                        value.name, copy)
            outputs.append(copy)
        else:
            outputs.append(value.name)
    return outputs


def _constant_output(imp: _Importer, name: str) -> str:
    """Keep a folded output under its ONNX name: its value moves to a fresh weight (nodes that
    read it follow) and an Identity node produces `name` from it, as the model's users and
    onnxruntime expect the outputs by name."""
    alias = imp.fresh(name)
    imp.set_const(alias, imp.consts.pop(name))
    del imp.types[name]
    swap = lambda names: [alias if n == name else n for n in names]  # noqa: E731
    imp.nodes = [Node(n.op, swap(n.inputs), n.outputs, n.attrs, n.name) for n in imp.nodes]
    return _identity_output(imp, alias, name)


def _identity_output(imp: _Importer, source_name: str, out_name: str) -> str:
    if out_name in imp.types:
        out_name = imp.fresh(out_name)
    imp.node_name = out_name
    imp.emit("Identity", [source_name], [out_name], fold=False)
    return out_name


def _graph_inputs(graph, imp: _Importer, source: str, overrides,
                  hints=None) -> dict[str, TensorType]:
    """Graph inputs with static shapes: --shape overrides, then hints for dynamic dims, else 1."""
    hints = hints or {}
    inputs = {}
    unknown = set(overrides) - {i.name for i in graph.input}
    if unknown:
        raise MlcError(f"{source}: --shape names unknown input(s) {sorted(unknown)}; inputs are "
                       f"{[i.name for i in graph.input if i.name not in imp.consts]}")
    for value in graph.input:
        if value.name in imp.consts:  # old exporters list initializers as inputs too
            continue
        where = f"{source}: input {value.name!r}"
        dims = declared_dims(value, where)
        dtype = onnx_dtype(value.type.tensor_type.elem_type, where)
        shape = _input_shape(value.name, dims, overrides.get(value.name),
                             hints.get(value.name), where)
        try:
            inputs[value.name] = TensorType(shape, dtype)
            check_size(inputs[value.name])
        except ValueError as err:
            raise MlcError(f"{where}: {err}") from None
        imp.types[value.name] = inputs[value.name]
    return inputs


def _input_shape(name: str, dims, given, hint, where: str) -> tuple[int, ...]:
    """One input's static shape from the model's dims, a --shape override and a run-time hint."""
    if given is not None:
        given = tuple(given)
        if any(isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 0
               for g in given):
            raise MlcError(f"{where}: the given shape {list(given)} must be whole numbers >= 0")
        if dims is not None and (len(given) != len(dims) or any(
                d is not None and d != g for d, g in zip(dims, given))):
            shown = [d if d is not None else "?" for d in dims]
            raise MlcError(f"{where}: the model declares shape {shown}; the given shape "
                           f"{list(given)} does not fit it")
        return given
    if dims is None:
        if hint is None:
            raise MlcError(f"{where}: the model does not declare its rank; give its shape with "
                           f"--shape {name}=DIMS")
        return tuple(hint)
    if hint is not None and len(hint) != len(dims):
        hint = None
    shape = []
    for i, d in enumerate(dims):
        if d is None and hint is None:
            log.warning("%s dim %d is dynamic; using 1 (set it with --shape)", where, i)
        shape.append(d if d is not None else (hint[i] if hint is not None else 1))
    return tuple(shape)


def load_onnx(path, input_shapes=None, shape_hints=None) -> Graph:
    """Read and import an .onnx file; all problems surface as MlcError."""
    path = Path(path)
    return import_onnx(read_onnx(path), str(path), input_shapes, name=path.stem,
                       shape_hints=shape_hints)
