"""The performance model against hand-computed bytes and simple monotonicity facts."""

from __future__ import annotations

import dataclasses

import pytest

from mlc.compiler.errors import MlcError
from mlc.compiler.plan.coral.catalog import load_catalog
from mlc.compiler.plan.coral.perf import (
    Workload,
    calibrate,
    estimate,
    homogeneous,
    stage_weight_bytes,
)
from mlc.compiler.plan.models import list_models, load_model_config

CATALOG = load_catalog()
WORKLOAD = Workload(1.0, 512, 256)
GiB = 2**30


def test_model_configs_match_reference_numbers():
    llama = load_model_config("llama-3.1-8b")
    assert (llama.layers, llama.hidden, llama.kv_heads, llama.vocab) == (32, 4096, 8, 128256)
    assert llama.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    assert load_model_config("qwen2.5-72b").params == 72_700_000_000
    assert set(list_models()) >= {"llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b", "qwen2.5-14b",
                                  "qwen2.5-32b", "qwen2.5-72b", "mistral-7b"}
    with pytest.raises(MlcError, match="known models: llama-3.1-70b"):
        load_model_config("llama-9b")


def test_memory_matches_hand_computed_bytes():
    model = load_model_config("llama-3.1-8b")
    config = homogeneous("a100-40gb", 1, 1, model.layers)
    assert stage_weight_bytes(model, config, 0) == pytest.approx(8.03e9 * 2)
    # usable = 40 GiB * 0.9 - 1 GiB reserve - 16.06 GB weights; KV 128 KiB per token
    usable = 40 * GiB * 0.9 - 1 * GiB - 8.03e9 * 2
    perf = estimate(model, config, WORKLOAD, CATALOG)
    assert perf.kv_tokens == int(usable / (2 * 32 * 8 * 128 * 2))
    # two stages: each holds 16 layers and one of embedding / LM head, per GPU
    split = homogeneous("a100-40gb", 1, 2, model.layers)
    layer = (8.03e9 - 2 * 128256 * 4096) * 2 / 32
    assert stage_weight_bytes(model, split, 1) == pytest.approx(16 * layer + 128256 * 4096 * 2)
    # a request longer than the KV cache does not fit
    too_long = Workload(1.0, perf.kv_tokens, 1, tpot_slo_s=10, ttft_slo_s=1e9)
    assert not estimate(model, config, too_long, CATALOG).fits


def test_more_tensor_parallelism_fits_a_model_that_did_not_fit():
    model = load_model_config("llama-3.1-70b")  # 141 GB of bf16 weights
    one = estimate(model, homogeneous("a100-80gb", 1, 1, model.layers), WORKLOAD, CATALOG)
    assert not one.fits and "weights need" in one.reason
    four = estimate(model, homogeneous("a100-80gb", 4, 1, model.layers), WORKLOAD, CATALOG)
    assert four.fits and four.throughput > 0


@pytest.mark.parametrize("gpu", ["h100", "a100-80gb", "l40s"])
def test_bigger_model_serves_fewer_requests(gpu):
    rates = []
    for name in ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b"):
        model = load_model_config(name)
        perf = estimate(model, homogeneous(gpu, 2, 1, model.layers), WORKLOAD, CATALOG)
        rates.append(perf.throughput)
    assert rates[0] > rates[1] > rates[2]


def test_slo_and_prices_behave():
    model = load_model_config("llama-3.1-8b")
    config = homogeneous("l4", 2, 1, model.layers)
    loose = estimate(model, config, Workload(1.0, 512, 256, tpot_slo_s=0.2), CATALOG)
    tight = estimate(model, config, Workload(1.0, 512, 256, tpot_slo_s=0.05), CATALOG)
    assert loose.throughput > tight.throughput
    assert tight.tpot_s <= 0.05
    impossible = estimate(model, config, Workload(1.0, 512, 256, tpot_slo_s=0.001), CATALOG)
    assert not impossible.fits and "SLO" in impossible.reason


def test_calibration_recovers_efficiencies():
    model = load_model_config("llama-3.1-8b")
    gpu = CATALOG["h100"]
    kv = 2 * 32 * 8 * 128 * 2
    samples = [{"kind": "decode", "batch": b, "context": 1024,
                "seconds": (model.weight_bytes + b * 1024 * kv) / (gpu.bandwidth * 0.6)}
               for b in (1, 16, 64)]
    samples += [{"kind": "prefill", "prompt_tokens": p,
                 "seconds": (2 * model.params * p + 2 * 32 * p * p * 4096) / (gpu.flops * 0.4)}
                for p in (512, 2048)]
    fitted = calibrate(samples, model, gpu)
    assert fitted == pytest.approx({"bandwidth_efficiency": 0.6, "flops_efficiency": 0.4})
    slower = dataclasses.replace(gpu, **fitted)
    catalog = {**CATALOG, "h100": slower}
    config = homogeneous("h100", 1, 1, 32)
    assert estimate(model, config, WORKLOAD, catalog).throughput < \
        estimate(model, config, WORKLOAD, CATALOG).throughput
