"""A readable text form of a graph (what `mlc inspect` prints)."""

from __future__ import annotations

from .analysis import graph_stats, node_flops
from .graph import Graph


def _attr_text(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_attr_text, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _small_value(array) -> str:
    """Inline the values of tiny constants (scalars, short vectors); they explain the graph."""
    if array.size > 4:
        return ""
    return " = " + _attr_text(tuple(array.reshape(-1).tolist()) if array.ndim else array.item())


def format_graph(graph: Graph, *, max_nodes: int | None = None) -> str:
    """One line per node: `%out: type = Op(%a, %b) {attr=value}  # flops`."""
    sig = ", ".join(f"%{n}: {t}" for n, t in graph.inputs.items())
    lines = [f"graph {graph.name}({sig}) -> ({', '.join('%' + o for o in graph.outputs)})"]
    shown = list(graph.weights) if max_nodes is None else list(graph.weights)[:8]
    lines += [f"  weight %{name}: {graph.types[name]}{_small_value(graph.weights[name])}"
              for name in shown]
    if len(shown) < len(graph.weights):
        lines.append(f"  ... {len(graph.weights)} weights in all")
    nodes = graph.nodes if max_nodes is None else graph.nodes[:max_nodes]
    for node in nodes:
        outs = ", ".join(f"%{o}: {graph.types[o]}" for o in node.outputs)
        args = ", ".join(f"%{i}" for i in node.inputs)
        attrs = ", ".join(f"{k}={_attr_text(v)}" for k, v in node.attrs.items())
        flops = node_flops(node, graph.types)
        line = f"  {outs} = {node.op}({args})" + (f" {{{attrs}}}" if attrs else "")
        lines.append(line + (f"  # {node.name}, {flops:,} flops" if flops else f"  # {node.name}"))
    if len(nodes) < len(graph.nodes):
        lines.append(f"  ... {len(graph.nodes) - len(nodes)} more nodes")
    return "\n".join(lines)


def format_summary(graph: Graph) -> str:
    """Totals: nodes, params, FLOPs, and op counts."""
    stats = graph_stats(graph)
    ops = ", ".join(f"{op}×{n}" for op, n in stats["ops"].items())
    return (f"{graph.name}: {stats['nodes']} nodes, {stats['params']:,} params "
            f"({stats['weight_bytes'] / 2**20:.2f} MiB), {stats['flops'] / 1e6:,.2f} MFLOP, "
            f"{stats['bytes_moved'] / 2**20:.2f} MiB moved unfused\n  ops: {ops}")
