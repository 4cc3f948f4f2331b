"""Abstract-expression pruning: terms of targets and µGraphs, the saturated target space, and
that no known-correct µGraph (hand-written fixtures, Mirage's checkpoints) loses a prefix."""

from __future__ import annotations

import os
import pickle
import random
import time
from pathlib import Path

import numpy as np
import pytest

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    FloatArith,
    KernelOp,
    MuGraph,
    run_mugraph,
)
from mlc.compiler.superopt.mugraph.fixtures import (
    fixture_workload,
    list_fixtures,
    list_wrong_fixtures,
    load_fixture,
    load_wrong_fixture,
)
from mlc.compiler.superopt.mugraph.mirage_import import load_mirage_checkpoint
from mlc.compiler.superopt.prune import (
    TargetSpace,
    canonical,
    ir_output_terms,
    library_term,
    mugraph_terms,
    show,
    tile_term,
    var,
)
from mlc.specs.workloads import get_workload, list_workloads
from mlc.specs.workloads.common import softmax_attention

X, W, W1, W2 = var("X"), var("W"), var("W1"), var("W2")
Q, K, V = var("Q"), var("K"), var("V")
DATA = Path(os.environ.get("MLC_MIRAGE_MUGRAPHS", "/work/shared/data/mirage-mugraphs"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no Mirage checkpoints at {DATA}")

_SPACES: dict[tuple, TargetSpace] = {}


def space_for(reference) -> TargetSpace:
    """One saturated space per target for the whole module (saturation is the cost; terms do
    not see batch sizes, so e.g. ntrans:b=1 and ntrans:b=8 share one)."""
    graph = get_workload(reference) if isinstance(reference, str) else reference
    targets = tuple(ir_output_terms(graph))
    if targets not in _SPACES:
        _SPACES[targets] = TargetSpace(list(targets))
    return _SPACES[targets]


def rms(n, x):
    return ("sqrt", ("sum", n, ("mul", x, x)))


# ---- terms -------------------------------------------------------------------------------------

def test_target_terms_of_the_workloads():
    (rmsnorm,) = ir_output_terms(get_workload("rmsnorm_matmul:small"))
    assert rmsnorm == ("sum", 32, ("mul", ("div", X, rms(32, X)), W))
    (mlp,) = ir_output_terms(get_workload("gated_mlp:small"))
    assert mlp == ("mul", ("silu", ("sum", 32, ("mul", X, W1))), ("sum", 32, ("mul", X, W2)))
    scores = ("exp", ("sum", 16, ("mul", Q, K)))
    (attention,) = ir_output_terms(get_workload("gqa:small"))
    assert attention == ("sum", 32, ("mul", ("div", scores, ("sum", 32, scores)), V))
    (safe,) = ir_output_terms(get_workload("gqa:small,safe"))
    assert "max32(sum16(mul(Q, K)))" in show(safe)


def test_ir_softmax_sigmoid_silu_mean_and_unknown_ops():
    g = GraphBuilder("t")
    x = g.input("X", (4, 8))
    soft = g.op("Softmax", x, axis=-1)
    silu = g.op("Mul", x, g.op("Sigmoid", x))
    mean = g.op("ReduceMean", x, axes=(0, 1), keepdims=0)
    out = g.op("Add", g.op("Add", soft, silu), mean)
    (term,) = ir_output_terms(g.build(out))
    exp = ("exp", ("sub", X, ("max", 8, X)))  # Softmax is the safe softmax
    assert term == ("add", ("add", ("div", exp, ("sum", 8, exp)), ("silu", X)), ("sum", 32, X))
    g = GraphBuilder("t")
    x = g.input("X", (4, 8))
    with pytest.raises(ValueError, match="transposed.*Transpose"):
        ir_output_terms(g.build(g.op("Transpose", x, perm=(1, 0), name="transposed")))


def test_library_and_tile_terms():
    assert library_term("MatMul", {}, [X, W], [(2, 32), (32, 48)]) == ("sum", 32, ("mul", X, W))
    assert library_term("ReduceMean", {"dim": 0}, [X], [(6, 4)]) == ("sum", 6, X)
    assert library_term("ReduceSum", {}, [X], [(6, 1)]) == X  # a sum of one element
    tile = (2, 8)
    assert tile_term("matmul", {}, [X, W], [tile, (8, 12)], 4, 64) == ("sum", 8, ("mul", X, W))
    assert tile_term("accum_sum_ld", {}, [X], [tile], 4, 64) == ("sum", 32, X)
    assert tile_term("accum_rms_ld", {}, [X], [tile], 4, 64) == rms(32, X)
    assert tile_term("accum_sum_todimx", {}, [X], [(1, 4, 32)], 2, 16) == ("sum", 4, X)
    assert tile_term("accum_max_ld", {}, [X], [tile], 4, 64) == ("max", 32, X)
    assert tile_term("rms_norm", {}, [X], [tile], 4, 64) == ("div", X, rms(8, X))
    assert tile_term("mul_scalar", {"scale": 0.5}, [X], [tile], 4, 64) == X
    assert tile_term("square", {}, [X], [tile], 4, 64) == ("mul", X, X)
    # nested sums merge: an accumulator over a matmul's k-tile is one sum over F * k
    inner = tile_term("matmul", {}, [X, W], [tile, (8, 12)], 4, 64)
    assert tile_term("accum_sum", {}, [inner], [(2, 12)], 4, 64) == ("sum", 32, ("mul", X, W))
    assert canonical(("sum", 2, ("sum", 1, ("sum", 3, X)))) == ("sum", 6, X)
    assert canonical(("rms", 8, X)) == rms(8, X)
    with pytest.raises(ValueError, match="unknown term op 'log'"):
        canonical(("log", X))
    with pytest.raises(ValueError, match="concat"):
        tile_term("concat", {}, [X], [tile], 1, 64)


def test_mugraph_terms_name_tensors_and_tiles():
    terms = mugraph_terms(load_fixture("rmsnorm_matmul_small"))
    assert terms["X"] == X and terms["0/xw"] == ("sum", 8, ("mul", X, W))
    assert terms["0/acc"] == ("sum", 32, ("mul", X, W))
    assert terms["O"] == ("div", ("sum", 32, ("mul", X, W)), rms(32, X))


def flash_attention_small() -> MuGraph:
    """gqa:small,safe as one flash-style kernel: running max and rescaling accumulators."""
    block = BlockGraph(
        grid=(2, 1, 1), forloop_range=4,
        inputs=(BlockInput("q", 0, (0, -1, -1)), BlockInput("k", 1, (0, -1, -1), 2),
                BlockInput("v", 2, (0, -1, -1), 1)),
        ops=(BlockOp("matmul", ("q", "k"), "s"), BlockOp("accum_max_ld", ("s",), "m"),
             BlockOp("sub", ("s", "m"), "d"), BlockOp("exp", ("d",), "e"),
             BlockOp("accum_sum_ld_rescale", ("e", "m"), "den"),
             BlockOp("matmul", ("e", "v"), "ev"), BlockOp("accum_sum_rescale", ("ev", "m"), "num"),
             BlockOp("div", ("num", "den"), "y")),
        outputs=(BlockOutput("y", (0, -1, -1)),), reduction_dimx=16)
    inputs = {"Q": (2, 8, 16), "K": (2, 16, 32), "V": (2, 32, 16)}
    return MuGraph("gqa:small,safe", inputs, (KernelOp("block", ("Q", "K", "V"), ("O",),
                                                        block=block),), ("O",))


def test_flash_attention_with_a_running_max_reaches_the_safe_softmax_target():
    graph = flash_attention_small()
    reference = get_workload("gqa:small,safe")
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal(s) for n, s in graph.inputs.items()}
    got = run_mugraph(graph, inputs, FloatArith())["O"]
    np.testing.assert_allclose(got, interpret(reference, inputs, float64=True)["O"], rtol=1e-9)
    space = space_for("gqa:small,safe")
    terms = mugraph_terms(graph)
    assert all(space.allows(t) for t in terms.values())
    assert space.equivalent(terms["O"], 0)


# ---- the space: fixtures, wrong twins, Mirage's checkpoints ------------------------------------

@pytest.mark.parametrize("name", list_fixtures())
def test_every_fixture_prefix_is_allowed_and_its_output_is_the_target(name):
    space = space_for(fixture_workload(name))
    graph = load_fixture(name)
    terms = mugraph_terms(graph)
    rejected = {k: show(t) for k, t in terms.items() if not space.allows(t)}
    assert not rejected
    assert all(space.equivalent(terms[out], i) for i, out in enumerate(graph.outputs))
    assert space.stats["saturated"]


@pytest.mark.parametrize("name", [n for n in list_wrong_fixtures() if n.endswith("_small")])
def test_wrong_fixtures_are_not_equivalent_and_lose_a_prefix(name):
    graph = load_wrong_fixture(name)
    space = space_for(graph.name)
    terms = mugraph_terms(graph)
    assert not any(space.equivalent(terms[out], i) for i, out in enumerate(graph.outputs))
    assert any(not space.allows(t) for t in terms.values())


def attention_reference(shapes: dict[str, tuple]):
    """softmax(Q @ K) @ V at a checkpoint's own shapes (MQA's batch is not gqa's 2b)."""
    g = GraphBuilder("attention")
    q, k, v = (g.input(n, shapes[n]) for n in ("Q", "K", "V"))
    return g.build(softmax_attention(g, q, k, v, 0))


CHECKPOINTS = {  # file -> (Mirage's input order, the reference at the file's shapes)
    "rmsnorm_bs1": (("X", "W"), "rmsnorm_matmul:b=1"),
    "rmsnorm_bs8": (("X", "W"), "rmsnorm_matmul:b=8"),
    "gated_mlp": (("X", "W1", "W2"), "gated_mlp"),
    "single_gated_mlp": (("X", "W1", "W2"), "gated_mlp"),
    "lora": (("X", "W", "A", "B"), "lora"),
    "single_lora": (("X", "W", "A", "B"), "lora"),
    "ntrans_bs1": (("H", "X", "alpha"), "ntrans:b=1"),
    "ntrans_bs8": (("H", "X", "alpha"), "ntrans:b=8"),
    **{stem: (("Q", "K", "V"), None) for stem in (
        "gqa_bs1", "gqa_bs8", "mha_bs1", "mha_bs8", "mqa_bs1", "mqa_bs8", "single_mqa_bs1")},
}


@needs_data
@pytest.mark.parametrize("stem", list(CHECKPOINTS))
def test_every_mirage_checkpoint_candidate_survives_pruning(stem):
    names, spec = CHECKPOINTS[stem]
    graphs = load_mirage_checkpoint(DATA / f"{stem}.json", names)
    reference = get_workload(spec) if spec else attention_reference(graphs[0].inputs)
    assert {n: t.shape for n, t in reference.inputs.items()} == graphs[0].inputs
    space = space_for(reference)
    for index, graph in enumerate(graphs):
        terms = mugraph_terms(graph)
        rejected = {k: show(t) for k, t in terms.items() if not space.allows(t)}
        assert not rejected, f"{stem}[{index}]"
        assert all(space.equivalent(terms[o], i) for i, o in enumerate(graph.outputs))


def test_useless_prefixes_are_rejected():
    space = space_for("rmsnorm_matmul:small")
    xw = ("mul", X, W)
    assert space.allows(("sum", 8, xw)) and space.allows(("sum", 16, ("mul", W, X)))
    useless = [
        ("exp", X),
        ("sum", 3, xw),  # 3 does not divide K = 32
        ("sum", 64, xw),  # more than the whole row
        ("sum", 32, ("mul", ("mul", X, X), W)),  # (X * X) @ W
        ("div", X, W),
        ("sqrt", X),
        ("silu", ("sum", 32, xw)),
        ("mul", ("sum", 32, xw), ("sum", 32, xw)),
        ("var", "Y"),
    ]
    assert [show(t) for t in useless if space.allows(t)] == []
    assert not space.equivalent(("sum", 32, xw), 0)


def test_a_space_pickles_for_worker_processes():
    space = space_for("gated_mlp:small")
    copy = pickle.loads(pickle.dumps(space))
    terms = mugraph_terms(load_fixture("gated_mlp_small"))
    assert all(copy.allows(t) for t in terms.values()) and copy.equivalent(terms["O"], 0)
    assert not copy.allows(("exp", X))


def test_an_unsaturated_space_prunes_nothing():
    (target,) = ir_output_terms(get_workload("ntrans:small"))
    space = TargetSpace([target], max_iterations=2)
    assert not space.stats["saturated"] and space.open
    assert space.allows(("exp", var("nothing"))) and space.equivalent(X, 0)


# ---- cost --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [f"{w}:small" for w in list_workloads()])
def test_saturation_stats(spec):
    space = space_for(spec)
    stats = space.stats
    print(f"\n{spec:32s} saturated={stats['saturated']} expanded={stats['expanded']} "
          f"iterations={stats['iterations']} nodes={stats['nodes']} seconds={stats['seconds']}")
    assert stats["saturated"]
    assert stats["seconds"] < 30


def random_terms(count: int, seed: int = 0, max_depth: int = 6) -> list:
    """Distinct terms in the style of search prefixes (a few ops deep) over X and W."""
    rng = random.Random(seed)
    pool = {X: 1, W: 1, ("sum", 8, ("mul", X, W)): 3, ("sum", 32, ("mul", X, X)): 3}
    order = list(pool)
    while len(order) < count:
        op = rng.choice(["add", "mul", "mul", "div", "exp", "sqrt", "sum", "sum"])
        a, b = rng.choice(order), rng.choice(order)
        if op in ("exp", "sqrt"):
            term = (op, a)
        elif op == "sum":
            term = canonical(("sum", rng.choice([2, 4, 8, 16, 32]), a))
        else:
            term = (op, a, b)
        depth = 1 + max(pool[a], pool[b] if op in ("add", "mul", "div") else 0)
        if depth <= max_depth and term not in pool:
            pool[term] = depth
            order.append(term)
    return order


def test_allows_is_fast():
    space = space_for("rmsnorm_matmul:small")
    graphs = [load_fixture("rmsnorm_matmul_small"), load_wrong_fixture("rmsnorm_matmul_small")]
    terms = random_terms(5000) + [t for g in graphs for t in mugraph_terms(g).values()]
    start = time.perf_counter()
    allowed = sum(space.allows(t) for t in terms)
    first = (time.perf_counter() - start) / len(terms)
    start = time.perf_counter()
    for _ in range(4):
        for t in terms:
            space.allows(t)
    cached = (time.perf_counter() - start) / (4 * len(terms))
    print(f"\nallows(): {1e6 * first:.1f} us uncached, {1e6 * cached:.2f} us cached "
          f"({allowed} of {len(terms)} allowed)")
    assert 0 < allowed < len(terms)
    assert first < 5e-3 and cached < 5e-3
