"""The benchmark workloads of Mirage and Prism as IR graphs, by name.

Every tensor is a float32 graph input (no weights), as in Mirage, whose kernels take all
tensors as inputs. A workload is named with a small spec:

    NAME                    the paper's default shapes, e.g. ``rmsnorm_matmul``
    NAME:ITEM[,ITEM...]     each ITEM is a preset or KEY=INT, applied left to right

Presets: ``small`` (tiny shapes for interpreter tests, every workload), ``bs1`` / ``bs8`` /
``bs16`` (Mirage's batch sizes), ``safe`` (softmax with max subtraction, attention only).
Keys are the shape params listed by ``describe_workload``. Examples: ``gqa:bs8,safe``,
``prism_attention:b=4,h=32,q=128``, ``prism_swiglu:small,n=8``.

    >>> graph = get_workload("rmsnorm_matmul:bs8")
    >>> graph.inputs["X"].shape
    (16, 4096)
"""

from __future__ import annotations

import itertools

from mlc.compiler.errors import MlcError
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import Graph

from . import graphpipe, mirage, prism
from .common import Workload

WORKLOADS: dict[str, Workload] = {**mirage.WORKLOADS, **prism.WORKLOADS}
# GraphPipe's training models (weights, int64 indices) resolve by name but stay out of
# list_workloads(), whose callers sweep the all-inputs kernel workloads.
TRAINING_WORKLOADS: dict[str, Workload] = dict(graphpipe.WORKLOADS)
_ALL: dict[str, Workload] = {**WORKLOADS, **TRAINING_WORKLOADS}

__all__ = ["TRAINING_WORKLOADS", "WORKLOADS", "Workload", "describe_workload",
           "format_workload", "get_workload", "list_workloads", "parse_workload",
           "sweep_workloads"]


def list_workloads() -> list[str]:
    """Every workload name, Mirage's suite first, then Prism's."""
    return list(WORKLOADS)


def _lookup(name: str) -> Workload:
    if name not in _ALL:
        raise MlcError(f"unknown workload {name!r}; known workloads: "
                       f"{', '.join(_ALL)} (variants: NAME:small, NAME:KEY=INT,...)")
    return _ALL[name]


def _parse_item(name: str, workload: Workload, item: str) -> dict[str, int]:
    if item in workload.presets:
        return workload.presets[item]
    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or key not in workload.params:
        raise MlcError(f"workload {name!r} has no variant {item!r}; presets: "
                       f"{', '.join(workload.presets)}; params: "
                       f"{', '.join(f'{k}={v}' for k, v in workload.params.items())}")
    try:
        value = int(text)
    except ValueError:
        raise MlcError(f"workload {name!r}: {key} needs an integer, got {text!r}") from None
    if key in workload.flags and value not in (0, 1):
        raise MlcError(f"workload {name!r}: {key} is a flag, 0 or 1, got {value}")
    if key not in workload.flags and value < 1:
        raise MlcError(f"workload {name!r}: {key} is a size and must be >= 1, got {value}")
    return {key: value}


def parse_workload(spec: str) -> tuple[str, dict[str, int]]:
    """Split a spec into its name and full params, e.g. "gqa:b=8" -> ("gqa", {"b": 8, ...})."""
    name, _, variant = spec.strip().partition(":")
    workload = _lookup(name.strip())
    params = dict(workload.params)
    for item in variant.split(",") if variant.strip() else []:
        params.update(_parse_item(name, workload, item.strip()))
    return name.strip(), params


def format_workload(name: str, params: dict[str, int]) -> str:
    """The canonical spec: only the params that differ from the defaults, in table order."""
    defaults = _lookup(name).params
    changed = [f"{key}={params[key]}" for key in defaults if params[key] != defaults[key]]
    return f"{name}:{','.join(changed)}" if changed else name


def get_workload(spec: str) -> Graph:
    """The workload's graph, named by its canonical spec; raises MlcError on unknown names."""
    name, params = parse_workload(spec)
    builder = GraphBuilder(format_workload(name, params))
    output = _ALL[name].define(builder, **params)
    return builder.build(output)


def describe_workload(name: str) -> str:
    """One line: formula and shapes, then params, presets and the paper's sweep."""
    workload = _lookup(name)
    params = ", ".join(f"{k}={v}" for k, v in workload.params.items())
    return f"{name}: {workload.doc} [params {params}; presets {', '.join(workload.presets)}]"


def sweep_workloads(name: str) -> list[str]:
    """The paper's sweep of a workload as canonical specs (just `name` when it sweeps nothing).

    >>> sweep_workloads("rmsnorm_matmul")
    ['rmsnorm_matmul', 'rmsnorm_matmul:b=8', 'rmsnorm_matmul:b=16']
    """
    workload = _lookup(name)
    keys = list(workload.sweep)
    combos = itertools.product(*workload.sweep.values())
    return [format_workload(name, {**workload.params, **dict(zip(keys, values, strict=True))})
            for values in combos]
