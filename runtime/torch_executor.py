"""The torch executor: a Graph lowered to a `torch.nn.Module`, one TORCH_OPS call per node.

It is the fast path of `mlc run` and the autograd path for training imported graphs (float
weights are `nn.Parameter`s). It computes what the numpy reference interpreter computes, value
for value, and is tested against it.

    module = TorchGraphModule(graph)
    outputs = module(x=torch.ones(2, 64))          # {"y": tensor(...)}
    outputs["y"].sum().backward()                  # gradients land in module.weight_tensors()
"""

from __future__ import annotations

import re
from typing import Any

import ml_dtypes
import numpy as np
import torch

from mlc.compiler.ir.graph import Graph
from mlc.compiler.ir.interpreter import check_inputs
from mlc.compiler.ir.ops import OPS, resolve_attrs
from mlc.compiler.ir.types import TensorType, is_float, np_dtype

from .inputs import check_graph_fits_memory
from .torch_ops import FLOAT8, TORCH_DTYPES, TORCH_OPS, apply_op, cast, torch_dtype

# ---- numpy <-> torch (torch.from_numpy knows neither bfloat16 nor float8: go through bits) ----
_BITS = {torch.bfloat16: (np.int16, ml_dtypes.bfloat16),
         **{dtype: (np.int8, np_dtype(str(dtype).removeprefix("torch."))) for dtype in FLOAT8}}


def unsupported_dtypes(graph: Graph) -> set[str]:
    """The IR dtypes in the graph (values or Cast targets) that torch has no dtype for."""
    used = {t.dtype for t in graph.types.values()}
    used |= {node.attrs["to"] for node in graph.nodes if node.op == "Cast"}
    return used - set(TORCH_DTYPES)


def to_torch(value: Any, dtype: str) -> torch.Tensor:
    """A numpy array (or tensor) as a tensor of the IR dtype `dtype`."""
    target = torch_dtype(dtype)
    if isinstance(value, torch.Tensor):
        return value.to(target)
    array = np.asarray(value).astype(np_dtype(dtype), copy=False)
    if target in _BITS:
        bits = np.ascontiguousarray(array).view(_BITS[target][0])
        return torch.from_numpy(bits.copy()).view(target)
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = array.copy(order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    return torch.from_numpy(array)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array (bfloat16 and float8 as ml_dtypes arrays)."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype in _BITS:
        bits, np_type = _BITS[tensor.dtype]
        return tensor.view(torch.int16 if bits == np.int16 else torch.int8).numpy().view(np_type)
    return tensor.numpy()


def _trainable(dtype: str) -> bool:
    return is_float(dtype) and not dtype.startswith("float8")


class TorchGraphModule(torch.nn.Module):
    """A Graph as a torch module: float weights are Parameters, other weights buffers.

    `forward(*inputs)` (graph input order) or `forward(**inputs)` takes tensors (or arrays) and
    returns a dict from graph output name to tensor. With float64=True every float value
    (inputs, weights, intermediates) is float64, like `interpret(..., float64=True)`.
    Weight names are sanitized for torch (`encoder.fc.weight` -> `w_encoder_fc_weight`);
    `weight_names` maps each graph weight name to its attribute name.
    """

    def __init__(self, graph: Graph, *, float64: bool = False):
        super().__init__()
        missing = unsupported_dtypes(graph)
        if missing:
            raise TypeError(f"graph {graph.name!r} uses dtype(s) {sorted(missing)} that torch "
                            "lacks; run it with the reference executor")
        self.graph = graph
        self.float64 = float64
        self.weight_names: dict[str, str] = {}
        self.weight_transforms = torch.nn.ModuleDict()  # attr name -> module(weight) -> weight
        for name, array in graph.weights.items():
            self._add_weight(name, array)
        self._steps = [(node, TORCH_OPS[node.op], self._attrs(node)) for node in graph.nodes]
        last_use = {name: i for i, node in enumerate(graph.nodes) for name in node.inputs}
        keep = set(graph.outputs) | set(graph.weights)
        self._free_after = [[name for name in dict.fromkeys(node.inputs)
                             if last_use[name] == i and name not in keep]
                            for i, node in enumerate(graph.nodes)]

    # ---- construction -------------------------------------------------------------------------
    def _value_dtype(self, dtype: str) -> str:
        return "float64" if self.float64 and is_float(dtype) else dtype

    def _add_weight(self, name: str, array: np.ndarray) -> None:
        attr = "w_" + re.sub(r"\W", "_", name)
        while hasattr(self, attr):  # sanitized names may collide ("a.b" vs "a_b")
            attr += "_"
        dtype = TensorType.of(array).dtype
        tensor = to_torch(array, self._value_dtype(dtype))
        if _trainable(dtype):  # a copy: training must not write into the Graph's arrays
            self.register_parameter(attr, torch.nn.Parameter(tensor.clone()))
        else:
            self.register_buffer(attr, tensor)
        self.weight_names[name] = attr

    def _attrs(self, node) -> dict[str, Any]:
        attrs = resolve_attrs(OPS[node.op], node.attrs)
        if self.float64 and node.op == "Cast" and is_float(attrs["to"]):
            attrs["to"] = "float64"
        return attrs

    def _as_type(self, result: torch.Tensor, dtype: str) -> torch.Tensor:
        """A result in its inferred dtype; float8 overflow is NaN/inf as in ml_dtypes."""
        dtype = self._value_dtype(dtype)
        target = torch_dtype(dtype)
        if result.dtype == target:
            return result
        return cast(result, dtype, saturate=0) if target in FLOAT8 else result.to(target)

    def set_weight_transform(self, name: str, transform: torch.nn.Module | None) -> None:
        """Feed `transform(weight)` instead of graph weight `name` to its consumers (e.g. a
        quantizer's soft weights during training); None removes it. The transform's
        parameters become this module's, so one optimizer trains both."""
        attr = self.weight_names[name]
        if transform is None:
            self.weight_transforms.pop(attr, None)
        else:
            self.weight_transforms[attr] = transform

    # ---- queries ------------------------------------------------------------------------------
    def weight_tensors(self) -> dict[str, torch.Tensor]:
        """Graph weight name -> its Parameter (float) or buffer (other dtypes)."""
        return {name: getattr(self, attr) for name, attr in self.weight_names.items()}

    # ---- execution ----------------------------------------------------------------------------
    def _bind_inputs(self, args, kwargs) -> dict[str, torch.Tensor]:
        names = list(self.graph.inputs)
        if len(args) > len(names):
            raise TypeError(f"{self.graph.name} takes {len(names)} inputs, got {len(args)}")
        given = {**dict(zip(names, args)), **kwargs}
        missing = [name for name in names if name not in given]
        extra = sorted(set(given) - set(names))
        if missing or extra:
            raise TypeError(f"{self.graph.name}: missing inputs {missing}, unknown {extra}; the "
                            f"inputs are {names}")
        return {name: to_torch(given[name], self._value_dtype(t.dtype))
                for name, t in self.graph.inputs.items()}

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        values = self._bind_inputs(args, kwargs)
        values.update(self.weight_tensors())
        for name, attr in self.weight_names.items():
            if attr in self.weight_transforms:
                values[name] = self.weight_transforms[attr](values[name])
        types = self.graph.types
        for (node, fn, attrs), dead in zip(self._steps, self._free_after):
            results = apply_op(fn, [values[name] for name in node.inputs], attrs)
            if len(results) != len(node.outputs):
                raise RuntimeError(f"node {node.name!r} ({node.op}): torch gave {len(results)} "
                                   f"outputs, the graph names {len(node.outputs)}")
            for name, result in zip(node.outputs, results):
                values[name] = self._as_type(result, types[name].dtype)
            for name in dead:  # free intermediates after their last use
                del values[name]
        return {name: values[name] for name in self.graph.outputs}


def run_torch(graph: Graph, inputs: dict[str, np.ndarray], *,
              float64: bool = False) -> dict[str, np.ndarray]:
    """Run the graph with torch on numpy inputs; outputs as numpy arrays, like `interpret`.

    >>> run_torch(graph, {"x": np.ones((2, 4), np.float32)})["y"]
    """
    check_inputs(graph, inputs)
    check_graph_fits_memory(graph, float64=float64)  # a clear error, not a MemoryError
    module = TorchGraphModule(graph, float64=float64)
    with torch.no_grad():
        outputs = module(**inputs)
    return {name: to_numpy(value) for name, value in outputs.items()}
