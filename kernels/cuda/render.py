"""Render a µGraph to one CUDA C++ source: a `__global__` kernel per block graph (block.py),
a generic grid-stride kernel per library op (library.py), an `extern "C"` host launcher per
kernel and one for the whole graph; jinja2 templates (templates/) lay out the file.

Generated code calls the hand-written `mlc_helpers.cuh`; every identifier in it is our own
(`in0`, `t3`, `mlc_kernel_1`), never a name from the model.

Limitations of this first version: fp32 tensors and tiles only; tensors of rank <= 4; one
kernel launch per library op (no cuBLAS); tile matmuls are plain shared-memory loops (one
output element per thread, no tensor cores, no cp.async / TMA pipelining); every tile gets its
own shared-memory slot (no liveness-based reuse); the *_rescale accumulators must take the
output of accum_max_ld itself as their running max; matmul batch dims must match or be all 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from mlc.compiler.superopt.mugraph.model import MuGraph, kernel_shapes
from mlc.compiler.superopt.mugraph.ops import MuGraphError

from .block import render_block
from .library import render_library

SMEM_LIMIT_SM90 = 227 * 1024  # opt-in dynamic shared memory per block on H100
TEMPLATES = Path(__file__).parent / "templates"


# ---- the module ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LaunchSpec:
    """One generated kernel: how to launch it and which µGraph tensors it reads and writes
    (the names stay on the Python side; the source only sees in<n> / out<n>)."""

    name: str
    launcher: str
    grid: tuple[int, int, int]
    threads: int
    smem_bytes: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class CudaModule:
    source: str
    kernels: tuple[LaunchSpec, ...]
    graph_tensors: tuple[str, ...]  # argument order of mlc_launch_graph


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)


def render_module(graph: MuGraph, smem_limit_bytes: int = SMEM_LIMIT_SM90,
                  prefix: str = "mlc") -> CudaModule:
    """The CUDA source of a µGraph plus each kernel's launch parameters. `prefix` starts every
    exported symbol (`<prefix>_kernel_0`, `<prefix>_launch_graph`), so that several modules
    can be linked into one program."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", prefix):
        raise MuGraphError(f"CUDA renderer: prefix {prefix!r} is not a short C identifier")
    shapes = kernel_shapes(graph)
    tensors = list(graph.inputs) + [t for op in graph.ops for t in op.outputs]
    position = {name: n for n, name in enumerate(tensors)}
    kernels, specs = [], []
    for index, kop in enumerate(graph.ops):
        fields = (render_block(index, kop, shapes, smem_limit_bytes) if kop.op == "block"
                  else render_library(index, kop, shapes))
        name, launcher = f"{prefix}_kernel_{index}", f"{prefix}_launch_{index}"
        params = ([f"const float* __restrict__ in{n}" for n in range(len(kop.inputs))]
                  + [f"float* __restrict__ out{n}" for n in range(len(kop.outputs))])
        args = [f"in{n}" for n in range(len(kop.inputs))] + \
            [f"out{n}" for n in range(len(kop.outputs))]
        kernels.append(dict(fields, index=index, name=name, launcher=launcher, params=params,
                            launcher_params=[p.replace(" __restrict__", "") for p in params],
                            args=args,
                            graph_args=[f"g{position[t]}" for t in kop.inputs + kop.outputs]))
        specs.append(LaunchSpec(name, launcher, fields["grid"], fields["threads"],
                                fields["smem_bytes"], tuple(kop.inputs), tuple(kop.outputs)))
    graph_params = [f"{'const ' if n < len(graph.inputs) else ''}float* g{n}"
                    for n in range(len(tensors))]
    source = _environment().get_template("module.cu.j2").render(
        kernels=kernels, graph_params=graph_params, graph_launcher_name=f"{prefix}_launch_graph")
    return CudaModule(source, tuple(specs), tuple(tensors))


def render_cuda(graph: MuGraph, smem_limit_bytes: int = SMEM_LIMIT_SM90,
                prefix: str = "mlc") -> str:
    """One `.cu` source for a µGraph (include `mlc_helpers.cuh` from this package's folder).

    >>> source = render_cuda(graph)          # doctest: +SKIP
    >>> "mlc_kernel_0" in source             # doctest: +SKIP
    True
    """
    return render_module(graph, smem_limit_bytes, prefix).source
