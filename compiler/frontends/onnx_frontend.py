"""ONNX frontend: an .onnx file (opset 13+, external data beside it) -> IR Graph.

Import folds constants and shape arithmetic: once input shapes are fixed, Shape/Size/Range/
ConstantOfShape and every node whose inputs are all constant are evaluated with the op table's
numpy semantics, so the IR only holds the computation that depends on the inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import MlcError, UnsupportedOpsError
from ..ir.graph import Graph, IRError, Node
from ..ir.ops import OPS, compute, resolve_attrs
from ..ir.shapes import ShapeError
from ..ir.types import TensorType, dtype_name
from .onnx_ops import CONVERTERS, ConvertError, NeedsConstant

log = logging.getLogger("mlc")


def onnx_dtype(elem_type: int, where: str) -> str:
    """IR dtype name of an ONNX TensorProto element type."""
    try:
        return dtype_name(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        name = onnx.TensorProto.DataType.Name(elem_type)
        raise MlcError(f"{where}: element type {name} is not supported by the mlc IR") from None


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
    base = path.parent.resolve()
    for tensor in _all_initializers(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
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

    def __init__(self, source: str, opset: int):
        self.source = source
        self.opset = opset
        self.consts: dict[str, np.ndarray] = {}
        self.types: dict[str, TensorType] = {}
        self.nodes: list[Node] = []
        self.node_name = ""
        self._fresh = 0

    # ---- used by the converters ---------------------------------------------------------------
    def type_of(self, name: str) -> TensorType:
        return self.types[name]

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str, what: str) -> np.ndarray:
        """The constant value of an input that the IR needs at import (a shape, axes, ...)."""
        if name not in self.consts:
            raise NeedsConstant(name, what)
        return self.consts[name]

    def fresh(self, stem: str) -> str:
        self._fresh += 1
        return f"{stem}__{self._fresh}"

    def set_const(self, name: str, value: np.ndarray) -> None:
        value = np.asarray(value)
        self.consts[name] = value
        self.types[name] = TensorType.of(value)

    def emit(self, op: str, inputs, outputs, *, fold: bool = True, **attrs) -> None:
        """Add one IR node, or evaluate it now when every input is constant (and fold)."""
        opdef = OPS[op]
        try:
            resolved = resolve_attrs(opdef, attrs)
            out_types = opdef.infer([self.types[i] for i in inputs], resolved)
        except (ShapeError, ValueError, IndexError) as err:
            raise ConvertError(str(err)) from None
        if fold and all(i in self.consts for i in inputs):
            values = compute(op, [self.consts[i] for i in inputs], attrs)
            for name, value, t in zip(outputs, values, out_types):
                self.set_const(name, np.asarray(value).astype(value.dtype if t.dtype == "bfloat16"
                                                              else t.dtype))
            return
        node_name = self.node_name if not any(n.name == self.node_name for n in self.nodes) \
            else self.fresh(self.node_name or op)
        self.nodes.append(Node(op, inputs, outputs, attrs, node_name))
        self.types.update(zip(outputs, out_types))


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
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    unsupported: dict[str, list[str]] = {}
    for i, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in CONVERTERS:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            unsupported.setdefault(op, []).append(node.name or f"#{i}")
    if unsupported:
        raise UnsupportedOpsError(source, unsupported)
    if opset and opset < 13:
        log.warning("%s: opset %d is older than 13; mlc follows opset-13+ semantics", source,
                    opset)

    imp = _Importer(source, opset)
    for tensor in graph.initializer:
        try:
            imp.set_const(tensor.name, numpy_helper.to_array(tensor))
        except ValueError as err:
            raise MlcError(f"{source}: initializer {tensor.name!r}: {err}") from None
    for input_name, value in (constant_inputs or {}).items():
        imp.set_const(input_name, value)
    inputs = _graph_inputs(graph, imp, source, input_shapes or {}, shape_hints)
    for i, node in enumerate(graph.node):
        imp.node_name = node.name or f"{node.op_type.lower()}_{i}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        try:
            CONVERTERS[node.op_type](imp, list(node.input), list(node.output), attrs)
        except NeedsConstant as err:
            raise StaticOperandError(f"{source}: node {imp.node_name!r} ({node.op_type}): {err}",
                                     err.value_name) from None
        except (ConvertError, MlcError) as err:
            raise MlcError(f"{source}: node {imp.node_name!r} ({node.op_type}): {err}") from None
    outputs = []
    for out in graph.output:
        if out.name in imp.consts:  # a constant output still needs a producing node
            imp.emit("Identity", [_weight_alias(imp, out.name)], [out.name + "__out"], fold=False)
            outputs.append(out.name + "__out")
        else:
            outputs.append(out.name)
    used = {i for n in imp.nodes for i in n.inputs}
    weights = {k: v for k, v in imp.consts.items() if k in used}
    try:
        return Graph.build(name or graph.name or Path(source).stem, inputs, imp.nodes, outputs,
                           weights)
    except IRError as err:
        raise MlcError(f"{source}: import produced an invalid graph: {err}") from None


def _weight_alias(imp: _Importer, name: str) -> str:
    alias = imp.fresh(name)
    imp.set_const(alias, imp.consts[name])
    return alias


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
        tensor_type = value.type.tensor_type
        dtype = onnx_dtype(tensor_type.elem_type, f"{source}: input {value.name!r}")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        given = overrides.get(value.name)
        if given is not None:
            given = tuple(given)
            if len(given) != len(dims) or any(d is not None and d != g
                                              for d, g in zip(dims, given)):
                shown = [d if d is not None else "?" for d in dims]
                raise MlcError(f"{source}: input {value.name!r} has shape {shown} in the model; "
                               f"the given shape {list(given)} does not fit it")
            shape = given
        else:
            hint = hints.get(value.name)
            if hint is not None and len(hint) != len(dims):
                hint = None
            shape = []
            for i, d in enumerate(dims):
                if d is None and hint is None:
                    log.warning("%s: input %r dim %d is dynamic; using 1 (set it with --shape)",
                                source, value.name, i)
                shape.append(d if d is not None else (hint[i] if hint is not None else 1))
            shape = tuple(shape)
        inputs[value.name] = TensorType(shape, dtype)
        imp.types[value.name] = inputs[value.name]
    return inputs


def load_onnx(path, input_shapes=None, shape_hints=None) -> Graph:
    """Read and import an .onnx file; all problems surface as MlcError."""
    path = Path(path)
    return import_onnx(read_onnx(path), str(path), input_shapes, name=path.stem,
                       shape_hints=shape_hints)
