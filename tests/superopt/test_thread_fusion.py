"""Thread-level fusion: elementwise chains join their producer and leave shared memory."""

from __future__ import annotations

from mlc.compiler.superopt.mugraph import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    shared_memory_bytes,
)
from mlc.compiler.superopt.mugraph.thread import ThreadChain, register_tiles, thread_chains


def gated_mlp_block(extra_reader: bool = False):
    ops = [BlockOp("matmul", ("x", "w1"), "a"), BlockOp("accum_sum", ("a",), "acc_a"),
           BlockOp("matmul", ("x", "w2"), "b"), BlockOp("accum_sum", ("b",), "acc_b"),
           BlockOp("silu", ("acc_a",), "s"), BlockOp("mul", ("s", "acc_b"), "y")]
    if extra_reader:  # a second reader of acc_a keeps it in shared memory
        ops += [BlockOp("exp", ("acc_a",), "e"), BlockOp("add", ("y", "e"), "z")]
    return BlockGraph(
        grid=(4, 1, 1), forloop_range=2,
        inputs=(BlockInput("x", 0, (-1, -1, -1), 1), BlockInput("w1", 1, (1, -1, -1), 0),
                BlockInput("w2", 2, (1, -1, -1), 0)),
        ops=tuple(ops), outputs=(BlockOutput("z" if extra_reader else "y", (1, -1, -1)),))


def test_accumulator_and_silu_fuse_into_the_matmul():
    chains = thread_chains(gated_mlp_block())
    assert ThreadChain("a", ("acc_a", "s")) in chains
    assert ThreadChain("b", ("acc_b",)) in chains
    assert register_tiles(gated_mlp_block()) == {"a", "acc_a", "b"}


def test_a_tile_with_two_readers_is_not_fused_past():
    chains = thread_chains(gated_mlp_block(extra_reader=True))
    assert ThreadChain("a", ("acc_a",)) in chains  # silu and exp both read acc_a
    assert "acc_a" not in register_tiles(gated_mlp_block(extra_reader=True))


def test_fused_tiles_take_no_shared_memory():
    shapes = [(8, 64), (64, 32), (64, 32)]
    fused = shared_memory_bytes(gated_mlp_block(), shapes, "float16")
    # unfused would also hold a (8x8 fp16), acc_a (8x8 fp32) and b (8x8 fp16)
    tiles = 2 * (8 * 32 + 2 * 32 * 8) + 4 * 8 * 8 + 2 * (8 * 8 + 8 * 8)
    assert fused == tiles
