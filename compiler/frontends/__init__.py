"""Frontends: every way a model enters mlc ends in one call, `load_model(spec) -> Graph`.

A spec is a path (`.onnx`, `.pt2`, `graph.json`, an artifact directory), `package.module:callable`
(returning a torch module and example inputs), or `workload:NAME` (see mlc.specs.workloads).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import MlcError
from ..ir.graph import Graph

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".ckpt")
KNOWN_SPECS = ("a .onnx or .pt2 (torch.export) file, a graph.json, an artifact directory, "
               "module:callable or workload:NAME")


def load_model(spec: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
               shape_hints: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Import a model spec into the IR.

    input_shapes fix input shapes (an error if they contradict the model); shape_hints only fill
    dynamic dims, e.g. from the arrays about to be run.

    >>> load_model("model.onnx", {"input_ids": (2, 16)})
    >>> load_model("workload:rmsnorm_matmul:small")
    """
    spec = str(spec)
    if spec.startswith("workload:"):
        from mlc.specs.workloads import get_workload
        return _fixed_shapes(get_workload(spec[len("workload:"):]), input_shapes, spec)
    path = Path(spec)
    if path.is_dir():
        if not (path / "graph.json").is_file():
            raise MlcError(f"{path}: is a folder without graph.json, not an mlc artifact "
                           "directory (`mlc import MODEL --out DIR` writes one)")
        return _load_json(path / "graph.json", input_shapes)
    if path.suffix == ".onnx":
        from .onnx_frontend import load_onnx
        return load_onnx(path, input_shapes, shape_hints)
    if path.suffix == ".pt2":
        from .torch_frontend import load_pt2
        return _fixed_shapes(load_pt2(path), input_shapes, spec)
    if path.suffix == ".json":
        return _load_json(path, input_shapes)
    if path.suffix in PICKLE_SUFFIXES:
        raise MlcError(f"{path}: pickled torch files are refused (loading them runs arbitrary "
                       "code); save the model with torch.export.save(...) as a .pt2 archive")
    if ":" in spec and not path.exists():
        return _load_callable(spec, input_shapes)
    if not path.exists():
        raise MlcError(f"{path}: no such file; a model is {KNOWN_SPECS}")
    raise MlcError(f"{path}: unknown model format; a model is {KNOWN_SPECS}")


def _load_json(path: Path, input_shapes) -> Graph:
    from ..ir.serialize import load_graph
    return _fixed_shapes(load_graph(path), input_shapes, str(path))


def _fixed_shapes(graph: Graph, input_shapes, source: str) -> Graph:
    """Formats with baked-in shapes accept --shape only when it agrees with them."""
    for name, shape in (input_shapes or {}).items():
        if name not in graph.inputs:
            raise MlcError(f"{source}: --shape names unknown input {name!r}; inputs are "
                           f"{list(graph.inputs)}")
        if tuple(shape) != graph.inputs[name].shape:
            raise MlcError(f"{source}: input {name!r} is fixed at {list(graph.inputs[name].shape)}"
                           "; re-export the model with the shape you want")
    return graph


def _load_callable(spec: str, input_shapes) -> Graph:
    """`module:callable`: an explicit request to import the user's own module and call it.
    Whatever goes wrong in their code is their error to fix, reported in one line."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr.isidentifier():
        raise MlcError(f"{spec}: no such file, and not module:callable; a model is "
                       f"{KNOWN_SPECS}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MlcError(f"{spec}: cannot import module {module_name!r} ({err}); no such file "
                       f"either, and a model is {KNOWN_SPECS}") from None
    except Exception as err:  # noqa: BLE001 -- the user's module failed while importing
        raise MlcError(f"{spec}: importing {module_name!r} raised {type(err).__name__}: "
                       f"{err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        what = "has no attribute" if factory is None else "has a non-callable"
        raise MlcError(f"{spec}: module {module_name!r} {what} {attr!r}; give module:callable "
                       "where callable() returns (torch_module, example_inputs)")
    try:
        result = factory()
    except Exception as err:  # noqa: BLE001 -- the user's callable failed
        raise MlcError(f"{spec}: {attr}() raised {type(err).__name__}: {err}") from None
    if not (isinstance(result, tuple) and len(result) == 2):
        raise MlcError(f"{spec}: the callable must return (torch_module, example_inputs), "
                       f"got {type(result).__name__}")
    module, example_inputs = result
    import torch
    if not isinstance(module, torch.nn.Module) or not isinstance(example_inputs,
                                                                 (tuple, list, dict)):
        raise MlcError(f"{spec}: the callable must return (torch_module, example_inputs), got "
                       f"({type(module).__name__}, {type(example_inputs).__name__})")
    from .torch_frontend import from_module
    return _fixed_shapes(from_module(module, example_inputs, name=attr), input_shapes, spec)
