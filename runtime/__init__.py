"""Executors for mlc graphs and artifact directories.

`run(graph_or_artifact, inputs)` is the one entry point. It executes with the torch executor
(`torch_executor.py`, the fast path) or the numpy reference interpreter (the ground truth);
graphs holding a dtype torch lacks (int4, float4, ...) fall back to the reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph
from mlc.compiler.ir.interpreter import check_inputs, interpret

from .compiled import is_compiled_artifact, run_compiled
from .inputs import check_index_inputs, random_inputs

__all__ = ["EXECUTORS", "prepare", "run", "random_inputs"]

EXECUTORS = ("torch", "reference")
log = logging.getLogger("mlc")


def run(graph_or_artifact: Graph | str | Path, inputs: dict[str, np.ndarray], *,
        float64: bool = False, executor: str = "torch") -> dict[str, np.ndarray]:
    """Execute a Graph, an artifact directory, or any model spec on named numpy inputs.

    executor is "torch" (default) or "reference" (the numpy interpreter); float64=True
    computes every float in float64 with either.

    An artifact from `mlc compile` runs its generated kernels instead (Triton; the Triton
    interpreter on a CPU-only machine).

    >>> run("build/mlp", {"x": np.ones((1, 64), np.float32)})["y"]
    """
    if executor not in EXECUTORS:
        raise MlcError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if isinstance(graph_or_artifact, Graph):
        graph = graph_or_artifact
    elif is_compiled_artifact(graph_or_artifact):  # written by `mlc compile`: fused kernels
        return run_compiled(graph_or_artifact, inputs)
    else:
        from mlc.compiler.frontends import load_model
        graph = load_model(graph_or_artifact)
    check_inputs(graph, inputs)
    check_index_inputs(graph, inputs)
    if executor == "torch":
        from .torch_executor import run_torch, unsupported_dtypes  # torch loads on first use

        missing = unsupported_dtypes(graph)
        if not missing:
            return run_torch(graph, inputs, float64=float64)
        log.warning("graph %r uses dtype(s) %s that torch lacks; running it with the reference "
                    "executor", graph.name, ", ".join(sorted(missing)))
    return interpret(graph, inputs, float64=float64)


def prepare(graph: Graph, *, float64: bool = False, executor: str = "torch"):
    """A callable running `graph` on named numpy inputs, with its setup (the torch module,
    weights as tensors) done once: what repeated timing should measure. Same results and
    fallbacks as run()."""
    if executor not in EXECUTORS:
        raise MlcError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "torch":
        from .torch_executor import TorchGraphModule, to_numpy, unsupported_dtypes
        if not unsupported_dtypes(graph):
            import torch
            module = TorchGraphModule(graph, float64=float64)

            def call(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                check_inputs(graph, inputs)
                check_index_inputs(graph, inputs)
                with torch.no_grad():
                    outputs = module(**inputs)
                return {name: to_numpy(value) for name, value in outputs.items()}
            return call
    return lambda inputs: run(graph, inputs, float64=float64, executor=executor)
