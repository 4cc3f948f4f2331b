"""Fuzzing the ONNX importer with random models (compiler/frontends/onnx_random.py) and broken
copies of them (onnx_fuzz.mutate): valid models match onnxruntime with both executors; a broken
one either imports and matches onnxruntime or ends in an MlcError, never another exception.

The full-size run with a table is bench/fuzz_onnx.py; here a fixed seeded loop plus a few
hypothesis-drawn seeds keep the file fast (derandomized, so a failure reproduces)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlc.compiler.frontends.onnx_fuzz import MUTATIONS, evaluate, mutate
from mlc.compiler.frontends.onnx_random import OPSETS, random_model

pytest.importorskip("onnxruntime")

FUZZ = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def quiet_mlc_log():
    logger = logging.getLogger("mlc")
    level = logger.level
    logger.setLevel(logging.ERROR)  # refusals of broken models are expected, not news
    yield
    logger.setLevel(level)


def acceptable(outcome) -> bool:
    """A broken model may import and match, be refused clearly, or be too large to run here;
    onnxruntime may lack a kernel for a dtype ONNX allows (its NOT_IMPLEMENTED), nothing else."""
    if outcome.kind == "ort_refused":
        return "NOT_IMPLEMENTED" in outcome.detail
    return outcome.kind in ("matched", "clear_error", "too_large")


@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_random_valid_models_match_onnxruntime(tmp_path, seed):
    model, feeds = random_model(np.random.default_rng(seed))
    outcome = evaluate(model.SerializeToString(), feeds, tmp_path)
    assert outcome.kind == "matched", (seed, outcome)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_models_match_or_fail_clearly(tmp_path, seed):
    rng = np.random.default_rng(seed)
    model, feeds = random_model(rng)
    data, names = mutate(model, rng)
    outcome = evaluate(data, feeds, tmp_path)
    assert acceptable(outcome), (seed, names, outcome)


def test_seeded_loop_valid_and_every_mutation(tmp_path):
    """60 valid models over every opset the generator uses, then 150 mutated ones with each
    mutation kind applied at least 5 times on its own."""
    opsets = set()
    for seed in range(60):
        model, feeds = random_model(np.random.default_rng(seed))
        opsets.add(model.opset_import[0].version)
        outcome = evaluate(model.SerializeToString(), feeds, tmp_path)
        assert outcome.kind == "matched", (seed, outcome)
    assert len(opsets) >= len(OPSETS) - 2  # the loop really spans old and new opsets
    kinds = {}
    for seed in range(150):
        rng = np.random.default_rng(10_000 + seed)
        model, feeds = random_model(rng)
        chosen = [MUTATIONS[seed % len(MUTATIONS)]] if seed < 5 * len(MUTATIONS) else None
        data, names = mutate(model, rng, chosen)
        outcome = evaluate(data, feeds, tmp_path)
        assert acceptable(outcome), (seed, names, outcome)
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
    assert kinds.get("clear_error", 0) > 75 and kinds.get("matched", 0) > 5, kinds



@pytest.mark.parametrize("seed, kind", [
    (1782473, "matched"),      # GatherND / Flatten on an empty tensor: was a numpy ValueError
    (1785317, "clear_error"),  # float Mod without fmod=1: mlc ran what onnxruntime refuses
])
def test_regressions_found_by_the_large_fuzz_run(tmp_path, seed, kind):
    """Mutated models from `bench/fuzz_onnx.py --valid 3000 --mutated 10000 --seed 777000`."""
    rng = np.random.default_rng(seed)
    model, feeds = random_model(rng)
    data, _ = mutate(model, rng)
    assert evaluate(data, feeds, tmp_path).kind == kind


@pytest.mark.parametrize("seed", [2004064, 2004731])
def test_corrupt_ir_version_is_refused(tmp_path, seed):
    """flip_bytes turned ir_version into 121 / 43: onnxruntime refuses the file, so must mlc
    (found by `bench/fuzz_onnx.py --valid 3000 --mutated 10000 --seed 999000`)."""
    rng = np.random.default_rng(seed)
    model, feeds = random_model(rng)
    data, _ = mutate(model, rng)
    outcome = evaluate(data, feeds, tmp_path)
    assert outcome.kind == "clear_error" and "IR version" in outcome.detail
