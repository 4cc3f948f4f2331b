"""The flat list of passes each command runs, in order (each a pure Graph -> Graph function)."""

from __future__ import annotations

from .passes.canonicalize import canonicalize_activations

IMPORT_PASSES = []  # `mlc import` keeps the graph as the frontend produced it
OPTIMIZE_PASSES = [canonicalize_activations]  # then regions -> search -> MuGraphCall rewrite


def run_passes(graph, passes):
    for run_pass in passes:
        graph = run_pass(graph)
    return graph
