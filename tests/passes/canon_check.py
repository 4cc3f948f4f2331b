"""Shared check for canonicalization tests: a rewritten graph computes what the original did."""

from __future__ import annotations

import numpy as np

from mlc.compiler.ir import interpret
from mlc.compiler.ir.graph import Graph


def random_feeds(graph: Graph, seed: int = 0, scale: float = 3.0) -> dict[str, np.ndarray]:
    """Normal inputs (times `scale`, so activations see their tails) for every graph input."""
    rng = np.random.default_rng(seed)
    return {name: (scale * rng.standard_normal(t.shape)).astype(t.dtype)
            for name, t in graph.inputs.items()}


def assert_same_function(before: Graph, after: Graph, rtol: float = 1e-5, seed: int = 0):
    """Same outputs (names and values, float64 reference interpreter, max error relative to the
    output's largest magnitude) on random inputs; also that node names stay unique."""
    assert after.outputs == before.outputs
    names = [n.name for n in after.nodes]
    assert len(names) == len(set(names))
    feeds = random_feeds(before, seed)
    want = interpret(before, feeds, float64=True)
    got = interpret(after, feeds, float64=True)
    for name in before.outputs:
        scale = max(float(np.max(np.abs(want[name]))), 1e-30)
        assert float(np.max(np.abs(got[name] - want[name]))) <= rtol * scale, name
