"""`mlc run`: execute a model on inputs from an .npz file or random ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from mlc.compiler.artifact import atomic_file
from mlc.compiler.errors import MlcError
from mlc.compiler.frontends import load_model
from mlc.compiler.ir.serialize import read_npz, write_npz
from mlc.compiler.ir.types import TensorType
from mlc.runtime import EXECUTORS, random_inputs, run
from mlc.runtime.compiled import compiled_inputs, is_compiled_artifact
from mlc.runtime.inputs import check_fits_memory, check_graph_fits_memory, conform_inputs
from mlc.runtime.timing import fused_region_path, summarize, time_calls

from .common import emit, json_option, parse_shapes, shape_option


@click.command("run")
@click.argument("model")
@click.option("--inputs", "inputs_path", type=click.Path(path_type=Path), metavar="IN.npz",
              help="Inputs by name in an .npz file.")
@click.option("--random", "use_random", is_flag=True, help="Run on random inputs instead.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for --random (a whole number >= 0).")
@click.option("--output", type=click.Path(path_type=Path), metavar="OUT.npz",
              help="Write the outputs to this .npz file.")
@click.option("--float64", is_flag=True, help="Compute floats in float64 (reference checks).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="torch", show_default=True,
              help="torch (fast) or reference (the numpy interpreter every check trusts).")
@click.option("--repeat", type=click.IntRange(min=1, max=1_000_000), metavar="N",
              help="Time N calls in-process and print min / median / p90 latency.")
@click.option("--warmup", type=click.IntRange(min=0, max=1_000_000), metavar="W",
              help="Untimed calls before the timed ones (default min(10, N); needs --repeat).")
@shape_option
@json_option
def run_cmd(model, inputs_path, use_random, seed, output, float64, executor, repeat, warmup,
            shapes, as_json) -> None:
    """Execute MODEL and print (or save) its outputs.

    \b
    Example:
      mlc run model.onnx --inputs in.npz --output out.npz
      mlc run build/mlp --random --seed 0 --executor reference
      mlc run build/mlp --random --repeat 100 --warmup 10 --json
    """
    if bool(inputs_path) == bool(use_random):
        raise click.UsageError("give exactly one of --inputs IN.npz or --random")
    if warmup is not None and repeat is None:
        raise click.UsageError("--warmup needs --repeat N")
    timing = _Timing(repeat, min(10, repeat) if warmup is None else warmup) if repeat else None
    feeds = read_npz(inputs_path, "--inputs .npz file") if inputs_path else None
    source = str(inputs_path) if inputs_path else "inputs"
    if is_compiled_artifact(model):  # `mlc compile` output: run the generated kernels
        if shapes:
            raise MlcError(f"{model}: a compiled artifact has fixed shapes; --shape does not "
                           "apply (compile again with the shapes you want)")
        expected = {name: TensorType(shape, "float32")
                    for name, shape in compiled_inputs(model).items()}
        check_fits_memory(expected, "input")
        if feeds is None:
            rng = np.random.default_rng(seed)
            feeds = {name: rng.standard_normal(t.shape).astype(np.float32)
                     for name, t in expected.items()}
        feeds = conform_inputs(expected, feeds, source)
        path = ("triton-kernels" if _has_cuda() else "triton-interpreted") if timing else ""
        _report(_execute(lambda: run(model, feeds), timing, path), output, as_json)
        return
    hints = {name: tuple(value.shape) for name, value in (feeds or {}).items()}
    graph = load_model(model, parse_shapes(shapes), shape_hints=hints)
    check_graph_fits_memory(graph, float64=float64)
    feeds = random_inputs(graph, seed) if feeds is None else conform_inputs(graph.inputs, feeds,
                                                                          source)
    from mlc.runtime import prepare
    from mlc.runtime.fused import reset_paths
    call = prepare(graph, float64=float64, executor=executor)
    reset_paths()
    result = _execute(lambda: call(feeds), timing, "")
    path = fused_region_path(graph, executor)
    if timing:
        result[1]["path"] = path
    _report(result, output, as_json, path)


@dataclass(frozen=True)
class _Timing:
    """--repeat N / --warmup W as asked on the command line."""

    repeat: int
    warmup: int


def _execute(call, timing: _Timing | None, path: str) -> tuple[dict[str, np.ndarray], dict]:
    """Run `call` once for its outputs; with timing, first the warm-up calls, then the timed
    ones (the outputs are the last timed call's). Returns the outputs and the timing report."""
    if timing is None:
        return call(), {}
    last: list[dict[str, np.ndarray]] = [{}]

    def call_and_keep() -> None:
        last[0] = call()

    seconds = time_calls(call_and_keep, timing.repeat, timing.warmup)
    return last[0], {"latency_ms": summarize(seconds).as_dict(), "repeat": timing.repeat,
                         "warmup": timing.warmup, "path": path}


def _has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _report(result: tuple[dict[str, np.ndarray], dict], output, as_json: bool,
            path: str = "") -> None:
    """Save outputs (atomically) if asked and print a one-line summary per output, after the
    latency line when the calls were timed."""
    outputs, timed = result
    if output:
        with atomic_file(output) as tmp:
            write_npz(tmp, outputs)
    summary = {name: _summary(value) for name, value in outputs.items()}
    lines = [f"{name}: {s['dtype']}{s['shape']} mean={_number(s['mean'])} "
             f"std={_number(s['std'])}" + (f" ({s['nonfinite']} NaN/inf)" if s["nonfinite"]
                                           else "")
             for name, s in summary.items()]
    if output:
        lines.append(f"wrote {output}")
    if path and path != "none" and not timed:
        lines.append(f"fused regions ran as: {path}")
    if timed:
        latency = timed["latency_ms"]
        lines.insert(0, f"latency over {timed['repeat']} calls (after {timed['warmup']} "
                        f"warm-up): min {latency['min']:.3f} ms, median {latency['median']:.3f}"
                        f" ms, p90 {latency['p90']:.3f} ms; fused regions: {timed['path']}")
    extra = {"path": path} if path else {}
    emit(as_json, {"outputs": summary, "output_file": str(output) if output else None,
                   **extra, **timed},
         "\n".join(lines))


def _summary(value: np.ndarray) -> dict:
    """Shape, dtype, and mean / std of the finite values (JSON has no NaN: a non-finite
    statistic is null, and `nonfinite` counts the NaN / inf values)."""
    as_float = value.astype(np.float64)
    finite = np.isfinite(as_float)
    with np.errstate(all="ignore"):
        mean = float(np.mean(as_float)) if value.size else 0.0
        std = float(np.std(as_float)) if value.size else 0.0
    return {"shape": list(value.shape), "dtype": str(value.dtype),
            "mean": mean if np.isfinite(mean) else None,
            "std": std if np.isfinite(std) else None,
            "nonfinite": int(value.size - np.count_nonzero(finite))}


def _number(value) -> str:
    return "nan" if value is None else f"{value:.6g}"
