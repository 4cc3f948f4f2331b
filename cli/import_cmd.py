"""`mlc import`: a model into an artifact directory (graph.json, weights, report)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mlc.compiler.artifact import write_artifact
from mlc.compiler.frontends import load_model
from mlc.compiler.ir.analysis import graph_stats
from mlc.compiler.ir.text import format_summary

from .common import emit, force_option, json_option, parse_shapes, shape_option


@click.command("import")
@click.argument("model")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Artifact directory to write (replaced atomically).")
@shape_option
@force_option
@json_option
def import_cmd(model: str, out: Path, shapes, as_json: bool, force: bool = False) -> None:
    """Import MODEL into the IR and write an artifact directory that `mlc run DIR` executes.

    \b
    Example:
      mlc import model.onnx --out build/model --shape input_ids=2x16
    """
    start = time.perf_counter()
    graph = load_model(model, parse_shapes(shapes))
    seconds = time.perf_counter() - start
    report = {"command": "import", "source": model, "import_seconds": round(seconds, 4),
              "graph": graph.name, "stats": graph_stats(graph),
              "inputs": {n: str(t) for n, t in graph.inputs.items()},
              "outputs": {n: str(graph.types[n]) for n in graph.outputs}}
    report_md = (f"# mlc import: {graph.name}\n\nSource: `{model}`, imported in "
                 f"{seconds:.3f} s.\n\n```\n{format_summary(graph)}\n```\n")
    write_artifact(out, graph, report, report_md, force=force, inputs=[model])
    emit(as_json, report, f"{format_summary(graph)}\nwrote {out}/ (graph.json, weights, "
         "report.json, report.md)")
