"""`mlc inspect`: what a model is made of."""

from __future__ import annotations

import click

from mlc.compiler.frontends import load_model
from mlc.compiler.ir.analysis import graph_stats
from mlc.compiler.ir.serialize import graph_to_json
from mlc.compiler.ir.text import format_graph, format_summary

from .common import emit, json_option, parse_shapes, shape_option


@click.command("inspect")
@click.argument("model")
@shape_option
@click.option("--nodes", "max_nodes", type=click.IntRange(min=0), default=None, metavar="N",
              help="Print at most N nodes of the text form.")
@json_option
def inspect_cmd(model: str, shapes, max_nodes, as_json: bool) -> None:
    """Show a model's inputs, ops, params, FLOPs and shapes.

    MODEL is a .onnx or .pt2 file, graph.json, an artifact directory, module:callable or
    workload:NAME.

    \b
    Example:
      mlc inspect workload:rmsnorm_matmul
      mlc inspect model.onnx --shape input_ids=2x16 --json
    """
    graph = load_model(model, parse_shapes(shapes))
    doc = graph_to_json(graph)
    doc.pop("weights_file")
    doc["stats"] = graph_stats(graph)
    doc["types"] = {name: {"shape": list(t.shape), "dtype": t.dtype}
                    for name, t in graph.types.items()}
    emit(as_json, doc, format_summary(graph) + "\n\n" + format_graph(graph, max_nodes=max_nodes))
