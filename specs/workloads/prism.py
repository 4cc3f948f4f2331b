"""Prism's five workloads (`cpp_examples/symbolic/*.cc` in Mirage's main branch), prefixed prism_.

Dense ones sweep n in {8, 16}, d in {1024, 2048, 4096} with square (d, d) weights. Attention
folds heads into the row dims exactly as Prism's reference graph does: Q(b, h*q, d),
K(b, d, h*kv), V(b, h*kv, d), sweeping b in {2, 4}, h in {8, 32}, q in {1, 128} (decode and
prefill), d = 128, and kv = 1024 (the code also sweeps kv = 128).
"""

from __future__ import annotations

from mlc.compiler.frontends.builder import GraphBuilder

from .common import Workload, rms_norm, softmax_attention


def rms_norm_matmul(g: GraphBuilder, *, n: int, d: int) -> str:
    """rms_norm: O = rms_norm(X) @ W, X(n=8, d=4096), W(d, d)."""
    x = g.input("X", (n, d))
    w = g.input("W", (d, d))
    return g.op("MatMul", rms_norm(g, x), w, name="O")


def rmsnorm_mlp(g: GraphBuilder, *, n: int, d: int) -> str:
    """rmsnorm_mlp: O = (rms_norm(X) @ W_up) * (rms_norm(X) @ W_gate), X(n=8, d=4096), W(d, d)."""
    x = g.input("X", (n, d))
    w_up = g.input("W_up", (d, d))
    w_gate = g.input("W_gate", (d, d))
    x_norm = rms_norm(g, x)  # shared by both projections, as in Prism's reference graph
    up = g.op("MatMul", x_norm, w_up)
    return g.op("Mul", up, g.op("MatMul", x_norm, w_gate), name="O")


def swiglu(g: GraphBuilder, *, n: int, d: int) -> str:
    """swiglu: O = silu(X @ W_gate) * (X @ W_up), X(n=8, d=4096), W_gate, W_up(d, d)."""
    x = g.input("X", (n, d))
    w_gate = g.input("W_gate", (d, d))
    w_up = g.input("W_up", (d, d))
    gate = g.op("Silu", g.op("MatMul", x, w_gate))
    return g.op("Mul", gate, g.op("MatMul", x, w_up), name="O")


def _attention_inputs(g: GraphBuilder, b: int, h: int, q: int, kv: int, d: int):
    shapes = {"Q": (b, h * q, d), "K": (b, d, h * kv), "V": (b, h * kv, d)}
    return [g.input(name, shape) for name, shape in shapes.items()]


def attention(g: GraphBuilder, *, b: int, h: int, q: int, kv: int, d: int, safe: int) -> str:
    """attention: O = softmax(Q @ K) @ V, Q(b=2, h*q, d=128), K(b, d, h*kv), V(b, h*kv, d),
    h=8, q=1, kv=1024; safe=1 subtracts the row max before exp."""
    query, keys, values = _attention_inputs(g, b, h, q, kv, d)
    return softmax_attention(g, query, keys, values, safe)


def qk_norm_attention(g: GraphBuilder, *, b: int, h: int, q: int, kv: int, d: int,
                      safe: int) -> str:
    """qk_norm_attention: O = softmax(rms_norm(Q) @ K) @ V, shapes as attention."""
    # Prism's reference is the "Q-norm variant": only Q is normalized (over d).
    query, keys, values = _attention_inputs(g, b, h, q, kv, d)
    return softmax_attention(g, rms_norm(g, query), keys, values, safe)


_DENSE = {"n": 8, "d": 4096}
_DENSE_SMALL = {"small": {"n": 4, "d": 32}}
_DENSE_SWEEP = {"n": (8, 16), "d": (1024, 2048, 4096)}
_ATTENTION = {"b": 2, "h": 8, "q": 1, "kv": 1024, "d": 128, "safe": 0}
_ATTENTION_PRESETS = {"small": {"b": 2, "h": 2, "q": 2, "kv": 8, "d": 16}, "safe": {"safe": 1}}
_ATTENTION_SWEEP = {"b": (2, 4), "h": (8, 32), "q": (1, 128)}

WORKLOADS: dict[str, Workload] = {
    "prism_rms_norm": Workload(rms_norm_matmul, _DENSE, _DENSE_SMALL, sweep=_DENSE_SWEEP),
    "prism_rmsnorm_mlp": Workload(rmsnorm_mlp, _DENSE, _DENSE_SMALL, sweep=_DENSE_SWEEP),
    "prism_swiglu": Workload(swiglu, _DENSE, _DENSE_SMALL, sweep=_DENSE_SWEEP),
    "prism_attention": Workload(attention, _ATTENTION, _ATTENTION_PRESETS, flags=("safe",),
                                sweep=_ATTENTION_SWEEP),
    "prism_qk_norm_attention": Workload(qk_norm_attention, _ATTENTION, _ATTENTION_PRESETS,
                                        flags=("safe",), sweep=_ATTENTION_SWEEP),
}
