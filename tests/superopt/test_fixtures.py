"""Shipped µGraph fixtures: each computes its workload (float64), each wrong twin does not."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest

from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import FloatArith, MuGraphError, run_mugraph, validate
from mlc.compiler.superopt.mugraph.fixtures import (
    fixture_workload,
    list_fixtures,
    list_wrong_fixtures,
    load_fixture,
    load_wrong_fixture,
)
from mlc.specs.workloads import get_workload

WORKLOADS = ["rmsnorm_matmul", "gated_mlp", "lora", "gqa", "qknorm", "ntrans"]
# Mirage sized these for its MAX_SMEM_SIZE (96 KiB, fp16 tiles, fused tiles in registers); our
# one shared-memory rule is the CUDA renderer's (every tile an fp32 slot), under which every
# fixture fits the H100's opt-in 227 KiB per block (ntrans and qknorm need more than 96 KiB).
H100_SMEM_BYTES = 227 * 1024


def random_inputs(graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Normal values whose scale grows along the last axis (0.05 to 0.5).

    Uneven columns keep a partial tile's statistics (an rms over 128 of 4096 columns) away
    from the whole row's, as real activations with outlier channels do; the 0.5 cap keeps
    exp(Q K) moderate, since the attention workloads do not subtract the max.
    """
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, t in graph.inputs.items():
        ramp = np.linspace(0.05, 0.5, t.shape[-1])
        inputs[name] = rng.standard_normal(t.shape) * ramp
    return inputs


def relative_error(graph, spec: str, seed: int = 0) -> float:
    """max |µGraph - reference| / max |reference| on random inputs, in float64."""
    reference = get_workload(spec)
    inputs = random_inputs(reference, seed)
    want = interpret(reference, inputs, float64=True)[reference.outputs[0]]
    got = run_mugraph(graph, inputs, FloatArith())[graph.outputs[0]]
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_every_workload_has_a_full_and_a_small_fixture_and_a_wrong_twin():
    expected = sorted(n for w in WORKLOADS for n in (w, f"{w}_small"))
    assert list_fixtures() == expected
    assert list_wrong_fixtures() == expected
    assert fixture_workload("gqa") == "gqa"
    assert fixture_workload("rmsnorm_matmul_small") == "rmsnorm_matmul:small"


@pytest.mark.parametrize("name", list_fixtures())
def test_fixture_matches_its_workload(name):
    graph = load_fixture(name)
    spec = fixture_workload(name)
    reference = get_workload(spec)
    assert graph.inputs == {n: t.shape for n, t in reference.inputs.items()}
    validate(graph, smem_limit_bytes=H100_SMEM_BYTES)
    assert relative_error(graph, spec) < 1e-9


@pytest.mark.parametrize("name", list_wrong_fixtures())
def test_wrong_fixture_validates_but_computes_something_else(name):
    graph = load_wrong_fixture(name)
    validate(graph)
    assert relative_error(graph, fixture_workload(name)) > 0.2


def test_attention_fixtures_split_kv_in_two_kernels():
    for name in ("gqa", "qknorm"):
        split, combine = load_fixture(name).ops
        assert split.block.grid == (2, 8, 16) and split.block.forloop_range == 4
        assert [op.op for op in combine.block.ops] == ["accum_sum_ld", "accum_sum_todimx", "div"]


def test_fixture_files_follow_the_mugraph_schema():
    jsonschema = pytest.importorskip("jsonschema")
    specs = files("mlc.specs")
    schema = json.loads(specs.joinpath("schemas", "mugraph.schema.json").read_text())
    folders = [specs.joinpath("mugraphs"), specs.joinpath("mugraphs", "wrong")]
    documents = [entry for folder in folders for entry in folder.iterdir()
                 if entry.name.endswith(".json")]
    assert len(documents) == 2 * len(list_fixtures())
    for entry in documents:
        jsonschema.validate(json.loads(entry.read_text()), schema)


def test_unknown_fixture_names_the_known_ones():
    with pytest.raises(MuGraphError, match="known: gated_mlp"):
        load_fixture("no_such_fixture")
    with pytest.raises(MuGraphError, match="wrong fixture"):
        load_wrong_fixture("no_such_fixture")
