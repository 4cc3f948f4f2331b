"""The superoptimizer's search: canonical enumeration, shape-derived generators, pruning, and the
driver's budget, verification and cache (small workloads, small budgets)."""

from __future__ import annotations

import math
import time

import pytest

from mlc.compiler.superopt.cost import load_gpu
from mlc.compiler.superopt.mugraph import NO_DIM, MuGraph
from mlc.compiler.superopt.search import Enumerator, dim_labels, schedules, search
from mlc.compiler.superopt.search.generators import GeneratorConfig, divisors, grid_sizes
from mlc.compiler.superopt.verify import lower_to_mugraph, verify
from mlc.specs.workloads import get_workload

H100 = load_gpu("h100")


class Anything:
    """A stand-in target space that allows every prefix and matches every output."""

    def allows(self, term) -> bool:
        return True

    def equivalent(self, term, index) -> bool:
        return True


def _shape_of(program) -> tuple:
    """Order-independent form of a program: every tile as the expression that computes it."""
    (op,) = program.ops
    if op.block is None:
        return op.op, op.inputs, tuple(sorted(op.attrs.items()))
    block = op.block
    expr = {i.tile: ("in", i.source, i.imap, i.fmap) for i in block.inputs}
    for tile_op in block.ops:
        expr[tile_op.output] = (tile_op.op, tuple(sorted(tile_op.attrs.items())),
                                tuple(expr[t] for t in tile_op.inputs))
    tiles = frozenset(repr(expr[t]) for t in expr)
    saved = frozenset(repr((expr[o.tile], o.omap)) for o in block.outputs)
    return block.grid, block.forloop_range, tiles, saved


def _enumerate(spec, *, space, prune, max_block_ops=3):
    graph = get_workload(spec)
    enumerator = Enumerator(graph, H100, space, max_kernel_ops=1, max_block_ops=max_block_ops,
                            prune=prune)
    programs = list(enumerator.run(enumerator.top_choices(), 1))
    return enumerator, programs


# ---- canonical order -------------------------------------------------------------------------

def test_canonical_order_never_repeats_a_graph():
    enumerator, programs = _enumerate("rmsnorm_matmul:small", space=Anything(), prune=False)
    assert len(programs) > 50 and enumerator.counts.complete == len(programs)
    shapes = [_shape_of(p) for p in programs]
    assert len(set(shapes)) == len(shapes)


def test_canonical_order_still_finds_every_order_of_independent_ops():
    """accum_rms_ld(x) and matmul(x, w) are independent: exactly one of their orders is kept."""
    from mlc.compiler.superopt.prune.space import TargetSpace
    from mlc.compiler.superopt.prune.terms import ir_output_terms

    graph = get_workload("rmsnorm_matmul:small")
    _, programs = _enumerate("rmsnorm_matmul:small", space=TargetSpace(ir_output_terms(graph)),
                             prune=True, max_block_ops=4)
    ops = [tuple(o.op for o in p.ops[0].block.ops) for p in programs]
    assert ("accum_rms_ld", "matmul", "accum_sum", "div") in ops
    assert ("matmul", "accum_rms_ld", "accum_sum", "div") not in ops


# ---- generators ------------------------------------------------------------------------------

def test_dim_labels_follow_the_reference():
    labels = dim_labels(lower_to_mugraph(get_workload("rmsnorm_matmul:small")))
    assert labels["X"] == (0, 1) and labels["W"] == (1, 2) and labels["O"] == (0, 2)
    gqa = dim_labels(lower_to_mugraph(get_workload("gqa:small")))
    assert gqa["Q"][2] == gqa["K"][1] and gqa["K"][2] == gqa["V"][1]


@pytest.mark.parametrize("spec", ["rmsnorm_matmul:small", "rmsnorm_matmul:d=64,n=96",
                                  "gqa:small"])
def test_schedules_come_from_divisors_within_bounds(spec):
    graph = get_workload(spec)
    labels = dim_labels(lower_to_mugraph(graph))
    shapes = [tuple(t.shape) for t in graph.inputs.values()]
    config = GeneratorConfig()
    found = schedules(shapes, [labels[n] for n in graph.inputs], H100, config)
    assert found
    for schedule in found:
        for grid, loop in schedule.sizes:
            assert math.prod(grid) <= config.max_blocks
            for shape, imap, fmap in zip(shapes, schedule.imaps, schedule.fmaps):
                tile = list(shape)
                for axis, dim in enumerate(imap):
                    if dim != NO_DIM:
                        assert tile[dim] % grid[axis] == 0
                        tile[dim] //= grid[axis]
                if fmap != NO_DIM:
                    assert tile[fmap] % loop == 0 and 2 <= loop <= config.max_forloop
        # a grid axis splits the same logical dim in every input that has it
        for axis, label in enumerate(schedule.grid_labels):
            for imap, name in zip(schedule.imaps, graph.inputs):
                assert imap[axis] == (labels[name].index(label) if label in labels[name]
                                      else NO_DIM)


def test_grid_sizes_are_divisors_in_the_block_window():
    assert divisors(12) == [1, 2, 3, 4, 6, 12]
    grids = grid_sizes([6144], H100, GeneratorConfig())
    sizes = [g[0] for g in grids]
    assert all(6144 % s == 0 for s in sizes)
    assert min(sizes) >= H100.sm_count // 4 and max(sizes) <= 4096
    assert 48 in sizes and 3072 in sizes and 32 not in sizes and 6144 not in sizes
    assert grid_sizes([48], H100, GeneratorConfig()) == [(12,), (16,), (24,), (48,)]


# ---- pruning ablation ------------------------------------------------------------------------

def test_pruning_visits_fewer_states():
    from mlc.compiler.superopt.prune.space import TargetSpace
    from mlc.compiler.superopt.prune.terms import ir_output_terms

    space = TargetSpace(ir_output_terms(get_workload("rmsnorm_matmul:small")))
    pruned, _ = _enumerate("rmsnorm_matmul:small", space=space, prune=True)
    full, _ = _enumerate("rmsnorm_matmul:small", space=space, prune=False)
    assert full.counts.visited > 3 * pruned.counts.visited
    assert pruned.counts.pruned > 0 and full.counts.pruned == 0


# ---- the driver ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rmsnorm_small():
    graph = get_workload("rmsnorm_matmul:small")
    return graph, search(graph, budget_s=20, max_block_ops=4, workers=1)


def test_search_finds_a_fused_rmsnorm_matmul(rmsnorm_small):
    graph, result = rmsnorm_small
    assert result.verified >= 1 and not result.budget_exhausted
    assert [op.op for op in result.best.ops] == ["block"]
    assert result.best_est_time_us < result.baseline_est_time_us
    assert result.best.outputs == graph.outputs
    assert verify(result.best, graph).equivalent
    assert result.enumerated > 0 and result.pruned > 0
    times = [c.est_time_us for c in result.candidates]
    assert times == sorted(times) and times[0] == result.best_est_time_us


def test_budget_returns_the_baseline_when_nothing_is_found():
    graph = get_workload("gqa:small")
    start = time.monotonic()
    result = search(graph, budget_s=0.05, max_block_ops=6, workers=1)
    assert time.monotonic() - start < 0.05 + 1.5
    assert result.budget_exhausted and result.verified == 0
    assert isinstance(result.best, MuGraph) and result.best == lower_to_mugraph(graph)
    assert result.best_est_time_us == result.baseline_est_time_us


def test_parallel_search_matches_serial(rmsnorm_small):
    graph, serial = rmsnorm_small
    parallel = search(graph, budget_s=20, max_block_ops=4, workers=2)
    assert parallel.best == serial.best and parallel.enumerated == serial.enumerated


def test_cache_makes_a_rerun_instant_and_identical(tmp_path):
    graph = get_workload("rmsnorm_matmul:small")
    first = search(graph, budget_s=20, max_block_ops=3, workers=1, cache_dir=tmp_path)
    assert not first.cached and list(tmp_path.glob("*.json"))
    start = time.monotonic()
    again = search(graph, budget_s=20, max_block_ops=3, workers=1, cache_dir=tmp_path)
    assert time.monotonic() - start < 0.5
    assert again.cached and again == first
    other = search(graph, budget_s=20, max_block_ops=4, workers=1, cache_dir=tmp_path)
    assert not other.cached  # other options, another key


# ---- split-reduction variants --------------------------------------------------------------

def test_split_variant_of_single_kernel_attention_verifies():
    from mlc.compiler.superopt.mugraph import BlockGraph, BlockInput, BlockOp, BlockOutput, KernelOp
    from mlc.compiler.superopt.search.enumerate import Program
    from mlc.compiler.superopt.search.generators import Schedule
    from mlc.compiler.superopt.search.split import split_variants
    from mlc.compiler.superopt.search.tune import tune

    graph = get_workload("gqa:small")  # Q(2, 8, 16), K(2, 16, 32), V(2, 32, 16)
    labels = dim_labels(lower_to_mugraph(graph))
    batch, rows, kv = labels["Q"][0], labels["Q"][1], labels["K"][2]
    r = NO_DIM
    imaps, fmaps = ((0, 1, r), (0, r, r), (0, r, r)), (r, 2, 1)
    block = BlockGraph((2, 2, 1), 4, tuple(BlockInput(t, i, imaps[i], fmaps[i])
                                           for i, t in enumerate("qkv")),
                       (BlockOp("matmul", ("q", "k"), "s"), BlockOp("exp", ("s",), "e"),
                        BlockOp("accum_sum_ld", ("e",), "den"),
                        BlockOp("matmul", ("e", "v"), "ev"), BlockOp("accum_sum", ("ev",), "num"),
                        BlockOp("div", ("num", "den"), "y")), (BlockOutput("y", (0, 1, r)),))
    schedule = Schedule((batch, rows), kv, imaps, fmaps, (((2, 2, 1), 4),))
    program = Program((KernelOp("block", ("Q", "K", "V"), ("t3",), block=block),), (schedule,),
                      ("t3",))
    single = tune(program, graph, H100)
    (variant, time_us), = split_variants(program, graph, labels, H100)
    assert [op.name for op in variant.ops] == ["split", "combine"]
    assert [o.op for o in variant.ops[1].block.ops] == ["accum_sum_ld", "accum_sum_todimx", "div"]
    assert verify(single[0], graph).equivalent and verify(variant, graph).equivalent
    assert time_us > 0
