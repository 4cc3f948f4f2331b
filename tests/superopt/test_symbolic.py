"""Prism's symbolic search: monomial dims and their generic point, sGraph constraints and JSON,
one search per workload structure, instantiation per shape (checked against the numpy
reference interpreter at each shape), checkpoints, and the symbolic driver against the
concrete search."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from mlc.compiler.ir import interpret
from mlc.compiler.superopt.cost import load_gpu
from mlc.compiler.superopt.mugraph import FloatArith, run_mugraph
from mlc.compiler.superopt.mugraph.model import BlockOp, validate
from mlc.compiler.superopt.search import search
from mlc.compiler.superopt.search.generators import dim_labels
from mlc.compiler.superopt.symbolic.dims import (
    Dim,
    SymbolicError,
    decode,
    encode,
    generic_size,
    grid_variable,
)
from mlc.compiler.superopt.symbolic.driver import search_symbolic
from mlc.compiler.superopt.symbolic.instantiate import (
    assignments,
    instantiate_sgraph,
    variable_candidates,
)
from mlc.compiler.superopt.symbolic.search import (
    data_sizes,
    input_symbols,
    rebind,
    structure_key,
    symbolic_schedules,
    symbolic_search,
    verify_small,
)
from mlc.compiler.superopt.symbolic.sgraph import (
    SharedMemory,
    instantiate,
    sgraph_from_json,
    sgraph_to_json,
    violation,
)
from mlc.compiler.superopt.verify import lower_to_mugraph, verify
from mlc.specs.workloads import get_workload, sweep_workloads

H100 = load_gpu("h100")


@pytest.fixture(scope="module")
def rms_checkpoint():
    """The sGraphs of rms_norm(X) @ W, searched once (at the default shape: any would do)."""
    return symbolic_search(get_workload("prism_rms_norm"), budget_s=30, workers=1)


# ---- dims ------------------------------------------------------------------------------------

def test_every_monomial_round_trips_through_the_generic_point():
    variables = ["gD0", "gD1", "gD2", "f"]
    seen, legal = set(), 0
    for symbols in [("D0",), ("D1",), ("D2",), ("D0", "D1"), ("D1", "D1", "D2")]:
        for count in range(3):
            for over in itertools.combinations(variables, count):
                dim = Dim(symbols, over)
                try:
                    value = encode(dim)
                except SymbolicError:
                    continue
                assert decode(value) == dim
                seen.add(value)
                legal += 1
    assert legal == len(seen) > 20  # distinct monomials never collide


def test_values_outside_the_generic_point_are_rejected():
    with pytest.raises(SymbolicError):
        decode(64)  # a concrete size, not a monomial
    with pytest.raises(SymbolicError):
        decode(generic_size(0) * 2)
    assert str(decode(generic_size(1) * generic_size(0))) == "D0*D1"


def test_dims_evaluate_exactly_or_say_why_not():
    dim = Dim(("D1",), ("gD1", "f"))
    assert dim.evaluate({"D1": 4096}, {"gD1": 8, "f": 16}) == 32
    with pytest.raises(SymbolicError, match="not an integer"):
        dim.evaluate({"D1": 4096}, {"gD1": 3, "f": 1})


# ---- structure ------------------------------------------------------------------------------

def test_structure_key_ignores_sizes_but_not_structure():
    keys = {structure_key(get_workload(spec)) for spec in sweep_workloads("prism_rms_norm")}
    assert len(keys) == 1
    assert structure_key(get_workload("prism_swiglu")) not in keys
    reference = get_workload("prism_attention:b=4,h=32,q=128")
    assert input_symbols(reference) == {"Q": ("D0", "D1", "D2"), "K": ("D0", "D2", "D3"),
                                        "V": ("D0", "D3", "D4")}
    assert data_sizes(reference) == {"D0": 4, "D1": 32 * 128, "D2": 128, "D3": 32 * 1024,
                                     "D4": 128}


def test_symbolic_schedules_carry_only_variables():
    found = symbolic_schedules([(6, 10)], [(0, 1)])
    assert len(found) == 3 * 3  # grid over {0}, {1}, {0, 1}; loop none, 0 or 1
    for schedule in found:
        (grid, loop), = schedule.sizes
        assert [g for g in grid if g != 1] == [encode_variable(label)
                                              for label in schedule.grid_labels]
        assert loop == (1 if schedule.loop_label is None else 3)


def encode_variable(label):
    from mlc.compiler.superopt.symbolic.dims import variable_prime
    return variable_prime(grid_variable(label))


# ---- the search ------------------------------------------------------------------------------

def test_search_finds_the_fused_rms_norm_kernel(rms_checkpoint):
    described = [s.describe() for s in rms_checkpoint.sgraphs]
    assert "block[gD2 f=D1: accum_rms_ld matmul accum_sum div]" in described
    assert rms_checkpoint.rejected == 0 and not rms_checkpoint.budget_exhausted
    assert rms_checkpoint.pruned > 0  # the abstract expressions pruned at the generic point


def test_sgraph_json_round_trips(rms_checkpoint):
    for sgraph in rms_checkpoint.sgraphs:
        doc = sgraph_to_json(sgraph)
        text = json.dumps(doc)
        assert '"D1"' in text and '"gD' in text  # sizes are spelled symbolically
        assert ('"f"' in text) == ("f" in sgraph.kernels[0].variables)
        again = sgraph_from_json(json.loads(text))
        assert again.generic == sgraph.generic and again.kernels == sgraph.kernels


def test_constraints_list_divisions_blocks_and_shared_memory(rms_checkpoint):
    sgraph = next(s for s in rms_checkpoint.sgraphs
                  if s.describe().startswith("block[gD2 f=D1"))
    text = sgraph.constraints()
    assert "k0: gD2 | D2" in text and "k0: f | D1" in text
    assert any("blocks(gD2)" in c for c in text) and any("smem(" in c for c in text)


def test_shared_memory_constraint_matches_validate(rms_checkpoint):
    sgraph = next(s for s in rms_checkpoint.sgraphs
                  if s.describe().startswith("block[gD2 f=D1"))
    (kernel,) = sgraph.kernels
    smem = next(c for c in kernel.constraints if isinstance(c, SharedMemory))
    sizes = {"D0": 8, "D1": 4096, "D2": 4096}
    for grid, loop in [(8, 2), (64, 16), (512, 256), (2, 2)]:
        values = {"gD2": grid, "f": loop}
        graph = instantiate(sgraph, sizes, [values])
        try:
            validate(graph, H100.smem_per_block)
            fits = True
        except Exception:
            fits = False
        assert (violation(smem, sizes, values, H100) is None) == fits, values


def test_a_wrong_sgraph_fails_the_small_binding(rms_checkpoint):
    reference = get_workload("prism_rms_norm")
    sgraph = rms_checkpoint.sgraphs[0]
    (op,) = sgraph.generic.ops
    ops = tuple(BlockOp("mul", o.inputs, o.output, o.attrs) if o.op == "div" else o
                for o in op.block.ops)
    assert ops != op.block.ops
    wrong = dataclasses.replace(sgraph, generic=dataclasses.replace(
        sgraph.generic, ops=(dataclasses.replace(op, block=dataclasses.replace(
            op.block, ops=ops)),)))
    symbols = input_symbols(reference)
    assert verify_small([wrong], reference, symbols, seed=0) == []
    assert verify_small([sgraph], reference, symbols, seed=0) == [sgraph]


# ---- instantiation ---------------------------------------------------------------------------

def test_variable_candidates_are_powers_of_two_dividing_the_dim():
    assert variable_candidates(4096, "grid") == [2 ** k for k in range(1, 13)]
    assert variable_candidates(4096, "loop") == [2, 4, 8, 16, 32, 64, 128, 256]
    assert variable_candidates(48, "grid") == [2, 4, 8, 16]
    assert variable_candidates(48, "loop") == [2, 4]  # tiles of at least 8
    assert variable_candidates(7, "loop") == []


@pytest.mark.parametrize("spec", ["prism_rms_norm:n=4,d=64", "prism_rms_norm:n=16,d=256"])
def test_instances_compute_the_reference_at_each_shape(rms_checkpoint, spec):
    reference = get_workload(spec)
    sizes = data_sizes(reference)
    labels = dim_labels(lower_to_mugraph(reference))
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal(t.shape) for n, t in reference.inputs.items()}
    want = interpret(reference, inputs, float64=True)["O"]
    checked = 0
    for sgraph in rms_checkpoint.sgraphs:
        for instance in instantiate_sgraph(sgraph, reference, sizes, H100, labels):
            got = run_mugraph(instance.graph, inputs, FloatArith(np.float64))["O"]
            assert np.abs(got - want).max() < 1e-9 * max(1.0, np.abs(want).max())
            checked += 1
    assert checked >= len(rms_checkpoint.sgraphs) // 2


def test_assignments_meet_every_constraint(rms_checkpoint):
    sizes = {"D0": 8, "D1": 4096, "D2": 4096}
    for sgraph in rms_checkpoint.sgraphs:
        (kernel,) = sgraph.kernels
        chosen, feasible = assignments(kernel, sizes, H100)
        assert len(chosen) == feasible
        for values in chosen[::7]:
            assert all(violation(c, sizes, values, H100) is None for c in kernel.constraints)
            validate(instantiate(sgraph, sizes, [values]), H100.smem_per_block)


# ---- the symbolic driver --------------------------------------------------------------------

def test_symbolic_is_as_good_as_concrete_and_formally_verified(tmp_path):
    reference = get_workload("prism_swiglu:n=8,d=256")
    concrete = search(reference, budget_s=20, workers=1)
    symbolic = search_symbolic(reference, budget_s=20, workers=1, cache_dir=tmp_path)
    assert symbolic.mode == "symbolic" and concrete.mode == "concrete"
    assert symbolic.best_est_time_us <= concrete.best_est_time_us * 1.005
    assert symbolic.verification == "formal" and concrete.verification == "probabilistic"
    assert verify(symbolic.best, reference).equivalent


def test_one_checkpoint_serves_every_shape(tmp_path):
    first = search_symbolic(get_workload("prism_swiglu:n=8,d=256"), budget_s=20, workers=1,
                            cache_dir=tmp_path)
    assert not first.cached
    (stored,) = (tmp_path / "symbolic").glob("*.json")
    doc = json.loads(stored.read_text())
    assert doc["kind"] == "sgraph_checkpoint" and doc["proofs"]
    other = get_workload("prism_swiglu:n=16,d=512")
    second = search_symbolic(other, budget_s=20, workers=1, cache_dir=tmp_path)
    assert second.cached  # no second search: only an instantiation
    assert second.best.inputs == {n: t.shape for n, t in other.inputs.items()}
    assert verify(second.best, other).equivalent
    elsewhere = search_symbolic(other, gpu="a100-80gb", budget_s=20, workers=1,
                                cache_dir=tmp_path)
    assert elsewhere.cached  # the sGraphs do not depend on the GPU, their sizes do
    memo: dict = {}
    search_symbolic(other, budget_s=20, workers=1, checkpoints=memo)
    assert len(memo) == 1


def test_checkpoints_round_trip_with_split_variant_proofs(rms_checkpoint):
    from mlc.compiler.superopt.symbolic.search import Checkpoint
    checkpoint = dataclasses.replace(rms_checkpoint, proofs={
        "0": {"proven": True, "seconds": 0.1, "reason": ""},
        "2/split": {"proven": False, "seconds": 0.2, "reason": "saturated"}})
    again = Checkpoint.from_json(json.loads(json.dumps(checkpoint.to_json())))
    assert again.proofs == checkpoint.proofs and again.loaded
    assert [s.describe() for s in again.sgraphs] == [s.describe() for s in checkpoint.sgraphs]


def test_rebind_keeps_the_graph_and_changes_sizes():
    reference = get_workload("prism_attention")
    symbols = input_symbols(reference)
    sizes = {s: 8 + 4 * int(s[1:]) for row in symbols.values() for s in row}
    small = rebind(reference, symbols, sizes)
    assert [n.op for n in small.nodes] == [n.op for n in reference.nodes]
    assert small.inputs["K"].shape == (8, 16, 20)
