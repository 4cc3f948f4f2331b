"""`mlc run`: execute a model on inputs from an .npz file or random ones."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from mlc.compiler.artifact import atomic_file
from mlc.compiler.errors import MlcError
from mlc.compiler.frontends import load_model
from mlc.runtime import EXECUTORS, random_inputs, run
from mlc.runtime.compiled import compiled_inputs, is_compiled_artifact

from .common import emit, json_option, parse_shapes, shape_option


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise MlcError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise MlcError(f"{path}: not a readable .npz file ({err})") from None


@click.command("run")
@click.argument("model")
@click.option("--inputs", "inputs_path", type=click.Path(path_type=Path), metavar="IN.npz",
              help="Inputs by name in an .npz file.")
@click.option("--random", "use_random", is_flag=True, help="Run on random inputs instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option("--output", type=click.Path(path_type=Path), metavar="OUT.npz",
              help="Write the outputs to this .npz file.")
@click.option("--float64", is_flag=True, help="Compute floats in float64 (reference checks).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="torch", show_default=True,
              help="torch (fast) or reference (the numpy interpreter every check trusts).")
@shape_option
@json_option
def run_cmd(model, inputs_path, use_random, seed, output, float64, executor, shapes,
            as_json) -> None:
    """Execute MODEL and print (or save) its outputs.

    \b
    Example:
      mlc run model.onnx --inputs in.npz --output out.npz
      mlc run build/mlp --random --seed 0 --executor reference
    """
    if bool(inputs_path) == bool(use_random):
        raise click.UsageError("give exactly one of --inputs IN.npz or --random")
    feeds = read_npz(inputs_path) if inputs_path else None
    hints = {name: tuple(value.shape) for name, value in (feeds or {}).items()}
    if is_compiled_artifact(model):  # `mlc compile` output: run the generated kernels
        if feeds is None:
            rng = np.random.default_rng(seed)
            feeds = {name: rng.standard_normal(shape).astype(np.float32)
                     for name, shape in compiled_inputs(model).items()}
        _report(run(model, feeds), output, as_json)
        return
    graph = load_model(model, parse_shapes(shapes), shape_hints=hints)
    if feeds is None:
        feeds = random_inputs(graph, seed)
    _report(run(graph, feeds, float64=float64, executor=executor), output, as_json)


def _report(outputs: dict[str, np.ndarray], output, as_json: bool) -> None:
    """Save outputs (atomically) if asked and print a one-line summary per output."""
    if output:
        with atomic_file(output) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **outputs)
    summary = {name: {"shape": list(v.shape), "dtype": str(v.dtype),
                      "mean": float(np.mean(v)) if v.size else 0.0,
                      "std": float(np.std(v)) if v.size else 0.0}
               for name, v in outputs.items()}
    lines = [f"{name}: {s['dtype']}{s['shape']} mean={s['mean']:.6g} std={s['std']:.6g}"
             for name, s in summary.items()]
    if output:
        lines.append(f"wrote {output}")
    emit(as_json, {"outputs": summary, "output_file": str(output) if output else None},
         "\n".join(lines))
