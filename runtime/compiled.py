"""Execute an artifact written by `mlc compile`: the µGraph's Triton module runs its fused
kernels (on a GPU when one is present, else under the Triton interpreter on CPU tensors) and
its library ops through torch.

The kernels are rendered again from the artifact's µGraph JSON (checked by the µGraph loader)
by mlc's own Triton renderer: kernels/mugraph.py stays in the artifact for people to read, but
it is never imported, so editing it cannot make `mlc run` execute anything."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlc.compiler.errors import MlcError

MUGRAPH_FILE = Path("kernels") / "mugraph.json"


def is_compiled_artifact(path) -> bool:
    return Path(path).is_dir() and (Path(path) / MUGRAPH_FILE).is_file()


def compiled_inputs(path) -> dict[str, tuple[int, ...]]:
    """Input names and shapes of a compiled artifact, in launch order."""
    return dict(_load_graph(Path(path)).inputs)


def _load_graph(path: Path):
    """The artifact's µGraph, read and validated; a bad file is an MlcError naming it."""
    from mlc.compiler.superopt.mugraph import MuGraphError, load_mugraph, validate
    try:
        graph = load_mugraph(path / MUGRAPH_FILE)  # its errors already name the file
    except MuGraphError as err:
        raise MlcError(str(err)) from None
    try:
        validate(graph)
    except MuGraphError as err:
        raise MlcError(f"{path / MUGRAPH_FILE}: {err}") from None
    return graph


def _kernel_source(graph, path: Path) -> str:
    """The Triton module for `graph`, rendered now by mlc (the artifact's copy is not read)."""
    from mlc.compiler.superopt.mugraph import MuGraphError
    from mlc.kernels.triton import render_triton
    try:
        return render_triton(graph)
    except MuGraphError as err:
        raise MlcError(f"{path / MUGRAPH_FILE}: cannot render Triton kernels ({err})") from None


def _device() -> str:
    import torch
    if torch.cuda.is_available():
        return "cuda"
    # Triton needs the interpreter flag before it is imported to run kernels on the CPU.
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return "cpu"


def run_compiled(path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a compiled artifact directory on named float inputs; returns outputs by name."""
    path = Path(path)
    graph = _load_graph(path)
    problems = [f"missing input {n!r} {list(s)}" for n, s in graph.inputs.items()
                if n not in inputs]
    problems += [f"input {n!r} has shape {list(np.shape(inputs[n]))}, the kernel expects "
                 f"{list(s)}" for n, s in graph.inputs.items()
                 if n in inputs and tuple(np.shape(inputs[n])) != tuple(s)]
    extra = sorted(set(inputs) - set(graph.inputs))
    if extra:
        problems.append(f"unknown input(s) {extra}; the kernel's inputs are {list(graph.inputs)}")
    if problems:
        raise MlcError("; ".join(problems))
    device = _device()  # before the renderer imports triton
    source = _kernel_source(graph, path)
    import torch

    from mlc.kernels.triton import load_triton_module
    module = load_triton_module(source)
    tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(device)
               for n in graph.inputs]
    with np.errstate(all="ignore"):  # the interpreter evaluates masked-off lanes too (0/0)
        outputs = module.run(*tensors)
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return {name: out.detach().cpu().numpy() for name, out in zip(graph.outputs, outputs)}
