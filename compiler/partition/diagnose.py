"""Why no plan fits: the stage of a memory-balanced sequential split that overflows most."""

from __future__ import annotations

from .cost import CostModel
from .sp import SPNode, units


def memory_error(model: CostModel, tree: SPNode, devices: int, batch: int, b: int) -> str:
    """Why nothing fits: the tightest stage of a memory-balanced sequential split."""
    chunks = _balanced(tree, min(devices, len(units(tree))), model)
    limit = model.machine.memory_bytes
    worst = max(range(len(chunks)), key=lambda i: model.stage_cost(
        chunks[i], 1, b, batch // b).memory(len(chunks) - i))
    need = model.stage_cost(chunks[worst], 1, b, batch // b).memory(len(chunks) - worst)
    return (f"no plan fits {limit / 1e9:.1f} GB per device: even split into {len(chunks)} "
            f"stages, stage {worst} ({chunks[worst][0]} .. {chunks[worst][-1]}, "
            f"{len(chunks[worst])} ops) needs {need / 1e9:.2f} GB per device, "
            f"{(need - limit) / 1e9:.2f} GB over; use more devices, a smaller --micro-batch, "
            "or a larger --device-memory")


def _balanced(tree: SPNode, parts: int, model: CostModel) -> list[list[str]]:
    pieces = [list(u.ops) for u in units(tree)]
    weights = [sum(model.ops[op].params for op in p) + 1 for p in pieces]
    total, chunks, acc = sum(weights), [[]], 0.0
    for piece, w in zip(pieces, weights):
        if acc >= total / parts * len(chunks) and len(chunks) < parts and chunks[-1]:
            chunks.append([])
        chunks[-1].extend(piece)
        acc += w
    return chunks
