"""How much of a model the superoptimizer's verified fused kernels cover.

`coverage_of` requires an OptimizeResult whose `source` is the graph the regions were cut from;
it ensures fractions of that unfused graph's FLOPs and bytes (as `mlc inspect` counts them)
computed by nodes inside regions whose chosen µGraph passed the verifier. A region that kept
its unfused baseline counts as not covered: its nodes still run as separate library ops.
"""

from __future__ import annotations

from mlc.compiler.ir.analysis import node_bytes, node_flops


def covered_nodes(result) -> set[str]:
    """Names of the source nodes that run inside verified fused kernels."""
    return {name for region_result in result.results if region_result.verified
            for region in region_result.regions for name in region.nodes}


def coverage_of(result) -> dict:
    """{"flops_fraction", "bytes_fraction", "ops_fused", "ops_total"} of `result.source`.

    A graph with no FLOPs (or no bytes) has a fraction of 0.0, not a division by zero.

    >>> coverage_of(optimize_graph(graph))["flops_fraction"]  # doctest: +SKIP
    0.83
    """
    source = result.source if result.source is not None else result.graph
    fused = covered_nodes(result)
    flops = fused_flops = bytes_moved = fused_bytes = ops_fused = 0
    for node in source.nodes:
        node_f, node_b = node_flops(node, source.types), node_bytes(node, source.types)
        flops += node_f
        bytes_moved += node_b
        if node.name in fused:
            fused_flops += node_f
            fused_bytes += node_b
            ops_fused += 1
    return {"flops_fraction": round(fused_flops / flops, 4) if flops else 0.0,
            "bytes_fraction": round(fused_bytes / bytes_moved, 4) if bytes_moved else 0.0,
            "ops_fused": ops_fused, "ops_total": len(source.nodes)}


def coverage_line(coverage: dict) -> str:
    """The one line report.md and the CLI summary show, e.g. "Coverage: 83% of FLOPs, ..."."""
    return (f"Coverage: {coverage['flops_fraction']:.0%} of FLOPs, "
            f"{coverage['bytes_fraction']:.0%} of bytes, "
            f"{coverage['ops_fused']}/{coverage['ops_total']} ops in verified fused kernels")
