"""Shared pieces of the workload tables: the `Workload` row and the sub-graphs several use.

RMS norm and softmax are spelled with primitive IR ops, not RMSNormalization / Softmax, so the
superoptimizer sees the same terms Mirage's abstract expressions use (rms_norm -> x / rms(x),
softmax -> exp(s) / sum(exp(s))) and can move the division past a matmul. RMSNormalization
would also add an epsilon and a scale operand that the papers' rms_norm does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mlc.compiler.frontends.builder import GraphBuilder


@dataclass(frozen=True)
class Workload:
    """One row of a workload table.

    `define(builder, **params)` adds the inputs and nodes and returns the output's name;
    `params` holds the papers' default shapes (ints); `presets` are named overrides (every
    workload has "small"); `flags` are params that must be 0 or 1; `sweep` lists the values
    the paper sweeps, per param.
    """

    define: Callable[..., str]
    params: dict[str, int]
    presets: dict[str, dict[str, int]]
    flags: tuple[str, ...] = ()
    sweep: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        """The builder's docstring on one line: formula and shapes in the papers' names."""
        return " ".join((self.define.__doc__ or "").split())


def rms_norm(g: GraphBuilder, x: str, name: str | None = None) -> str:
    """x / sqrt(mean(x * x)) over the last axis, no epsilon and no scale (as in Mirage)."""
    mean_square = g.op("ReduceMean", g.op("Mul", x, x), axes=(-1,), keepdims=1)
    return g.op("Div", x, g.op("Sqrt", mean_square), name=name)


def softmax_attention(g: GraphBuilder, q: str, k_t: str, v: str, safe: int) -> str:
    """O = softmax(q @ k_t) @ v over the last axis; safe=1 subtracts the row max first.

    No 1/sqrt(d) scaling: the Mirage and Prism reference graphs have none.
    """
    scores = g.op("MatMul", q, k_t)
    if safe:
        scores = g.op("Sub", scores, g.op("ReduceMax", scores, axes=(-1,), keepdims=1))
    exp = g.op("Exp", scores)
    probs = g.op("Div", exp, g.op("ReduceSum", exp, axes=(-1,), keepdims=1))
    return g.op("MatMul", probs, v, name="O")
