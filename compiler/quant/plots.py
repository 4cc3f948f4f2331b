"""A layer's weight histogram with the fitted Gaussian components, as a standalone SVG."""

from __future__ import annotations

from html import escape

import numpy as np

WIDTH, HEIGHT, PAD = 640, 300, 40


def histogram_svg(weight: np.ndarray, means: np.ndarray, scales: np.ndarray,
                  proportions: np.ndarray, title: str, bins: int = 120) -> str:
    """Density histogram of `weight` (grey), each component's weighted Gaussian density
    (blue; the pinned zero component red) and the codebook values (ticks on the axis)."""
    values = np.asarray(weight, np.float64).ravel()
    lo, hi = np.percentile(values, [0.05, 99.95]) if values.size > 1000 else (values.min(),
                                                                             values.max())
    span = max(hi - lo, 1e-12)
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    density, edges = np.histogram(values, bins=bins, range=(lo, hi), density=True)
    grid = np.linspace(lo, hi, 400)
    curves = [p * np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
              for m, s, p in zip(means, scales, proportions)]
    top = max(density.max(), max(min(c.max(), 3 * density.max()) for c in curves)) * 1.05

    def x(v):
        return PAD + (v - lo) / (hi - lo) * (WIDTH - 2 * PAD)

    def y(d):
        return HEIGHT - PAD - min(d, top) / top * (HEIGHT - 2 * PAD)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{PAD}" y="16">{escape(title)}</text>']
    for d, left, right in zip(density, edges[:-1], edges[1:]):
        parts.append(f'<rect x="{x(left):.1f}" y="{y(d):.1f}" width="{x(right) - x(left):.2f}" '
                     f'height="{HEIGHT - PAD - y(d):.1f}" fill="#bbb"/>')
    for k, curve in enumerate(curves):
        points = " ".join(f"{x(g):.1f},{y(c):.1f}" for g, c in zip(grid, curve))
        color = "#d62728" if k == 0 and means[0] == 0 else "#1f77b4"
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" '
                     'stroke-width="1.2"/>')
    for m in means:
        if lo <= m <= hi:
            parts.append(f'<line x1="{x(m):.1f}" x2="{x(m):.1f}" y1="{HEIGHT - PAD}" '
                         f'y2="{HEIGHT - PAD + 6}" stroke="black"/>')
    parts += [f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{HEIGHT - PAD}" y2="{HEIGHT - PAD}" '
              'stroke="black"/>',
              f'<text x="{PAD}" y="{HEIGHT - 12}">{lo:.3g}</text>',
              f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" text-anchor="end">{hi:.3g}</text>',
              f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">weight value '
              f'(grey: histogram; blue: components; red: the zero component)</text>', "</svg>"]
    return "\n".join(parts) + "\n"
