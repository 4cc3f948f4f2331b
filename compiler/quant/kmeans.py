"""One-dimensional k-means (Lloyd) for weight sharing and for initializing the DGMS mixture.

In 1-D every cluster is an interval between midpoints of neighbouring centres, so one Lloyd
step on sorted data is a binary search per centre plus segment sums: O(k log n), not O(n k).
"""

from __future__ import annotations

import numpy as np

__all__ = ["assign_nearest", "kmeans_1d"]


def kmeans_1d(values: np.ndarray, k: int, *, pin_zero: bool = False, iters: int = 50,
              seed: int = 0, max_samples: int = 200_000) -> np.ndarray:
    """k centres of `values` (any shape, finite, non-empty) by Lloyd's algorithm.

    Requires k >= 1. Fits on a seeded random subsample of `max_samples` values when there are
    more; centres start at the (i + 1/2)/k quantiles, so the result is deterministic. An
    empty cluster moves to the value worst served by the current centres (largest squared
    error), which lets k centres cover k distinct values exactly; with fewer distinct values
    than k the spare centres stay unused where they were (repeats allowed), never NaN.

    Ensures: float64[k] sorted ascending. With `pin_zero`, the initial centre nearest 0 is
    replaced by exactly 0.0 and stays fixed through the iterations (the pruning component).

    >>> kmeans_1d(np.array([-1.0, -1.1, 2.0, 2.1]), 2)
    array([-1.05,  2.05])
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("kmeans_1d needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError("kmeans_1d needs finite values (found NaN or inf)")
    if x.size > max_samples:
        x = np.random.default_rng(seed).choice(x, size=max_samples, replace=False)
    x = np.sort(x)
    centres = np.quantile(x, (np.arange(k) + 0.5) / k)
    pinned = np.zeros(k, dtype=bool)
    if pin_zero:
        nearest = int(np.argmin(np.abs(centres)))
        centres[nearest], pinned[nearest] = 0.0, True
    for _ in range(iters):
        order = np.argsort(centres, kind="stable")
        centres, pinned = centres[order], pinned[order]
        updated = _lloyd_step(x, centres, pinned)
        if np.array_equal(updated, centres):
            break
        centres = updated
    return np.sort(centres)


def _cluster_bounds(sorted_values: np.ndarray, sorted_centres: np.ndarray) -> np.ndarray:
    """bounds[j]:bounds[j+1] is the slice of `sorted_values` nearest to centre j (ties go to
    the lower centre, as in `assign_nearest`)."""
    midpoints = (sorted_centres[:-1] + sorted_centres[1:]) / 2
    inner = np.searchsorted(sorted_values, midpoints, side="right")
    return np.concatenate([[0], inner, [sorted_values.size]])


def _lloyd_step(x: np.ndarray, centres: np.ndarray, pinned: np.ndarray) -> np.ndarray:
    """One assignment + update on sorted `x` with sorted `centres`; pinned centres stay."""
    bounds = _cluster_bounds(x, centres)
    counts = np.diff(bounds)
    nonempty = counts > 0
    sums = np.zeros_like(centres)
    # reduceat over the non-empty segments (they tile x in order) sums each segment on its
    # own, so a cluster of identical values gets exactly that value back
    sums[nonempty] = np.add.reduceat(x, bounds[:-1][nonempty])
    updated = centres.copy()
    movable = nonempty & ~pinned
    updated[movable] = sums[movable] / counts[movable]
    empty = ~nonempty & ~pinned
    if empty.any():
        updated[empty] = _reseed(x, np.repeat(updated, counts), updated[empty])
    return updated


def _reseed(x: np.ndarray, assigned: np.ndarray, stale: np.ndarray) -> np.ndarray:
    """New positions for empty clusters: the distinct values with the largest error under
    `assigned` (each value's centre); clusters left over keep their `stale` position."""
    errors = (x - assigned) ** 2
    order = np.argsort(-errors, kind="stable")
    candidates = x[order][errors[order] > 0]
    _, first = np.unique(candidates, return_index=True)
    picks = candidates[np.sort(first)][:stale.size]
    fresh = stale.copy()
    fresh[:picks.size] = picks
    return fresh


def assign_nearest(values: np.ndarray, centres: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Index of the nearest centre for every value, int64 with `values`' shape.

    Requires a non-empty `centres` (any order, repeats allowed). Ties go to the smaller
    centre, and among equal centres to the lowest index. Works `chunk` values at a time by
    binary search over the sorted centres' midpoints, so extra memory is O(chunk + k).

    >>> assign_nearest(np.array([0.1, 0.9, 0.4]), np.array([1.0, 0.0]))
    array([1, 0, 1])
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1)
    if centres.size == 0:
        raise ValueError("assign_nearest needs at least one centre")
    order = np.argsort(centres, kind="stable")
    ordered = centres[order]
    midpoints = (ordered[:-1] + ordered[1:]) / 2
    flat = np.asarray(values).reshape(-1)
    out = np.empty(flat.size, dtype=np.int64)
    for start in range(0, flat.size, chunk):
        part = flat[start:start + chunk].astype(np.float64)
        out[start:start + chunk] = order[np.searchsorted(midpoints, part, side="left")]
    return out.reshape(np.shape(values))
