"""Execute an artifact written by `mlc compile`: the µGraph's Triton module runs its fused
kernels (on a GPU when one is present, else under the Triton interpreter on CPU tensors) and
its library ops through torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlc.compiler.errors import MlcError

MUGRAPH_FILE = Path("kernels") / "mugraph.json"
TRITON_FILE = Path("kernels") / "mugraph.py"


def is_compiled_artifact(path) -> bool:
    return Path(path).is_dir() and (Path(path) / MUGRAPH_FILE).is_file()


def compiled_inputs(path) -> dict[str, tuple[int, ...]]:
    """Input names and shapes of a compiled artifact, in launch order."""
    from mlc.compiler.superopt.mugraph import load_mugraph
    return dict(load_mugraph(Path(path) / MUGRAPH_FILE).inputs)


def _device() -> str:
    import torch
    if torch.cuda.is_available():
        return "cuda"
    # Triton needs the interpreter flag before it is imported to run kernels on the CPU.
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return "cpu"


def run_compiled(path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a compiled artifact directory on named float inputs; returns outputs by name."""
    from mlc.compiler.superopt.mugraph import MuGraphError, load_mugraph
    path = Path(path)
    try:
        graph = load_mugraph(path / MUGRAPH_FILE)
    except MuGraphError as err:
        raise MlcError(str(err)) from None
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
    device = _device()
    import torch

    from mlc.kernels.triton import load_triton_module
    module = load_triton_module((path / TRITON_FILE).read_text())
    tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(device)
               for n in graph.inputs]
    with np.errstate(all="ignore"):  # the interpreter evaluates masked-off lanes too (0/0)
        outputs = module.run(*tensors)
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return {name: out.detach().cpu().numpy() for name, out in zip(graph.outputs, outputs)}
