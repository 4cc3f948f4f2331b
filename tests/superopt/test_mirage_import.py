"""Mirage checkpoint import: op mapping, guid wiring, shape cross-checks, and every saved
candidate of Mirage's benchmarks computing its reference program (float64).

The checkpoints are shared test data outside the repository (MLC_MIRAGE_MUGRAPHS, default
../shared/data/mirage-mugraphs); tests that need them skip when the folder is absent.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import (
    FloatArith,
    MuGraph,
    MuGraphError,
    kernel_shapes,
    run_mugraph,
)
from mlc.compiler.superopt.mugraph.mirage_import import (
    import_mirage_checkpoint,
    load_mirage_checkpoint,
    mugraph_from_mirage,
)
from mlc.specs.workloads import get_workload
from mlc.specs.workloads.common import softmax_attention

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MLC_MIRAGE_MUGRAPHS",
                           ROOT.parent / "shared" / "data" / "mirage-mugraphs"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no Mirage checkpoints at {DATA}")


# ---- a hand-made candidate in Mirage's format (no data folder needed) ------------------------

def dtensor(guid, dims):
    return {"guid": guid, "dim": list(dims) + [0] * (4 - len(dims)), "num_dims": len(dims),
            "data_type": 921, "layout": "DmemRowMajor"}


def stensor(guid, dims, after=False):
    return {**dtensor(guid, dims), "layout": "SmemRowMajor", "after_accum": after}


def xyz(x, y=-1, z=-1):
    return {"x": x, "y": y, "z": z}


def tb_op(op_type, inputs, output):
    return {"op_type": op_type, "input_tensors": inputs, "output_tensors": [output]}


def rmsnorm_candidate(x_tile=(2, 8)):
    """Mirage's RMSNorm µGraph at rmsnorm_matmul:small shapes: X(2,32), W(32,48), grid 4."""
    X, W, O = dtensor(1, (2, 32)), dtensor(2, (32, 48)), dtensor(3, (2, 48))
    x, w = stensor(11, x_tile), stensor(12, (8, 12))
    rms, xw = stensor(13, (2, 1), True), stensor(14, (2, 12))
    acc, y = stensor(15, (2, 12), True), stensor(16, (2, 12), True)
    operators = [
        {"op_type": "tb_input_op", "dtensor": X, "input_map": xyz(-1), "forloop_dim": 1,
         "input_tensors": [], "output_tensors": [x]},
        {"op_type": "tb_input_op", "dtensor": W, "input_map": xyz(1), "forloop_dim": 0,
         "input_tensors": [], "output_tensors": [w]},
        tb_op("tb_accum_red_ld_rms_op", [x], rms), tb_op("tb_matmul_op", [x, w], xw),
        tb_op("tb_accum_nored_op", [xw], acc), tb_op("tb_div_op", [acc, rms], y),
        {"op_type": "tb_output_op", "dtensor": O, "output_map": xyz(1), "input_tensors": [y],
         "output_tensors": []},
    ]
    bgraph = {"grid_dim": xyz(4, 1, 1), "block_dim": xyz(128, 1, 1), "forloop_range": 4,
              "reduction_dimx": 64, "operators": operators}
    return [
        {"op_type": "kn_input_op", "input_strides": [32, 1], "input_map": xyz(-1),
         "input_tensors": [], "output_tensors": [X]},
        {"op_type": "kn_input_op", "input_strides": [48, 1], "input_map": xyz(-1),
         "input_tensors": [], "output_tensors": [W]},
        {"op_type": "kn_customized_op", "bgraph": bgraph, "input_tensors": [X, W],
         "output_tensors": [O]},
        {"op_type": "kn_output_op", "output_strides": [48, 1], "output_map": xyz(-1),
         "input_tensors": [O], "output_tensors": []},
    ]


def reference_case(reference, seed: int = 0):
    """Random inputs and the reference output on them, float64."""
    rng = np.random.default_rng(seed)
    # 0.5 keeps exp(Q K) moderate: the attention references do not subtract the max
    inputs = {name: rng.standard_normal(t.shape) * 0.5 for name, t in reference.inputs.items()}
    return inputs, interpret(reference, inputs, float64=True)[reference.outputs[0]]


def relative_error(graph: MuGraph, inputs, want) -> float:
    """max |candidate - reference| / max |reference|."""
    got = run_mugraph(graph, inputs, FloatArith())[graph.outputs[0]]
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_handmade_candidate_imports_and_computes_rmsnorm_matmul():
    graph = mugraph_from_mirage(rmsnorm_candidate(), "rms", ("X", "W"))
    block = graph.ops[0].block
    assert graph.inputs == {"X": (2, 32), "W": (32, 48)} and graph.outputs == ("O",)
    assert (block.grid, block.forloop_range, block.threads) == ((4, 1, 1), 4, 128)
    assert [(i.source, i.imap, i.fmap) for i in block.inputs] == [(0, (-1, -1, -1), 1),
                                                                  (1, (1, -1, -1), 0)]
    assert [op.op for op in block.ops] == ["accum_rms_ld", "matmul", "accum_sum", "div"]
    assert graph.dtype == "float16"
    case = reference_case(get_workload("rmsnorm_matmul:small"))
    assert relative_error(graph, *case) < 1e-12


def test_default_input_names_and_tensor_names():
    graph = mugraph_from_mirage(rmsnorm_candidate())
    assert list(graph.inputs) == ["in0", "in1"]
    assert graph.ops[0].inputs == ("in0", "in1") and graph.ops[0].outputs == ("O",)


def test_unknown_op_type_names_the_op_and_the_candidate(tmp_path):
    good, bad = rmsnorm_candidate(), rmsnorm_candidate()
    bad[2]["bgraph"]["operators"][3]["op_type"] = "tb_concat_0_op"
    path = tmp_path / "ckpt.json"
    path.write_text(json.dumps([good, bad]))
    with pytest.raises(MuGraphError, match=r"candidate 1: .*'tb_concat_0_op'.*no concat"):
        load_mirage_checkpoint(path)
    graphs, failures = import_mirage_checkpoint(path)
    assert list(graphs) == [0] and list(failures) == [1]


def test_recorded_shapes_are_cross_checked():
    with pytest.raises(MuGraphError, match=r"tile in0: our rules give \(2, 8\), the file"):
        mugraph_from_mirage(rmsnorm_candidate(x_tile=(2, 16)))


def test_recorded_after_accum_is_cross_checked():
    candidate = rmsnorm_candidate()
    product = candidate[2]["bgraph"]["operators"][3]["output_tensors"][0]  # matmul -> t1
    product["after_accum"] = True
    with pytest.raises(MuGraphError, match="tile t1: our rules compute it in the loop"):
        mugraph_from_mirage(candidate)


def test_column_major_inputs_are_refused():
    candidate = rmsnorm_candidate()
    candidate[1]["input_strides"] = [1, 32]
    with pytest.raises(MuGraphError, match="row-major"):
        mugraph_from_mirage(candidate)


def test_wrong_number_of_input_names_and_malformed_files(tmp_path):
    with pytest.raises(MuGraphError, match="2 kn_input_ops, but 3 input names"):
        mugraph_from_mirage(rmsnorm_candidate(), input_names=("X", "W", "Z"))
    broken = rmsnorm_candidate()
    del broken[2]["bgraph"]["grid_dim"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps([broken]))
    with pytest.raises(MuGraphError, match="candidate 0: malformed operator"):
        load_mirage_checkpoint(path)
    path.write_text("{}")
    with pytest.raises(MuGraphError, match="list of candidates"):
        load_mirage_checkpoint(path)


# ---- Mirage's saved benchmark checkpoints --------------------------------------------------

def mqa_reference(batch: int):
    """MQA as Mirage's benchmark has it: Q(b, 1024, 64) (16 query heads stacked on one kv head),
    K(b, 64, 4096), V(b, 4096, 64); gqa's Q has 2b rows, so b = 1 needs its own graph."""
    g = GraphBuilder(f"mqa:b={batch}")
    q = g.input("Q", (batch, 1024, 64))
    k = g.input("K", (batch, 64, 4096))
    v = g.input("V", (batch, 4096, 64))
    return g.build(softmax_attention(g, q, k, v, 0))


ATTENTION = ("Q", "K", "V")
# file -> (reference program, Mirage's input order, candidates in the file, candidates that
#          compute the reference, factor the test divides grid x by (1: the file's shapes)).
# A factor > 1 runs each candidate with fewer blocks along x and the reference at the matching
# smaller shape (see fewer_blocks); the comment gives the file's shapes.
CHECKPOINTS = {
    "rmsnorm_bs1": ("rmsnorm_matmul:b=1,n=768", ("X", "W"), 18, 18, 8),  # W(4096, 6144)
    "rmsnorm_bs8": ("rmsnorm_matmul:b=8,n=768", ("X", "W"), 20, 20, 8),  # W(4096, 6144)
    "gated_mlp": ("gated_mlp", ("X", "W1", "W2"), 32, 32, 1),
    "single_gated_mlp": ("gated_mlp", ("X", "W1", "W2"), 1, 1, 1),
    "lora": ("lora", ("X", "W", "A", "B"), 4, 4, 1),
    "single_lora": ("lora", ("X", "W", "A", "B"), 1, 1, 1),
    "ntrans_bs1": ("ntrans:b=1", ("H", "X", "alpha"), 9, 9, 1),  # Mirage declares H first
    "ntrans_bs8": ("ntrans:b=8", ("H", "X", "alpha"), 9, 9, 1),
    "gqa_bs1": ("gqa:b=1", ATTENTION, 28, 28, 1),
    "gqa_bs8": ("gqa:b=2", ATTENTION, 10, 10, 4),  # Q(16, 256, 64)
    "mha_bs1": ("gqa:b=2,q=16", ATTENTION, 21, 21, 8),  # Q(32, 16, 64): 32 heads
    "mha_bs8": ("gqa:b=4,q=16", ATTENTION, 38, 38, 32),  # Q(256, 16, 64)
    "mqa_bs1": (mqa_reference(1), ATTENTION, 12, 12, 1),
    "single_mqa_bs1": (mqa_reference(1), ATTENTION, 1, 1, 1),
    "mqa_bs8": ("gqa:b=1,q=1024", ATTENTION, 17, 17, 4),  # Q(8, 1024, 64)
}


def fewer_blocks(graph: MuGraph, factor: int, shapes: dict) -> MuGraph:
    """The candidate with grid x divided by `factor` in every kernel, on inputs `shapes`.

    Blocks never communicate and differ only in which chunk they read, so the first
    grid_x / factor blocks running on inputs cut to match (every checkpoint's grid x splits
    the batch, or W's columns for RMSNorm) compute what they compute at full size; the shapes
    the smaller grid implies must agree with `shapes` or kernel_shapes raises. Import and its
    shape cross-checks ran at the file's full size.
    """
    ops = []
    for op in graph.ops:
        if op.op == "block":
            x, y, z = op.block.grid
            assert x % factor == 0, f"{graph.name}: grid x {x} does not divide by {factor}"
            op = replace(op, block=replace(op.block, grid=(x // factor, y, z)))
        ops.append(op)
    small = replace(graph, inputs=dict(shapes), ops=tuple(ops))
    kernel_shapes(small)
    return small


def test_checkpoint_table_covers_every_file():
    if not DATA.is_dir():
        pytest.skip(f"no Mirage checkpoints at {DATA}")
    assert sorted(p.stem for p in DATA.glob("*.json")) == sorted(CHECKPOINTS)


@needs_data
@pytest.mark.parametrize("stem", list(CHECKPOINTS))
def test_every_candidate_imports_and_computes_the_reference(stem):
    reference, names, count, matching, factor = CHECKPOINTS[stem]
    reference = get_workload(reference) if isinstance(reference, str) else reference
    graphs, failures = import_mirage_checkpoint(DATA / f"{stem}.json", names)
    assert not failures, failures
    assert len(graphs) == count
    shapes = {n: t.shape for n, t in reference.inputs.items()}
    inputs, want = reference_case(reference)
    errors = {}
    for index, graph in graphs.items():
        kernel_shapes(graph)
        if factor > 1:
            graph = fewer_blocks(graph, factor, shapes)
        assert graph.inputs == shapes
        errors[index] = relative_error(graph, inputs, want)
    wrong = {i: f"{e:.2g}" for i, e in errors.items() if not e < 1e-9}
    # measured: every candidate of every file computes its reference (none is wrong)
    assert len(errors) - len(wrong) == matching, f"{stem}: candidates that differ: {wrong}"


@needs_data
def test_mirage_rmsnorm_first_candidate_is_division_after_matmul():
    graph = load_mirage_checkpoint(DATA / "rmsnorm_bs1.json", ("X", "W"))[0]
    (kernel,) = graph.ops
    assert kernel.block.grid == (256, 1, 1) and kernel.block.forloop_range == 32
    assert sorted(op.op for op in kernel.block.ops) == ["accum_rms_ld", "accum_sum", "div",
                                                        "matmul"]


def test_candidates_are_not_shared_between_imports():
    # a Mirage candidate is plain JSON: importing must not mutate it
    candidate = rmsnorm_candidate()
    before = copy.deepcopy(candidate)
    mugraph_from_mirage(candidate, input_names=("X", "W"))
    assert candidate == before


@needs_data
def test_a_corrupted_candidate_is_caught_at_the_reduced_grid():
    # the harness is not vacuous: rms -> plain sum in Mirage's first RMSNorm candidate
    candidates = json.loads((DATA / "rmsnorm_bs1.json").read_text())
    for op in candidates[0][1:]:
        for tile_op in op.get("bgraph", {}).get("operators", []):
            if tile_op["op_type"] == "tb_accum_red_ld_rms_op":
                tile_op["op_type"] = "tb_accum_red_ld_sum_op"
    graph = mugraph_from_mirage(candidates[0], input_names=("X", "W"))
    reference = get_workload("rmsnorm_matmul:b=1,n=768")
    small = fewer_blocks(graph, 8, {n: t.shape for n, t in reference.inputs.items()})
    assert relative_error(small, *reference_case(reference)) > 1e-2
