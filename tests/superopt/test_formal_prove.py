"""Formal verification end to end: the hand-written µGraph fixtures are proven equal to their
workloads for every size, their wrong twins are not, and `mlc verify --formal` reports it."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.superopt.mugraph import FloatArith, MuGraphError, kernel_shapes, run_mugraph
from mlc.compiler.superopt.mugraph.fixtures import load_fixture, load_wrong_fixture
from mlc.compiler.superopt.verify import lower_to_mugraph
from mlc.compiler.superopt.verify.formal import (
    LiftError,
    lift_mugraph,
    prove_mugraph,
    prove_terms,
    reference_terms,
)
from mlc.specs.workloads import get_workload

WRONG = Path(__file__).resolve().parents[2] / "specs" / "mugraphs" / "wrong"
ALL = ["rmsnorm_matmul", "gated_mlp", "lora", "gqa", "qknorm", "ntrans"]


@pytest.mark.parametrize("name", [f"{n}_small" for n in ALL] + ALL)
def test_fixture_is_proven_within_ten_seconds(name):
    graph = load_fixture(name)
    proof = prove_mugraph(graph, get_workload(graph.name))
    assert proof.proven, proof.reason
    assert proof.seconds <= 10.0
    assert proof.reason == ""


@pytest.mark.parametrize("name", ALL)
def test_small_and_full_fixtures_lift_to_the_same_symbolic_term(name):
    assert lift_mugraph(load_fixture(name)) == lift_mugraph(load_fixture(f"{name}_small"))


@pytest.mark.parametrize("name", [f"{n}_small" for n in ALL] + ALL)
def test_wrong_fixture_is_not_proven(name):
    graph = load_wrong_fixture(name)
    proof = prove_mugraph(graph, get_workload(graph.name))
    assert not proof.proven
    assert proof.reason


def test_unliftable_op_is_not_proven_with_its_name():
    graph = load_fixture("gqa_small")
    split_kv = graph.ops[0]
    # a running max has no term (mul_scalar, used here before, now lifts to a scale term)
    ops = tuple(replace(op, op="accum_max_ld") if op.op == "accum_sum_ld" else op
                for op in split_kv.block.ops)
    graph = replace(graph, ops=(replace(split_kv, block=replace(split_kv.block, ops=ops)),
                                *graph.ops[1:]))
    with pytest.raises(LiftError, match="accum_max_ld"):
        lift_mugraph(graph)
    proof = prove_mugraph(graph, get_workload(graph.name))
    assert not proof.proven and "accum_max_ld" in proof.reason


def test_bounds_stop_an_unprovable_run():
    x, w = ("var", "X"), ("var", "W")
    candidate = {"O": ("matmul", w, x)}
    proof = prove_terms(candidate, {"O": ("matmul", x, w)}, max_iterations=3)
    assert not proof.proven and proof.iterations <= 3
    chain = [("var", f"X{i}") for i in range(8)]
    left, right = chain[0], ("var", "Y")
    for term in chain[1:]:
        left, right = ("add", left, term), ("add", term, right)
    grown = prove_terms({"O": left}, {"O": right}, max_enodes=2_000)
    assert not grown.proven and "would grow past 2000" in grown.reason
    assert grown.enodes <= 2_000 and grown.seconds < 5.0
    missing = prove_terms({}, {"O": x})
    assert not missing.proven and "lacks" in missing.reason


def test_reference_terms_follow_the_workload():
    terms = reference_terms(get_workload("gated_mlp:small"))
    x, w1, w2 = ("var", "X"), ("var", "W1"), ("var", "W2")
    assert terms == {"O": ("mul", ("silu", ("matmul", x, w1)), ("matmul", x, w2))}


def test_cli_formal_proves_a_fixture():
    result = run_cli("verify", "fixture:lora_small", "--against", "workload:lora:small",
                     "--formal")
    assert result.returncode == 0, result.stderr
    assert "proven equivalent (formal" in result.stdout


def test_cli_formal_json_and_exit_3_when_not_proven():
    wrong = WRONG / "gqa_small.json"
    result = run_cli("verify", wrong, "--against", "workload:gqa:small", "--formal", "--json")
    assert result.returncode == 3
    (row,) = json.loads(result.stdout)
    assert row["proven"] is False and row["check"] == "formal"
    assert "seconds" in row and row["reason"]
    text = run_cli("verify", wrong, "--against", "workload:gqa:small", "--formal")
    assert "not proven" in text.stdout and "not that the candidate is wrong" in text.stdout


_SWAPS = {"add": "mul", "mul": "add", "sub": "add", "div": "mul", "exp": "silu",
          "silu": "exp", "accum_sum": "accum_sum_ld", "accum_sum_ld": "accum_sum"}


def _mutant(graph, rng: random.Random):
    """The graph with one random change to a block: an op, an imap, fmap or omap entry."""
    index = rng.choice([i for i, k in enumerate(graph.ops) if k.op == "block"])
    kernel = graph.ops[index]
    block = kernel.block
    kind = rng.choice(["op", "imap", "fmap", "omap"])
    if kind == "op":
        ops = list(block.ops)
        j = rng.randrange(len(ops))
        ops[j] = replace(ops[j], op=_SWAPS.get(ops[j].op, ops[j].op))
        block = replace(block, ops=tuple(ops))
    elif kind == "omap":
        outs = list(block.outputs)
        j = rng.randrange(len(outs))
        omap = list(outs[j].omap)
        omap[rng.randrange(3)] = rng.choice([-1, 0, 1, 2])
        outs[j] = replace(outs[j], omap=tuple(omap))
        block = replace(block, outputs=tuple(outs))
    else:
        ins = list(block.inputs)
        j = rng.randrange(len(ins))
        imap = list(ins[j].imap)
        imap[rng.randrange(3)] = rng.choice([-1, 0, 1, 2])
        ins[j] = replace(ins[j], imap=tuple(imap)) if kind == "imap" else \
            replace(ins[j], fmap=rng.choice([-1, 0, 1, 2]))
        block = replace(block, inputs=tuple(ins))
    return replace(graph, ops=graph.ops[:index] + (replace(kernel, block=block),) +
                   graph.ops[index + 1:])


@pytest.mark.parametrize("name", [f"{n}_small" for n in ALL])
def test_proven_mutants_compute_the_reference(name):
    """A mutated fixture is proven only if the µGraph interpreter agrees with the reference."""
    base = load_fixture(name)
    reference = get_workload(base.name)
    lowered = lower_to_mugraph(reference)
    rng = random.Random(name)
    inputs = {k: np.random.default_rng(0).uniform(0.5, 1.5, s) for k, s in base.inputs.items()}
    expected = run_mugraph(lowered, inputs, FloatArith())
    for _ in range(6):
        graph = _mutant(base, rng)
        try:
            shapes = kernel_shapes(graph)
        except MuGraphError:
            continue
        if any(shapes[o] != tuple(reference.types[o].shape) for o in graph.outputs):
            continue
        if prove_mugraph(graph, reference).proven:
            got = run_mugraph(graph, inputs, FloatArith())
            for output in graph.outputs:
                np.testing.assert_allclose(got[output], expected[output], rtol=1e-6)


def test_lora_folded_into_the_weight_is_proven():
    """X (W + A B) per (row, column) block, the search's LoRA kernel: needs matmul-assoc
    ((X A) B = X (A B)) and factoring X W + X (A B) = X (W + A B)."""
    def tiled(name):  # X rows split over gx, replicated over gy; weights the other way round
        return ("replicate", ("partition", ("var", name), -2, "gx"), "gy")

    def columns(name):
        return ("partition", ("replicate", ("var", name), "gx"), -1, "gy")

    low_rank = ("matmul", ("replicate", ("replicate", ("var", "A"), "gx"), "gy"), columns("B"))
    block = ("matmul", tiled("X"), ("add", columns("W"), low_rank))
    candidate = {"O": ("combine", ("combine", block, -1, "gy"), -2, "gx")}
    reference = {"O": ("add", ("matmul", ("var", "X"), ("var", "W")),
                       ("matmul", ("matmul", ("var", "X"), ("var", "A")), ("var", "B")))}
    proof = prove_terms(candidate, reference)
    assert proof.proven, proof.reason
    assert proof.seconds <= 10.0
