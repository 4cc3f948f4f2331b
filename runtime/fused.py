"""How `mlc run` executes a fused region (a MuGraphCall node): its compiled CPU kernel when
it can, the µGraph interpreted with torch arithmetic otherwise.

The compiled path (kernels/cpu: the µGraph rendered to C++, built with the system compiler,
cached by source hash) runs when the values are float32 CPU tensors that need no gradient (an
inference call). Training (gradients), float64 checks and machines without a C++ compiler use
the interpreter, which is differentiable and dtype-generic. The artifact never carries
binaries: kernels are regenerated from the µGraph JSON in the graph.

`MLC_FUSED=interpret` forces the interpreter (`cpu` forbids falling back); PATHS records which
path each call took, so `mlc run` can say so.
"""

from __future__ import annotations

import logging
import os
from collections import Counter

import torch

PATHS: Counter = Counter()  # "cpu-kernels" / "torch-interpreted" -> calls since reset_paths()
_KERNELS: dict[str, object] = {}  # µGraph document -> CpuKernel (None: it cannot compile)
_LOG = logging.getLogger("mlc")
CPU, INTERPRET = "cpu-kernels", "torch-interpreted"


def reset_paths() -> None:
    PATHS.clear()


def fused_mode() -> str:
    """auto (default), cpu or interpret, from $MLC_FUSED."""
    mode = os.environ.get("MLC_FUSED", "auto").strip().lower() or "auto"
    if mode not in ("auto", "cpu", "interpret"):
        from mlc.compiler.errors import MlcError
        raise MlcError(f"MLC_FUSED={mode!r}: expected auto, cpu or interpret")
    return mode


def _compilable(inputs) -> bool:
    return all(isinstance(x, torch.Tensor) and x.dtype == torch.float32
               and x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled())
               for x in inputs)


def _kernel(document: str, graph):
    """The compiled kernel of a µGraph document (cached), or None when it cannot be built
    here (no compiler, an unsupported shape): the caller interprets, and says why once."""
    if document not in _KERNELS:
        from mlc.compiler.errors import MlcError
        from mlc.compiler.superopt.mugraph import MuGraphError
        from mlc.kernels.cpu import compile_mugraph
        try:
            _KERNELS[document] = compile_mugraph(graph)
        except (MlcError, MuGraphError) as err:
            if fused_mode() == "cpu":
                raise
            _LOG.warning("fused region %s runs interpreted: %s", graph.name, err)
            _KERNELS[document] = None
    return _KERNELS[document]


def call_fused(inputs, document: str) -> list:
    """Outputs of one MuGraphCall on torch tensors (see the module doc for the path)."""
    from mlc.compiler.ir.fused import parse_mugraph
    graph, _ = parse_mugraph(document)
    mode = fused_mode()
    if mode != "interpret" and _compilable(inputs):
        kernel = _kernel(document, graph)
        if kernel is not None:
            PATHS[CPU] += 1
            outputs = kernel(*(x.detach().contiguous().numpy() for x in inputs))
            return [torch.from_numpy(out) for out in outputs]
    elif mode == "cpu":
        from mlc.compiler.errors import MlcError
        raise MlcError("MLC_FUSED=cpu: a fused region got non-float32 or gradient-tracking "
                       "inputs, which only the interpreter runs")
    from mlc.compiler.superopt.mugraph.arith import TorchArith
    from mlc.compiler.superopt.mugraph.interpreter import run_values
    PATHS[INTERPRET] += 1
    values = run_values(graph, dict(zip(graph.inputs, inputs)), TorchArith(inputs[0].dtype))
    return [values[name] for name in graph.outputs]
