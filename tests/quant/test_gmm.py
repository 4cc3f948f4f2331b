"""GMMQuantizer: the pinned zero mean, log-space responsibilities, soft/hard weights, EM fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlc.compiler.quant.gmm import GMMQuantizer


def _mixture_weight(n: int = 3000, seed: int = 0) -> torch.Tensor:
    """A weight drawn from a known 4-component mixture with a spike at 0."""
    rng = np.random.default_rng(seed)
    centre = rng.choice(np.array([0.0, -0.6, 0.4, 1.0]), size=n, p=[0.4, 0.2, 0.25, 0.15])
    return torch.tensor(centre + rng.normal(0, 0.03, n), dtype=torch.float32).reshape(60, -1)


def _reference_log_joint(values, means, scales, proportions) -> np.ndarray:
    """float64 log(pi_k N(w; mu_k, sigma_k^2)) straight from the formula (-inf where the
    pdf underflows)."""
    w = np.asarray(values, np.float64).reshape(-1, 1)
    pdf = np.exp(-0.5 * ((w - means) / scales) ** 2) / (scales * np.sqrt(2 * np.pi))
    with np.errstate(divide="ignore"):
        return np.log(proportions * pdf)


def _params(q: GMMQuantizer):
    with torch.no_grad():
        return (q.means.double().numpy(), q.scales.double().numpy(),
                q.proportions.double().numpy())


def _set_scales(q: GMMQuantizer, scales) -> None:
    with torch.no_grad():
        s = torch.as_tensor(scales, dtype=torch.float64).expand(q.num_components)
        q.raw_scales.copy_(torch.log(torch.expm1(s)))


def test_init_from_kmeans_pins_zero_and_matches_clusters():
    w = _mixture_weight()
    q = GMMQuantizer(w, bits=2)
    means, scales, proportions = _params(q)
    assert q.means[0].item() == 0.0 and q.means.shape == (4,)
    assert np.allclose(np.sort(means[1:]), [-0.6, 0.4, 1.0], atol=0.01)
    assert np.allclose(scales, 0.03, rtol=0.15)
    order = np.argsort(means)
    assert np.allclose(proportions[order], [0.2, 0.4, 0.25, 0.15], atol=0.03)
    assert isinstance(q.tau, float) and all(p is not q.tau for p in q.parameters())
    assert {name for name, _ in q.named_parameters()} == {"free_means", "raw_scales",
                                                          "mix_logits"}


@pytest.mark.parametrize("bits", [0, 9, 2.0])
def test_bits_out_of_range_is_rejected(bits):
    with pytest.raises(ValueError):
        GMMQuantizer(torch.randn(10), bits)


def test_zero_mean_stays_exact_through_training_and_scales_stay_positive():
    w = _mixture_weight(n=600).requires_grad_()
    q = GMMQuantizer(w, bits=2, tau=0.05)
    before = q.free_means.detach().clone()
    optimizer = torch.optim.Adam([w, *q.parameters()], lr=0.05)
    target = torch.randn_like(w)
    for _ in range(20):
        optimizer.zero_grad()
        loss = ((q.soft_weight(w) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
    assert q.means[0].item() == 0.0
    assert not torch.equal(q.free_means.detach(), before)
    assert bool((q.scales > 0).all())
    with torch.no_grad():
        q.raw_scales.fill_(-200.0)  # softplus underflows to 0 in float32
    assert bool((q.scales > 0).all())


def test_log_responsibilities_match_float64_reference():
    w = _mixture_weight()
    q = GMMQuantizer(w, bits=2)
    _set_scales(q, [0.05, 0.2, 0.3, 0.4])  # wide enough that no pdf underflows in float64
    joint = _reference_log_joint(w.numpy(), *_params(q))
    assert np.isfinite(joint).all()
    expected = joint - np.logaddexp.reduce(joint, axis=1, keepdims=True)
    got = q.log_responsibilities(w).detach().double().numpy()
    assert got.shape == (w.numel(), 4)
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.allclose(np.logaddexp.reduce(got, axis=1), 0.0, atol=1e-5)


def test_log_responsibilities_finite_where_naive_pdfs_underflow():
    w = _mixture_weight(n=600)
    q = GMMQuantizer(w, bits=2)
    _set_scales(q, 1e-8)
    means, scales, proportions = _params(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = proportions * np.exp(_reference_log_joint(w.numpy(), means, scales, 1.0))
        assert np.isnan(naive / naive.sum(1, keepdims=True)).any()  # what DGMS's code hits
    got = q.log_responsibilities(w).detach().double().numpy()
    assert np.isfinite(got).all()
    assert np.allclose(np.logaddexp.reduce(got, axis=1), 0.0, atol=1e-5)
    nearest = np.abs(w.numpy().reshape(-1, 1) - means).argmin(1)
    assert np.array_equal(got.argmax(1), nearest)


def test_soft_weight_chunked_equals_unchunked_values_and_gradients():
    w = _mixture_weight(n=600)
    results = []
    for chunk in (7, 10**9):
        q = GMMQuantizer(w, bits=2, tau=0.05, chunk=chunk)
        weight = w.clone().requires_grad_()
        soft = q.soft_weight(weight)
        (soft * torch.linspace(-1, 1, soft.numel()).reshape(soft.shape)).sum().backward()
        results.append((soft.detach(), weight.grad, q.free_means.grad, q.raw_scales.grad,
                        q.mix_logits.grad))
    for small, large in zip(*results):
        assert torch.allclose(small, large, rtol=1e-5, atol=1e-6)
    assert results[0][0].shape == w.shape


def test_soft_weight_backward_keeps_no_per_component_intermediates():
    w = torch.randn(4096).requires_grad_()
    q = GMMQuantizer(w, bits=4, chunk=64)
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        soft = q.soft_weight(w)
    soft.sum().backward()
    assert sum(saved) <= 2 * w.numel()  # unchunked autograd would keep several [N, 16] arrays
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_soft_weight_approaches_hard_weight_as_tau_shrinks():
    w = _mixture_weight(n=1200)
    q = GMMQuantizer(w, bits=2)
    means = q.codebook()
    noise = torch.randn(400, generator=torch.Generator().manual_seed(0))
    near = means[torch.arange(400) % 4] + 0.01 * noise  # within a third of a scale
    errors = []
    for tau in (1.0, 0.1, 1e-4):
        q.tau = tau
        with torch.no_grad():
            errors.append(float((q.soft_weight(near) - q.hard_weight(near)).abs().max()))
    assert errors[0] > 0.1
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6
    assert torch.equal(q.hard_weight(near), means[torch.arange(400) % 4])


def test_gradients_reach_weight_and_every_parameter():
    # a continuous (trained-layer-like) weight: values near cluster borders carry gradient
    w = (0.05 * torch.randn(30, 20, generator=torch.Generator().manual_seed(0))).requires_grad_()
    q = GMMQuantizer(w, bits=2)
    (q.soft_weight(w) ** 2).sum().backward()
    for grad in (w.grad, q.free_means.grad, q.raw_scales.grad, q.mix_logits.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_hard_weight_uses_only_codebook_values_and_zero_fraction_counts_zeros():
    w = _mixture_weight()
    q = GMMQuantizer(w, bits=2)
    indices, hard = q.hard_indices(w), q.hard_weight(w)
    assert indices.dtype == torch.int64 and indices.shape == w.shape
    assert int(indices.max()) < 4 and q.codebook().dtype == torch.float32
    assert torch.equal(hard, q.codebook()[indices])
    assert set(hard.unique().tolist()) <= set(q.codebook().tolist())
    zero_share = float((hard == 0).float().mean())
    assert q.zero_fraction(w) == pytest.approx(zero_share)
    assert 0.3 < zero_share < 0.5  # the spike at 0 holds 40% of the values


def test_fit_increases_the_log_likelihood():
    w = _mixture_weight()
    q = GMMQuantizer(w, bits=2)
    _set_scales(q, 0.3)  # a poor start that EM has to repair

    def reference_ll():
        joint = _reference_log_joint(w.numpy(), *_params(q))
        return float(np.logaddexp.reduce(joint, axis=1).mean())

    before = reference_ll()
    assert q.log_likelihood(w) == pytest.approx(before, rel=1e-5)
    assert q.fit(w, steps=5) is q
    middle = reference_ll()
    q.fit(w)
    after = reference_ll()
    assert before < middle <= after + 1e-9
    assert after > before + 1.0
    assert q.means[0].item() == 0.0
    assert np.allclose(_params(q)[1], 0.03, rtol=0.2)


def _spike_and_gaussian(n: int) -> torch.Tensor:
    w = 0.05 * torch.randn(n, generator=torch.Generator().manual_seed(0))
    w[: n // 10] = 0.0  # an already-pruned tenth
    return w


@pytest.mark.parametrize("make", [_mixture_weight, _spike_and_gaussian])
def test_grouped_em_matches_value_by_value_em(make):
    w = make(n=12_000)
    # ~128 groups of <= ~94 sorted values each vs one group per value
    grouped, exact = [GMMQuantizer(w, bits=2).fit(w, steps=30, groups=g) for g in (128, 10**6)]
    for a, b in zip(_params(grouped), _params(exact)):
        assert np.allclose(a, b, rtol=0.01, atol=1e-4)
    assert grouped.log_likelihood(w) == pytest.approx(exact.log_likelihood(w), abs=1e-4)


def test_more_components_than_distinct_values_stays_finite():
    w = torch.tensor([0.0, 0.5, 0.5, -1.0, 2.0] * 4)
    q = GMMQuantizer(w, bits=8)
    for tensor in (q.means, q.scales, q.proportions, q.soft_weight(w)):
        assert torch.isfinite(tensor).all()
    assert torch.allclose(q.hard_weight(w), w)
    q.fit(w, steps=3)
    assert torch.allclose(q.hard_weight(w), w) and math.isfinite(q.log_likelihood(w))


def test_training_toy_reduces_reconstruction_error():
    torch.manual_seed(0)
    target = torch.randn(20, 30) * 0.1
    w = target.clone().requires_grad_()
    q = GMMQuantizer(w, bits=2, tau=0.05, chunk=256)
    optimizer = torch.optim.Adam([{"params": [w], "lr": 1e-3},
                                  {"params": q.parameters(), "lr": 1e-2}])
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = ((q.soft_weight(w) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert q.means[0].item() == 0.0 and torch.isfinite(w).all()


def test_interpolated_soft_weights_match_the_exact_ones_with_gradients():
    torch.manual_seed(0)
    weight = torch.randn(256, 512) * 0.05
    quantizer = GMMQuantizer(weight, 4)
    exact_w = weight.clone().requires_grad_(True)
    exact = quantizer.soft_weight(exact_w)
    (exact * exact).sum().backward()
    exact_grads = [exact_w.grad.clone(), quantizer.free_means.grad.clone()]
    quantizer.zero_grad()
    quantizer.grid = 16384
    fast_w = weight.clone().requires_grad_(True)
    fast = quantizer.soft_weight(fast_w)
    (fast * fast).sum().backward()
    assert float((fast - exact).detach().norm() / exact.detach().norm()) < 1e-3
    # both gradients point the same way (the mixture's within 1% in direction and norm)
    for got, want in ((fast_w.grad, exact_grads[0]), (quantizer.free_means.grad, exact_grads[1])):
        cosine = torch.nn.functional.cosine_similarity(got.reshape(-1), want.reshape(-1), dim=0)
        assert float(cosine) > 0.99
    assert abs(float(quantizer.free_means.grad.norm() / exact_grads[1].norm()) - 1) < 0.01
