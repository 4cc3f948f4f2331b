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


def test_shared_memory_counts_every_tile_the_cuda_kernel_keeps():
    # The CUDA renderer gives register-fused tiles a shared-memory slot too (fp32, whatever
    # the graph's dtype), so the one shared-memory rule counts them: x, w1, w2 (8x32, 32x8,
    # 32x8), then a, acc_a, b, acc_b, s, y (8x8 each).
    shapes = [(8, 64), (64, 32), (64, 32)]
    assert shared_memory_bytes(gated_mlp_block(), shapes) == 4 * (3 * 8 * 32 + 6 * 8 * 8)
