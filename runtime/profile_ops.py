"""Per-op forward and backward times of a graph, measured with torch on this machine: what
`mlc partition --profile` feeds the cost model instead of roofline estimates.

Each node runs on the values the graph really produces from random inputs (so index inputs
stay in range), at the graph's own batch and again on a one-sample slice where the op allows it;
backward times the gradient of the node's float inputs for an all-ones output gradient.
"""

from __future__ import annotations

import time

import torch

from mlc.compiler.ir.graph import Graph

from .inputs import random_inputs
from .torch_executor import TorchGraphModule
from .torch_ops import apply_op


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _timings(fn, attrs, inputs: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """(forward seconds, backward seconds) of one op on `inputs`."""
    forward = _median_seconds(lambda: apply_op(fn, inputs, attrs), repeats)
    leaves = [x.detach().requires_grad_(x.is_floating_point()) for x in inputs]
    if not any(x.requires_grad for x in leaves):
        return forward, 0.0

    def backward():
        outs = [o for o in apply_op(fn, leaves, attrs) if o.requires_grad]
        if outs:
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
    return forward, max(0.0, _median_seconds(backward, repeats) - forward)


def _one_sample(inputs: list[torch.Tensor], batch: int) -> list[torch.Tensor] | None:
    """The inputs cut to one sample along dim 0 where that dim is the batch, else None."""
    cut = [x[:1] if x.dim() and x.shape[0] == batch else x for x in inputs]
    return cut if any(c is not x for c, x in zip(cut, inputs)) else None


def profile_ops(graph: Graph, repeats: int = 3, seed: int = 0) -> dict[str, tuple]:
    """{node name: (batch, forward_s, backward_s, forward_1_s, backward_1_s)} measured here.

    Requires: float weights (the torch executor's training path). Ensures: every node has an
    entry; the one-sample figures equal the full-batch ones where the op cannot be sliced."""
    module = TorchGraphModule(graph)
    first = next(iter(graph.inputs.values()))
    batch = first.shape[0] if first.shape else 1
    values = {name: torch.as_tensor(v) for name, v in random_inputs(graph, seed).items()}
    values.update({k: v.detach() for k, v in module.weight_tensors().items()})
    results = {}
    for node, fn, attrs in module._steps:  # (node, torch op, resolved attrs), in order
        inputs = [values[name] for name in node.inputs]
        with torch.no_grad():
            outputs = apply_op(fn, inputs, attrs)
        for name, out in zip(node.outputs, outputs):
            values[name] = module._as_type(out, graph.types[name].dtype)
        full = _timings(fn, attrs, inputs, repeats)
        small = full
        cut = _one_sample(inputs, batch) if batch > 1 else None
        if cut is not None:
            try:
                small = _timings(fn, attrs, cut, repeats)
            except (RuntimeError, ValueError, IndexError):
                small = full  # the op's attributes pin the batch (e.g. a Reshape)
        results[node.name] = (batch, *full, *small)
    return results
