"""The thread level: chains of elementwise tile ops fused into their producer.

A fused op runs in registers right after the op that produces its input, so its result never
takes a shared-memory tile. The rule follows Mirage's fusion pass: an elementwise unary op (or
an elementwise accumulator) is fused into its producer when that producer has exactly one
consumer and is neither an input iterator, an accumulator nor a running max.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import BlockGraph
from .ops import BLOCK_OPS

FUSIBLE = {name for name, row in BLOCK_OPS.items() if row.family == "unary"} | {"accum_sum"}


@dataclass(frozen=True)
class ThreadChain:
    """One producer tile and the elementwise ops fused after it, in order."""

    producer: str
    fused: tuple[str, ...]  # output tiles of the fused ops

    @property
    def result(self) -> str:
        return self.fused[-1] if self.fused else self.producer


def thread_chains(block: BlockGraph) -> list[ThreadChain]:
    """Group a block graph's tiles into register chains (requires a valid block graph)."""
    consumers: dict[str, list[str]] = {}
    producer_op = {op.output: op for op in block.ops}
    for op in block.ops:
        for tile in op.inputs:
            consumers.setdefault(tile, []).append(op.output)
    saved = {out.tile for out in block.outputs}
    inputs = {inp.tile for inp in block.inputs}

    def can_host(tile: str) -> bool:
        """May ops be fused after this tile (it stays in registers, nobody else reads it)?"""
        if tile in inputs or tile in saved or len(consumers.get(tile, [])) != 1:
            return False
        op = producer_op[tile]
        return BLOCK_OPS[op.op].family != "accum" or op.op == "accum_sum"

    chain_of: dict[str, ThreadChain] = {}
    chains: list[ThreadChain] = []
    for op in block.ops:
        source = op.inputs[0]
        if op.op in FUSIBLE and len(op.inputs) == 1 and source in chain_of \
                and chain_of[source].result == source and can_host(source):
            old = chain_of[source]
            chain = ThreadChain(old.producer, old.fused + (op.output,))
            chains[chains.index(old)] = chain
            for tile in (chain.producer,) + chain.fused:
                chain_of[tile] = chain
            continue
        chain = ThreadChain(op.output, ())
        chains.append(chain)
        chain_of[op.output] = chain
    return chains


def register_tiles(block: BlockGraph) -> set[str]:
    """Tiles that live only in registers: every tile of a chain except its result."""
    tiles = set()
    for chain in thread_chains(block):
        tiles.update((chain.producer,) + chain.fused[:-1] if chain.fused else ())
    return tiles
