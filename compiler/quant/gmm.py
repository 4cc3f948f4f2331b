"""DGMS's differentiable Gaussian-mixture weight sharing for one weight tensor.

A `GMMQuantizer` holds a K = 2**bits component mixture over a tensor's values, component 0
pinned at mean 0 (pruning). Training runs the model on `soft_weight` (a temperature softmax
over responsibilities, differentiable, no straight-through estimator); deployment takes
`hard_indices` into `codebook()`. Unlike the DGMS code, responsibilities are computed in log
space (raw pdfs underflow), scales are softplus-positive, mixing proportions are a softmax, and
the temperature tau is a fixed hyperparameter rather than a learned parameter.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .kmeans import assign_nearest, kmeans_1d

__all__ = ["GMMQuantizer"]

SCALE_EPS = 1e-12  # added to softplus so a scale is positive even when softplus underflows
REL_SCALE_FLOOR = 1e-3  # init/EM scales stay >= this times the weight's std
MIN_PROPORTION = 1e-6  # init/EM proportions stay >= this, so no log-proportion is -inf
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _inverse_softplus(value: np.ndarray) -> np.ndarray:
    """raw with softplus(raw) == value (value > 0), stable for tiny and large values."""
    value = np.asarray(value, dtype=np.float64)
    return value + np.log(-np.expm1(-value))


def _log_joint(w: torch.Tensor, means: torch.Tensor, scales: torch.Tensor,
               log_proportions: torch.Tensor) -> torch.Tensor:
    """[n, K]: log pi_k + log N(w_i; mu_k, sigma_k^2) for a flat w."""
    z = (w.reshape(-1, 1) - means) / scales
    return log_proportions - 0.5 * z * z - torch.log(scales) - _HALF_LOG_2PI


def _moment_groups(values: np.ndarray, groups: int):
    """(mean, count, variance) float64 tensors of runs of consecutive sorted values, cut at
    `groups` equal-count and `groups` equal-width boundaries: no group holds more than
    1/groups of the values or spans more than 1/groups of the range (so none straddles a gap
    between clusters)."""
    x = np.sort(values)
    by_count = np.linspace(0, x.size, min(groups, x.size) + 1).round().astype(np.int64)
    cuts = np.linspace(x[0], x[-1], min(groups, x.size) + 1)[1:-1]
    by_width = np.searchsorted(x, cuts, side="right")
    edges = np.unique(np.concatenate([by_count, by_width]))
    count = np.diff(edges).astype(np.float64)
    mean = np.add.reduceat(x, edges[:-1]) / count
    variance = np.add.reduceat((x - np.repeat(mean, np.diff(edges))) ** 2, edges[:-1]) / count
    return tuple(torch.from_numpy(a) for a in (mean, count, variance))


class GMMQuantizer(torch.nn.Module):
    """Per-tensor Gaussian mixture quantizer with K = 2**bits components, mean 0 pinned.

    Requires a non-empty floating `weight` with finite values and bits in 1..8. Initialization is
    DGMS's: k-means with a pinned zero centre (means), cluster fractions (proportions) and
    within-cluster std (scales, floored at REL_SCALE_FLOOR * std(weight)). Learnable:
    `free_means` [K-1], `raw_scales` [K], `mix_logits` [K]; `tau` and `chunk` are plain
    attributes. Parameters live on the weight's device in float32.

    >>> w = torch.randn(64, 32, requires_grad=True)
    >>> q = GMMQuantizer(w, bits=2)
    >>> q.soft_weight(w).sum().backward()      # gradients reach w and the mixture
    >>> q.hard_weight(w)                       # every value is one of q.codebook()
    """

    def __init__(self, weight: torch.Tensor, bits: int, *, tau: float = 0.01,
                 chunk: int = 1 << 16, seed: int = 0, grid: int | None = None):
        super().__init__()
        if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
            raise ValueError(f"bits must be an int in 1..8, got {bits!r}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.bits, self.tau, self.chunk, self.seed = int(bits), float(tau), int(chunk), seed
        self.grid = grid  # soft weights by interpolation on this many points (None: exact)
        values = weight.detach().to("cpu", torch.float64).numpy().reshape(-1)
        spread = float(values.std()) if values.size else 0.0
        self.scale_floor = max(REL_SCALE_FLOOR * spread, 1e-8)
        means, scales, proportions = self._kmeans_init(values, 1 << self.bits, seed)
        options = {"dtype": torch.float32, "device": weight.device}
        self.free_means = torch.nn.Parameter(torch.tensor(means[1:], **options))
        self.raw_scales = torch.nn.Parameter(torch.tensor(_inverse_softplus(scales), **options))
        self.mix_logits = torch.nn.Parameter(torch.tensor(np.log(proportions), **options))

    def _kmeans_init(self, values: np.ndarray, k: int, seed: int):
        """(means with means[0] == 0, within-cluster std, cluster fractions), float64[k]."""
        centres = kmeans_1d(values, k, pin_zero=True, seed=seed)
        zero = int(np.argmin(np.abs(centres)))
        means = np.concatenate([[0.0], np.delete(centres, zero)])
        index = assign_nearest(values, means)
        counts = np.bincount(index, minlength=k).astype(np.float64)
        squares = np.bincount(index, (values - means[index]) ** 2, minlength=k)
        scales = np.sqrt(squares / np.maximum(counts, 1))
        proportions = np.maximum(counts / max(values.size, 1), MIN_PROPORTION)
        return means, np.maximum(scales, self.scale_floor), proportions / proportions.sum()

    # -- the mixture ------------------------------------------------------------------------

    @property
    def num_components(self) -> int:
        """K = 2**bits."""
        return 1 << self.bits

    @property
    def means(self) -> torch.Tensor:
        """[K] component means; means[0] is exactly 0 (it is not a parameter)."""
        return torch.cat([self.free_means.new_zeros(1), self.free_means])

    @property
    def scales(self) -> torch.Tensor:
        """[K] component standard deviations, softplus(raw_scales) + SCALE_EPS > 0."""
        return F.softplus(self.raw_scales) + SCALE_EPS

    @property
    def proportions(self) -> torch.Tensor:
        """[K] mixing proportions, softmax(mix_logits): positive, summing to 1."""
        return torch.softmax(self.mix_logits, dim=0)

    def log_responsibilities(self, w_flat: torch.Tensor) -> torch.Tensor:
        """[n, K] log posterior of each component for each value of `w_flat` (any shape,
        flattened). Computed in log space with logsumexp, so rows are finite and exp-sum to 1
        even where every component's pdf underflows (tiny scales, far-away values)."""
        w = w_flat.reshape(-1).to(self.free_means.dtype)
        joint = _log_joint(w, self.means, self.scales, torch.log_softmax(self.mix_logits, 0))
        return joint - torch.logsumexp(joint, dim=1, keepdim=True)

    def log_likelihood(self, weight: torch.Tensor) -> float:
        """Mean log-density of `weight`'s values under the mixture (chunked, no grad)."""
        total = 0.0
        with torch.no_grad():
            log_props = torch.log_softmax(self.mix_logits, 0)
            for part in weight.reshape(-1).split(self.chunk):
                joint = _log_joint(part.to(self.free_means.dtype), self.means, self.scales,
                                   log_props)
                total += float(torch.logsumexp(joint, dim=1).double().sum())
        return total / max(weight.numel(), 1)

    # -- soft (training) and hard (deployment) weights --------------------------------------

    def _soft_chunk(self, w: torch.Tensor) -> torch.Tensor:
        responsibility = self.log_responsibilities(w).exp()
        return torch.softmax(responsibility / self.tau, dim=1) @ self.means

    def soft_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """DGMS's training weight: sum_k softmax_k(r_k / tau) * mu_k per value, `weight`'s
        shape and dtype, differentiable w.r.t. `weight` and every mixture parameter.

        Works `chunk` values at a time; with autograd on, each chunk is checkpointed, so the
        backward pass keeps O(chunk * K) intermediates instead of O(numel * K)."""
        flat = weight.reshape(-1)
        if self.grid is not None and flat.numel() > 4 * self.grid:
            return self._interpolated(flat).reshape(weight.shape).to(weight.dtype)
        track = torch.is_grad_enabled() and (
            weight.requires_grad or any(p.requires_grad for p in self.parameters()))
        pieces = [checkpoint(self._soft_chunk, part, use_reentrant=False) if track
                  else self._soft_chunk(part) for part in flat.split(self.chunk)]
        if not pieces:
            return weight.clone()
        return torch.cat(pieces).reshape(weight.shape).to(weight.dtype)

    def _interpolated(self, flat: torch.Tensor) -> torch.Tensor:
        """Soft weights of `flat` read off a piecewise-linear table of the exact soft weight
        on `grid` evenly spaced points over its range. The soft weight is a smooth function of
        the value alone, so this is exact at the grid points, O(numel + grid*K) instead of
        O(numel*K), and still differentiable: w.r.t. the mixture through the table, w.r.t. the
        values through the interpolation slope."""
        lo, hi = float(flat.detach().min()), float(flat.detach().max())
        if hi <= lo:
            return self._soft_chunk(flat)
        points = torch.linspace(lo, hi, self.grid, dtype=self.free_means.dtype,
                                device=flat.device)
        table = self._soft_chunk(points)
        position = (flat.to(points.dtype) - lo) * ((self.grid - 1) / (hi - lo))
        left = position.detach().floor().clamp(0, self.grid - 2).long()
        frac = position - left
        return table[left] * (1 - frac) + table[left + 1] * frac

    def hard_indices(self, weight: torch.Tensor) -> torch.Tensor:
        """int64 tensor of `weight`'s shape: the most responsible component per value
        (= argmax of the soft indicator); index 0 is the zero component."""
        with torch.no_grad():
            parts = [self.log_responsibilities(part).argmax(dim=1)
                     for part in weight.reshape(-1).split(self.chunk)]
            flat = torch.cat(parts) if parts else weight.new_zeros(0, dtype=torch.int64)
        return flat.reshape(weight.shape)

    def codebook(self) -> torch.Tensor:
        """float32[K] detached component means; codebook()[0] == 0."""
        return self.means.detach().to(torch.float32)

    def hard_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """The deployed weight: codebook()[hard_indices(weight)], `weight`'s shape and dtype."""
        return self.codebook()[self.hard_indices(weight)].to(weight.dtype)

    def zero_fraction(self, weight: torch.Tensor) -> float:
        """Fraction of `weight`'s values that the hard weight prunes to the zero component."""
        return float((self.hard_indices(weight) == 0).double().mean()) if weight.numel() else 0.0

    # -- post-training fit ------------------------------------------------------------------

    def fit(self, weight: torch.Tensor, steps: int = 100, *, tol: float = 1e-7,
            groups: int | None = None, max_samples: int = 1 << 20) -> GMMQuantizer:
        """Maximum-likelihood fit of the mixture to `weight` by EM, without data; returns self.

        Runs up to `steps` EM iterations in float64 and stops early once the mean
        log-likelihood gains less than `tol` (relative). For speed the E-step runs on runs of
        consecutive sorted values (at most 2 * `groups`, default max(2048, 8 K); see
        `_moment_groups`), each standing for its count, mean and variance (the M-step adds the
        variance back, so second moments stay exact); small tensors are fitted value by value.
        Larger tensors are first subsampled to `max_samples` values (seeded). mu_0 stays
        exactly 0 (its M-step only updates sigma_0 and pi_0); scales keep the init floor and
        proportions MIN_PROPORTION, so no component collapses."""
        values = weight.detach().reshape(-1).to("cpu", torch.float64).numpy()
        if values.size == 0:
            return self
        if values.size > max_samples:
            values = np.random.default_rng(self.seed).choice(values, max_samples, replace=False)
        data = _moment_groups(values, groups or max(2048, 8 * self.num_components))
        with torch.no_grad():
            means = self.means.double().cpu()
            scales = self.scales.double().cpu()
            log_props = torch.log_softmax(self.mix_logits.double().cpu(), 0)
            previous = -math.inf
            for _ in range(steps):
                stats, current = self._em_statistics(data, means, scales, log_props)
                means, scales, log_props = self._m_step(means, *stats, values.size)
                if current - previous <= tol * abs(current):
                    break
                previous = current
            self.free_means.copy_(means[1:])
            self.raw_scales.copy_(torch.from_numpy(_inverse_softplus(
                (scales - SCALE_EPS).clamp_min(1e-30).numpy())))
            self.mix_logits.copy_(log_props)
        return self

    def _em_statistics(self, data, means, scales, log_props):
        """E-step sums (r_k, r_k (w - mu_k), r_k (w - mu_k)^2), each group weighted by its
        count, and the mean log-likelihood of the group centres."""
        count, first, second = (torch.zeros_like(means) for _ in range(3))
        total, n = 0.0, 0.0
        for centre, weight, spread in zip(*(part.split(self.chunk) for part in data)):
            joint = _log_joint(centre, means, scales, log_props)
            norm = torch.logsumexp(joint, dim=1, keepdim=True)
            responsibility = (joint - norm).exp() * weight.reshape(-1, 1)
            offset = centre.reshape(-1, 1) - means
            count += responsibility.sum(0)
            first += (responsibility * offset).sum(0)
            second += (responsibility * (offset * offset + spread.reshape(-1, 1))).sum(0)
            total += float((norm.reshape(-1) * weight).sum())
            n += float(weight.sum())
        return (count, first, second), total / n

    def _m_step(self, means, count, first, second, n):
        """New (means, scales, log proportions) from the E-step sums around the old means."""
        safe = count.clamp_min(1e-12)
        shift = torch.where(count > 1e-12, first / safe, torch.zeros_like(first))
        shift[0] = 0.0  # the zero component's mean is pinned
        # sum r (w - mu_new)^2 = sum r (w - mu_old)^2 - N_k (mu_new - mu_old)^2
        variance = (second / safe - shift * shift).clamp_min(0.0)
        scales = variance.sqrt().clamp_min(self.scale_floor)
        proportions = (count / n).clamp_min(MIN_PROPORTION)
        return means + shift, scales, torch.log(proportions / proportions.sum())
