"""The benchmark workloads: small variants against independent numpy formulas, full-size shapes,
variant parsing and errors."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.errors import MlcError
from mlc.compiler.ir import interpret
from mlc.specs.workloads import (
    describe_workload,
    get_workload,
    list_workloads,
    parse_workload,
    sweep_workloads,
)


# ---- independent float64 formulas, written from the papers' definitions -------------------------
def rms(x):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True))


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(s, safe):
    e = np.exp(s - s.max(axis=-1, keepdims=True)) if safe else np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def attention(q, k, v, safe=0):
    return softmax(q @ k, safe) @ v


REFERENCE = {
    "rmsnorm_matmul": lambda X, W: rms(X) @ W,
    "gated_mlp": lambda X, W1, W2: silu(X @ W1) * (X @ W2),
    "lora": lambda X, W, A, B: X @ W + X @ A @ B,
    "gqa": lambda Q, K, V: attention(Q, K, V),
    "qknorm": lambda Q, K, V: attention(rms(Q), K, rms(V)),
    "ntrans": lambda X, H, alpha: rms(X + alpha * (rms(H) + X)),
    "prism_rms_norm": lambda X, W: rms(X) @ W,
    "prism_rmsnorm_mlp": lambda X, W_up, W_gate: (rms(X) @ W_up) * (rms(X) @ W_gate),
    "prism_swiglu": lambda X, W_gate, W_up: silu(X @ W_gate) * (X @ W_up),
    "prism_attention": lambda Q, K, V: attention(Q, K, V),
    "prism_qk_norm_attention": lambda Q, K, V: attention(rms(Q), K, V),
}

# Input shapes at the papers' default sizes, written out by hand.
FULL_SHAPES = {
    "rmsnorm_matmul": {"X": (2, 4096), "W": (4096, 6144)},
    "gated_mlp": {"X": (8, 4096), "W1": (4096, 4096), "W2": (4096, 4096)},
    "lora": {"X": (16, 256), "W": (256, 4096), "A": (256, 16), "B": (16, 4096)},
    "gqa": {"Q": (2, 256, 64), "K": (2, 64, 4096), "V": (2, 4096, 64)},
    "qknorm": {"Q": (2, 256, 64), "K": (2, 64, 4096), "V": (2, 4096, 64)},
    "ntrans": {"X": (8, 4096), "H": (8, 4096), "alpha": (8, 4096)},
    "prism_rms_norm": {"X": (8, 4096), "W": (4096, 4096)},
    "prism_rmsnorm_mlp": {"X": (8, 4096), "W_up": (4096, 4096), "W_gate": (4096, 4096)},
    "prism_swiglu": {"X": (8, 4096), "W_gate": (4096, 4096), "W_up": (4096, 4096)},
    "prism_attention": {"Q": (2, 8, 128), "K": (2, 128, 8192), "V": (2, 8192, 128)},
    "prism_qk_norm_attention": {"Q": (2, 8, 128), "K": (2, 128, 8192), "V": (2, 8192, 128)},
}
FULL_OUTPUTS = {
    "rmsnorm_matmul": (2, 6144), "lora": (16, 4096), "gqa": (2, 256, 64),
    "qknorm": (2, 256, 64), "prism_attention": (2, 8, 128),
    "prism_qk_norm_attention": (2, 8, 128),
}


def random_inputs(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(t.shape).astype(np.float32)
            for name, t in graph.inputs.items()}


def check_against_reference(spec, name):
    graph = get_workload(spec)
    inputs = random_inputs(graph)
    got = interpret(graph, inputs, float64=True, check_types=True)["O"]
    args = {k: v.astype(np.float64) for k, v in inputs.items()}
    expected = REFERENCE[name](**args)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_every_workload_has_a_reference_and_shapes():
    assert list_workloads() == list(REFERENCE) == list(FULL_SHAPES)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_small_variant_matches_numpy(name):
    check_against_reference(f"{name}:small", name)


@pytest.mark.parametrize("name", ["gqa", "qknorm", "prism_attention", "prism_qk_norm_attention"])
def test_safe_softmax_variant_matches_numpy(name):
    check_against_reference(f"{name}:small,safe", name)
    graph = get_workload(f"{name}:small,safe")
    assert graph.op_counts().get("ReduceMax") == 1
    assert "ReduceMax" not in get_workload(f"{name}:small").op_counts()


def test_safe_softmax_survives_large_scores():
    graph = get_workload("gqa:small,safe")
    inputs = random_inputs(graph)
    inputs["Q"] = inputs["Q"] * 200  # exp overflows float32 without max subtraction
    got = interpret(graph, inputs, float64=False)["O"]
    assert np.isfinite(got).all()


@pytest.mark.parametrize("name", list(FULL_SHAPES))
def test_full_size_builds_with_documented_shapes(name):
    graph = get_workload(name)
    assert {k: t.shape for k, t in graph.inputs.items()} == FULL_SHAPES[name]
    assert all(t.dtype == "float32" for t in graph.inputs.values())
    assert not graph.weights  # every tensor is an input, as in Mirage
    assert graph.outputs == ("O",)
    first = next(iter(FULL_SHAPES[name].values()))
    assert graph.types["O"].shape == FULL_OUTPUTS.get(name, first)
    assert graph.name == name
    assert name in describe_workload(name)


def test_batch_presets_and_parameters():
    assert get_workload("rmsnorm_matmul:bs8").inputs["X"].shape == (16, 4096)
    assert get_workload("gqa:bs16").inputs["K"].shape == (32, 64, 4096)
    assert get_workload("ntrans:bs8").inputs["alpha"].shape == (64, 4096)
    graph = get_workload("prism_attention:b=4,h=32,q=128")
    assert graph.name == "prism_attention:b=4,h=32,q=128"
    shapes = {k: t.shape for k, t in graph.inputs.items()}
    assert shapes == {"Q": (4, 4096, 128), "K": (4, 128, 32768), "V": (4, 32768, 128)}
    assert get_workload("prism_swiglu:d=1024, n=16").inputs["X"].shape == (16, 1024)


def test_parse_applies_items_left_to_right():
    name, params = parse_workload("gqa:small,b=3,safe")
    assert name == "gqa"
    assert params == {"b": 3, "q": 8, "kv": 32, "d": 16, "safe": 1}
    assert get_workload("gqa:bs8,safe").name == "gqa:b=8,safe=1"
    assert get_workload("gqa:bs1").name == "gqa"
    assert get_workload("gqa:").name == "gqa"  # an empty variant means the defaults


def test_sweeps_follow_the_papers():
    assert sweep_workloads("gqa") == ["gqa", "gqa:b=8", "gqa:b=16"]
    assert len(sweep_workloads("prism_swiglu")) == 6
    assert len(sweep_workloads("prism_attention")) == 8
    assert sweep_workloads("lora") == ["lora"]
    for spec in sweep_workloads("prism_rmsnorm_mlp"):
        assert get_workload(spec).name == spec


def test_unknown_name_lists_known_workloads():
    with pytest.raises(MlcError) as err:
        get_workload("flash_attention")
    for name in list_workloads():
        assert name in str(err.value)


@pytest.mark.parametrize("spec, words", [
    ("gqa:huge", ["no variant 'huge'", "small", "bs8", "kv=4096"]),
    ("lora:bs8", ["no variant 'bs8'"]),
    ("gqa:b=two", ["integer"]),
    ("gqa:safe=2", ["0 or 1"]),
    ("prism_swiglu:d=0", [">= 1"]),
])
def test_bad_variants(spec, words):
    with pytest.raises(MlcError) as err:
        get_workload(spec)
    for word in words:
        assert word in str(err.value)
