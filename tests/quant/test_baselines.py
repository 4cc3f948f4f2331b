"""1-D k-means and the same-bits baselines (round-to-nearest, k-means sharing, GMM export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlc.compiler.quant.baselines import (
    Quantized,
    gmm_quantized,
    kmeans_sharing,
    round_to_nearest,
)
from mlc.compiler.quant.gmm import GMMQuantizer
from mlc.compiler.quant.kmeans import assign_nearest, kmeans_1d

TRUE_CENTRES = np.array([-2.0, -0.5, 0.3, 1.5])


def _clustered(n: int = 4000, seed: int = 0, spread: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(TRUE_CENTRES, size=n, p=[0.1, 0.4, 0.3, 0.2]) + rng.normal(0, spread, n)


# -- kmeans_1d / assign_nearest ---------------------------------------------------------------

def test_kmeans_recovers_well_separated_centres():
    centres = kmeans_1d(_clustered(), 4)
    assert centres.dtype == np.float64 and np.all(np.diff(centres) >= 0)
    assert np.allclose(centres, TRUE_CENTRES, atol=0.005)


def test_kmeans_on_a_subsample_still_recovers_centres_and_is_deterministic():
    values = _clustered(n=50_000)
    first = kmeans_1d(values, 4, max_samples=5_000, seed=3)
    assert np.array_equal(first, kmeans_1d(values, 4, max_samples=5_000, seed=3))
    assert np.allclose(first, TRUE_CENTRES, atol=0.01)
    assert np.array_equal(kmeans_1d(values, 8), kmeans_1d(values.copy(), 8))


def test_kmeans_pin_zero_keeps_an_exact_zero():
    values = _clustered() + 0.2  # no cluster at 0: the pinned centre must not drift
    centres = kmeans_1d(values, 4, pin_zero=True)
    assert np.count_nonzero(centres == 0.0) == 1
    assert not np.any(kmeans_1d(values, 4) == 0.0)
    assert np.all(np.diff(centres) >= 0)


@pytest.mark.parametrize("k", [5, 16, 256])
def test_kmeans_more_clusters_than_distinct_values(k):
    values = np.array([3.0, 3.0, -1.0, 0.25] * 10)
    for pin_zero in (False, True):
        centres = kmeans_1d(values, k, pin_zero=pin_zero)
        assert centres.shape == (k,) and np.isfinite(centres).all()
        error = values - centres[assign_nearest(values, centres)]
        assert np.all(error == 0)
    assert np.array_equal(kmeans_1d(np.full(7, 2.5), 4), np.full(4, 2.5))


def test_kmeans_covers_rare_distinct_values():
    rng = np.random.default_rng(0)
    distinct = np.array([-3.0, -1.0, 0.5, 7.0, 8.0, 9.0, 10.0, 11.0])
    values = rng.choice(distinct, size=2000, p=[0.9, 0.04, 0.02, 0.01, 0.01, 0.01, 0.005, 0.005])
    assert np.array_equal(kmeans_1d(values, 8), distinct)


def test_kmeans_rejects_bad_input():
    with pytest.raises(ValueError):
        kmeans_1d(np.array([]), 2)
    with pytest.raises(ValueError):
        kmeans_1d(np.array([1.0, np.nan]), 2)
    with pytest.raises(ValueError):
        kmeans_1d(np.array([1.0]), 0)


def test_assign_nearest_matches_brute_force_in_chunks():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(37, 11))
    centres = rng.normal(size=9)
    got = assign_nearest(values, centres, chunk=5)
    brute = np.abs(values[..., None] - centres).argmin(-1)
    assert got.dtype == np.int64 and got.shape == values.shape
    assert np.array_equal(got, brute)


# -- round_to_nearest ---------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_rtn_error_is_at_most_half_a_step_per_channel(bits, axis):
    rng = np.random.default_rng(bits)
    weight = (rng.normal(size=(6, 5, 3)) * rng.uniform(0.1, 5, size=(1, 5, 1))).astype(np.float32)
    weight[:, 2] = np.abs(weight[:, 2]) + 4.0  # a channel (along axis 1) that is all positive
    quantized = round_to_nearest(weight, bits, axis)
    approx = quantized.dequantize()
    assert approx.shape == weight.shape and approx.dtype == np.float32
    assert quantized.indices.dtype == np.uint8 and quantized.indices.max() < 2 ** bits
    channels = np.moveaxis(weight.astype(np.float64), axis, 0).reshape(weight.shape[axis], -1)
    step = (np.maximum(channels.max(1), 0) - np.minimum(channels.min(1), 0)) / (2 ** bits - 1)
    error = np.moveaxis(np.abs(approx - weight), axis, 0).reshape(weight.shape[axis], -1)
    assert np.all(error.max(1) <= step / 2 * (1 + 1e-5) + 1e-7)
    assert quantized.codebook.shape == (weight.shape[axis], 2 ** bits)


def test_rtn_is_exact_on_its_own_grid_and_represents_zero():
    rng = np.random.default_rng(0)
    steps = 2.0 ** -np.arange(3, 7)  # powers of two: every grid value is exact in float32
    zero_points = np.array([0, 3, 7, 15])
    codes = rng.integers(0, 16, size=(4, 50))
    codes[:, 0], codes[:, 1] = 0, 15  # span the whole range
    weight = (steps[:, None] * (codes - zero_points[:, None])).astype(np.float32)
    quantized = round_to_nearest(weight, 4, axis=0)
    assert np.array_equal(quantized.dequantize(), weight)
    assert np.array_equal(quantized.indices, codes)
    assert np.all(np.any(quantized.codebook == 0, axis=1))


def test_rtn_constant_channels():
    weight = np.zeros((3, 4), np.float32)
    weight[1] = -2.5
    weight[2] = 7.0
    quantized = round_to_nearest(weight, 2, axis=0)
    assert np.isfinite(quantized.codebook).all()
    assert np.array_equal(quantized.dequantize(), weight)
    whole = round_to_nearest(weight, 3, axis=None)
    assert whole.axis is None and whole.codebook.shape == (8,)
    assert np.abs(whole.dequantize() - weight).max() <= (7.0 + 2.5) / 7 / 2 + 1e-6


# -- kmeans_sharing, gmm_quantized, Quantized -------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 3])
def test_kmeans_sharing_is_lossless_with_2_pow_bits_distinct_values(bits):
    rng = np.random.default_rng(bits)
    distinct = rng.normal(size=2 ** bits).astype(np.float32)
    weight = rng.choice(distinct, size=(20, 30))
    quantized = kmeans_sharing(weight, bits)
    assert quantized.axis is None and quantized.codebook.shape == (2 ** bits,)
    assert quantized.indices.shape == weight.shape and quantized.indices.max() < 2 ** bits
    assert np.array_equal(quantized.dequantize(), weight)


def test_kmeans_sharing_beats_rtn_on_clustered_weights():
    weight = _clustered(n=3000).astype(np.float32).reshape(30, 100)
    shared = kmeans_sharing(weight, 2).dequantize()
    uniform = round_to_nearest(weight, 2, axis=None).dequantize()
    assert np.linalg.norm(shared - weight) < 0.2 * np.linalg.norm(uniform - weight)


def test_gmm_quantized_matches_the_quantizer_hard_weight():
    weight = torch.tensor(_clustered(n=1200), dtype=torch.float32).reshape(40, 30)
    quantizer = GMMQuantizer(weight, bits=2)
    quantized = gmm_quantized(quantizer, weight)
    assert isinstance(quantized, Quantized) and quantized.axis is None and quantized.bits == 2
    assert quantized.indices.dtype == np.uint8 and quantized.indices.shape == (40, 30)
    assert quantized.codebook.dtype == np.float32 and quantized.codebook[0] == 0.0
    assert np.array_equal(quantized.dequantize(), quantizer.hard_weight(weight).numpy())


def test_quantized_rejects_inconsistent_parts():
    indices = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError):
        Quantized(indices, np.zeros((3, 4), np.float32), axis=0, bits=2)  # 2 rows needed
    with pytest.raises(ValueError):
        Quantized(indices, np.zeros(8, np.float32), axis=None, bits=2)  # > 2**bits entries
    with pytest.raises(ValueError):
        Quantized(indices + 4, np.zeros(4, np.float32), axis=None, bits=2)
    ok = Quantized(indices, np.arange(6, dtype=np.float32).reshape(3, 2), axis=1, bits=1)
    assert np.array_equal(ok.dequantize(), np.tile([0.0, 2.0, 4.0], (2, 1)))
