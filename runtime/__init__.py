"""Executors for mlc graphs and artifact directories.

`run(graph_or_artifact, inputs)` is the one entry point; today it executes with the numpy
reference interpreter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlc.compiler.ir.graph import Graph
from mlc.compiler.ir.interpreter import interpret

from .inputs import random_inputs

__all__ = ["run", "random_inputs"]


def run(graph_or_artifact: Graph | str | Path, inputs: dict[str, np.ndarray], *,
        float64: bool = False) -> dict[str, np.ndarray]:
    """Execute a Graph, an artifact directory, or any model spec on named numpy inputs.

    >>> run("build/mlp", {"x": np.ones((1, 64), np.float32)})["y"]
    """
    if isinstance(graph_or_artifact, Graph):
        graph = graph_or_artifact
    else:
        from mlc.compiler.frontends import load_model
        graph = load_model(graph_or_artifact)
    return interpret(graph, inputs, float64=float64)
