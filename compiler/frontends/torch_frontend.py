"""The torch frontend: torch.export programs (and fx graphs, modules, .pt2 archives) to IR graphs.

It decomposes the program to core aten (keeping the few high-level ops the IR has), folds every
node whose inputs are all constants, and maps the rest through the rule table in aten_table.py.

    graph = from_module(model.eval(), (torch.randn(8, 784),))
"""

from __future__ import annotations

import math
import operator
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from ..errors import MlcError, UnsupportedOpsError
from ..ir.graph import Graph, Node
from ..ir.ops import OPS, resolve_attrs
from ..ir.shapes import ShapeError
from ..ir.types import TensorType, np_dtype
from . import aten_table
from .aten_table import Unsupported
from .builder import GraphBuilder
from .pt2_archive import NOT_AN_ARCHIVE, read_export_archive

_DTYPES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int8: "int8", torch.int16: "int16", torch.int32: "int32",
    torch.int64: "int64", torch.uint8: "uint8", torch.bool: "bool",
}
_TORCH_DTYPES = {name: dtype for dtype, name in _DTYPES.items()}
_PT2_HINT = NOT_AN_ARCHIVE
MAX_FOLDED_ELEMENTS = 2**28  # 1 GiB of float32: far above any real model's folded constants


def ir_dtype(dtype: torch.dtype) -> str:
    """The IR dtype name of a torch dtype, e.g. ir_dtype(torch.bfloat16) == "bfloat16"."""
    if dtype not in _DTYPES:
        raise MlcError(f"torch dtype {dtype} is not supported by the mlc IR")
    return _DTYPES[dtype]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy of a tensor; bfloat16 goes bit-exactly through ml_dtypes."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np_dtype("bfloat16")).copy()
    return tensor.numpy(force=True).astype(np_dtype(ir_dtype(tensor.dtype)), copy=True)


class Ref(str):
    """The name of an IR value (as opposed to a constant, which is a torch tensor or a number)."""


_POISON = object()  # the value of a node that depends on an unsupported op


def _concrete(value):
    """A Python number for a (possibly symbolic) scalar; shapes resolve to the example's."""
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        hint = value.node.hint
        if hint is None:
            raise Unsupported("data-dependent scalar")
        return hint
    return value


def _tensor_type(val) -> TensorType | None:
    if isinstance(val, torch.Tensor):
        return TensorType(tuple(int(_concrete(d)) for d in val.shape), ir_dtype(val.dtype))
    return None


def _leaves(value):
    return pytree.tree_leaves(value, is_leaf=lambda x: isinstance(x, Ref))


class _Converter:
    """Walks one exported graph, node by node; the aten rules call back into `op`/`tensor`."""

    def __init__(self, ep: torch.export.ExportedProgram, name: str):
        self.ep = ep
        self.builder = GraphBuilder(name)
        self.types: dict[str, TensorType] = {}
        self.env: dict[str, Any] = {}
        self.unsupported: dict[str, list[str]] = {}
        self._weights_by_id: dict[Any, Ref] = {}
        self._const_names: dict[int, str] = {}
        self._node_name = ""
        self._emitted = 0
        self.out: Any = None

    # ---- the interface the rules use ------------------------------------------------------
    @property
    def out_dtype(self) -> str:
        return next(t for t in self._out_types() if t is not None).dtype

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.out.shape

    def _out_types(self):
        return self.out if isinstance(self.out, tuple) else (self.out,)

    def shape(self, value) -> tuple[int, ...]:
        if isinstance(value, Ref):
            return self.types[value].shape
        return tuple(torch.as_tensor(value).shape)

    def rank(self, value) -> int:
        return len(self.shape(value))

    def dtype(self, value) -> str:
        if isinstance(value, Ref):
            return self.types[value].dtype
        return ir_dtype(torch.as_tensor(value).dtype)

    def promote(self, a, b) -> str:
        """torch's result dtype of a binary op on these values (tensors, IR values, numbers)."""
        stand_ins = [torch.empty((1,) if self.rank(v) else (), dtype=_TORCH_DTYPES[self.dtype(v)])
                     if isinstance(v, Ref) else v for v in (a, b)]
        return ir_dtype(torch.result_type(*stand_ins))

    def op(self, op: str, *inputs, outputs: int = 1, **attrs):
        """Emit one IR node for the current torch node; returns its output Ref(s)."""
        inputs = tuple(self.tensor(x) for x in inputs)
        name = self._node_name if self._emitted == 0 else f"{self._node_name}:{self._emitted}"
        self._emitted += 1
        try:
            out_types = OPS[op].infer([self.types[x] for x in inputs],
                                      resolve_attrs(OPS[op], attrs))
        except (ShapeError, ValueError, TypeError, IndexError) as err:
            raise MlcError(f"torch node {self._node_name!r}: cannot map to {op}: {err}") from None
        outs = self.builder.op(op, *inputs, outputs=outputs, name=name, **attrs)
        outs = (outs,) if outputs == 1 else outs
        self.types.update(zip(outs, out_types))
        refs = tuple(Ref(o) for o in outs)
        return refs[0] if outputs == 1 else refs

    def tensor(self, value, dtype: str | None = None) -> Ref:
        """An IR value for `value` (IR value, constant tensor or number), cast to `dtype`."""
        if isinstance(value, Ref):
            if dtype is None or self.types[value].dtype == dtype:
                return value
            return self.op("Cast", value, to=dtype)
        if isinstance(value, torch.Tensor):
            key = (id(value), dtype)
            if key not in self._weights_by_id:
                array = to_numpy(value)
                array = array if dtype is None else array.astype(np_dtype(dtype))
                stem = self._const_names.get(id(value), f"{self._node_name}.const")
                self._weights_by_id[key] = self._weight(stem, array)
            return self._weights_by_id[key]
        if isinstance(value, (bool, int, float)):
            dtype = dtype or self.dtype(value)
            key = (repr(value), type(value), dtype)
            if key not in self._weights_by_id:
                array = np.asarray(value, dtype=np_dtype(dtype))
                self._weights_by_id[key] = self._weight("const", array)
            return self._weights_by_id[key]
        raise MlcError(f"torch node {self._node_name!r}: expected a tensor, got {value!r}")

    # ---- names, inputs, weights ----------------------------------------------------------
    def _unique(self, stem: str) -> str:
        name, k = stem, 0
        while name in self.types:
            k += 1
            name = f"{stem}.{k}"
        return name

    def _weight(self, stem: str, array: np.ndarray) -> Ref:
        name = self._unique(stem)
        self.builder.weight(name, array)
        self.types[name] = TensorType.of(array)
        return Ref(name)

    def _placeholders(self) -> None:
        signature = self.ep.graph_signature
        params = signature.inputs_to_parameters
        buffers = signature.inputs_to_buffers
        constants = getattr(signature, "inputs_to_lifted_tensor_constants", {})
        for node in self.ep.graph.nodes:
            if node.op != "placeholder":
                continue
            self._node_name = node.name
            if node.name in params:
                target = params[node.name]
                self.env[node.name] = self._weight(target, to_numpy(self.ep.state_dict[target]))
            elif node.name in buffers or node.name in constants:
                target = buffers.get(node.name) or constants[node.name]
                value = self.ep.state_dict.get(target)
                value = self.ep.constants[target] if value is None else value
                self._const_names[id(value)] = target  # folded away unless an IR node reads it
                self.env[node.name] = value
            elif isinstance(node.meta.get("val"), torch.Tensor):
                ttype = _tensor_type(node.meta["val"])
                self.builder.input(node.name, ttype.shape, ttype.dtype)
                self.types[node.name] = ttype
                self.env[node.name] = Ref(node.name)
            else:  # a non-tensor user input: export specialized it to the example's value
                self.env[node.name] = _concrete(node.meta.get("val"))

    # ---- the walk --------------------------------------------------------------------------
    def convert(self) -> Graph:
        self._placeholders()
        for node in self.ep.graph.nodes:
            if node.op == "call_function":
                self._node_name, self._emitted = node.name, 0
                try:
                    value = self._call(node)
                    if isinstance(value, torch.Tensor):  # a folded constant keeps its node name
                        self._const_names.setdefault(id(value), node.name)
                    self.env[node.name] = value
                except Unsupported as err:
                    self._unsupported(f"{node.target} ({err})", node.name)
            elif node.op == "get_attr":
                self.env[node.name] = getattr(self.ep.graph_module, node.target)
        if self.unsupported:
            raise UnsupportedOpsError(f"torch model {self.builder.name!r}", self.unsupported)
        return self._build()

    def _unsupported(self, op: str, node_name: str):
        self.unsupported.setdefault(op, []).append(node_name)
        self.env[node_name] = _POISON

    def _call(self, node):
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: self.env[n.name])
        if any(leaf is _POISON for leaf in _leaves((args, kwargs))):
            return _POISON
        target, val = node.target, node.meta.get("val")
        if target is operator.getitem:
            return args[0][args[1]]
        if isinstance(val, (int, float, bool, torch.SymInt, torch.SymFloat, torch.SymBool)):
            return _concrete(val)  # shape arithmetic: the example's concrete value
        packet = getattr(target, "overloadpacket", None)
        if packet in aten_table.IGNORED:
            return None
        if packet in aten_table.SHAPE_ONLY:
            args, kwargs = pytree.tree_map_only(Ref, self._zeros_like, (args, kwargs))
            target = getattr(aten_table.SHAPE_ONLY[packet], target._overloadname)
        if not any(isinstance(leaf, Ref) for leaf in _leaves((args, kwargs))):
            if isinstance(target, torch._ops.OpOverload):
                return self._fold(node, target, args, kwargs)
        rule = aten_table.lookup(target)
        if rule is None:
            self._unsupported(str(target), node.name)
            return _POISON
        self.out = pytree.tree_map(_tensor_type, val)
        self.out = tuple(self.out) if isinstance(self.out, list) else self.out
        return self._check(node, rule(self, *self._schema_args(target, args, kwargs)))

    def _fold(self, node, target, args, kwargs):
        """Constant folding, in torch itself; sizes come from the (possibly hostile) file, so a
        constant too big to hold or an op torch refuses is bad input, not an mlc bug."""
        sizes = [math.prod(_concrete(d) for d in t.shape)
                 for t in pytree.tree_leaves(node.meta.get("val")) if isinstance(t, torch.Tensor)]
        if sum(sizes) > MAX_FOLDED_ELEMENTS:
            raise MlcError(f"torch node {node.name!r} ({target}): a constant of {sum(sizes):,} "
                           f"elements (mlc folds at most {MAX_FOLDED_ELEMENTS:,})")
        try:
            return target(*args, **kwargs)
        except (RuntimeError, ValueError, IndexError, MemoryError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise MlcError(f"torch node {node.name!r} ({target}): cannot compute this constant "
                           f"({first})") from None

    def _zeros_like(self, ref: Ref) -> torch.Tensor:
        return torch.zeros(self.shape(ref), dtype=_TORCH_DTYPES[self.dtype(ref)])

    @staticmethod
    def _schema_args(target, args, kwargs) -> list:
        """Every schema argument in order, defaults filled, so rules take them positionally."""
        if not hasattr(target, "_schema"):
            return [*args, *kwargs.values()]
        filled = []
        for i, arg in enumerate(target._schema.arguments):
            if i < len(args) and not arg.kwarg_only:
                filled.append(args[i])
            elif arg.name in kwargs:
                filled.append(kwargs[arg.name])
            else:
                filled.append(arg.default_value if arg.has_default_value() else None)
        return filled

    def _check(self, node, result):
        """Make each output's IR dtype match torch's; a shape mismatch is a frontend bug."""
        if isinstance(result, tuple):
            return tuple(self._check_one(node, r, t) for r, t in zip(result, self._out_types()))
        return self._check_one(node, result, self.out)

    def _check_one(self, node, result, expected: TensorType | None):
        if not isinstance(result, Ref) or expected is None:
            return result
        got = self.types[result]
        if got.shape != expected.shape:
            raise MlcError(f"torch frontend bug at node {node.name!r} ({node.target}): IR shape "
                           f"{got.shape}, torch shape {expected.shape}")
        return self.tensor(result, expected.dtype)

    def _build(self) -> Graph:
        specs = self.ep.graph_signature.output_specs
        output_node = next(n for n in self.ep.graph.nodes if n.op == "output")
        values = [self.env[n.name] if isinstance(n, torch.fx.Node) else n
                  for n in output_node.args[0]]
        self._node_name = "output"
        outputs = [self.tensor(v) for v, spec in zip(values, specs)
                   if spec.kind == torch.export.graph_signature.OutputKind.USER_OUTPUT]
        return self.builder.build(*self._rename_outputs(outputs))

    def _rename_outputs(self, outputs: list[Ref]) -> list[str]:
        """Name node outputs after the model's output structure (`last_hidden_state`, ...)."""
        wanted = _output_names(self.ep, len(outputs))
        producers = {out: i for i, node in enumerate(self.builder.nodes) for out in node.outputs}
        renames = {}
        for ref, name in zip(outputs, wanted):
            if (ref in producers and name not in self.types and ref not in renames
                    and name not in renames.values() and outputs.count(ref) == 1):
                renames[ref] = name
        if renames:
            swap = lambda names: tuple(renames.get(n, n) for n in names)  # noqa: E731
            self.builder.nodes = [type(n)(n.op, swap(n.inputs), swap(n.outputs), n.attrs, n.name)
                                  for n in self.builder.nodes]
        named = [renames.get(ref, ref) for ref in outputs]
        return [self._copy_output(ref, name, named) if name != ref else ref
                for ref, name in zip(named, wanted + named[len(wanted):])]

    def _copy_output(self, ref: str, name: str, named: list[str]) -> str:
        """An output no node renames (an input, a weight, a repeat) gets an Identity node with
        its structural name, unless that name is taken (then it keeps its own)."""
        if name in self.types or name in named:
            return ref
        self.builder.nodes.append(Node("Identity", (ref,), (name,), {}, name))
        self.types[name] = self.types[ref]
        return name


def _output_names(ep, count: int) -> list[str]:
    """One name per user output from the output pytree: dict keys, attributes, positions."""
    try:
        structure = pytree.tree_unflatten(list(range(count)), ep.call_spec.out_spec)
        paths = [path for path, _ in pytree.tree_flatten_with_path(structure)[0]]
    except Exception:  # an output type pytree cannot rebuild: keep the node names
        return []
    names = []
    for path in paths:
        parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", "")))) for k in path]
        name = "_".join(parts) or "output"
        names.append(f"output_{name}" if name[0].isdigit() else name)
    return names


def decomposition_table() -> dict:
    """torch's default decompositions, minus the ops the IR keeps whole (aten_table.PRESERVED)."""
    table = torch.export.default_decompositions()
    for op in aten_table.PRESERVED:
        table.pop(op, None)
    return table


def from_exported_program(ep: torch.export.ExportedProgram, name: str = "model") -> Graph:
    """Import an ExportedProgram: parameters become weights, user inputs become graph inputs.

    >>> graph = from_exported_program(torch.export.export(model, (x,)))
    """
    return _Converter(_decompose(ep), name).convert()


def _decompose(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    with warnings.catch_warnings():  # torch's own deprecation notices would end on stderr
        warnings.simplefilter("ignore", FutureWarning)
        return ep.run_decompositions(decomposition_table())


def _export(module, args: tuple, kwargs: dict | None = None):
    try:
        return torch.export.export(module, tuple(args), kwargs or None)
    except Exception as err:  # torch's messages run to pages; keep the first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise MlcError(f"torch.export failed: {type(err).__name__}: {first}") from err


def from_fx(gm: torch.fx.GraphModule, example_inputs: tuple, name: str = "model") -> Graph:
    """Import a torch.fx GraphModule (e.g. from symbolic_trace), exported on the examples."""
    return from_exported_program(_export(gm, tuple(example_inputs)), name)


def from_module(module: torch.nn.Module, example_inputs: tuple | dict,
                name: str = "model") -> Graph:
    """Import a module in eval mode; a dict of example inputs passes them as keywords.

    >>> graph = from_module(torch.nn.Linear(4, 2), (torch.randn(3, 4),))
    """
    module = module.eval()
    if isinstance(example_inputs, dict):
        return from_exported_program(_export(module, (), example_inputs), name)
    return from_exported_program(_export(module, tuple(example_inputs)), name)


def load_pt2(path) -> Graph:
    """Import a `.pt2` archive written by torch.export.save. Nothing in it is unpickled or run:
    pt2_archive checks every entry first (pickled torch files and planted payloads are refused).
    """
    path = Path(path)
    if not path.is_file():
        raise MlcError(f"{path}: no such file")
    if path.suffix != ".pt2":
        raise MlcError(f"{path}: {_PT2_HINT}")
    ep = read_export_archive(path)
    try:
        ep = _decompose(ep)
    except Exception as err:  # the file's program is one torch itself cannot retrace
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise MlcError(f"{path}: torch cannot decompose the exported program ({first}); "
                       "re-export with torch.export.save") from None
    return _Converter(ep, path.stem).convert()
