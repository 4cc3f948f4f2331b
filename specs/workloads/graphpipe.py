"""GraphPipe's multi-branch training workloads (ASPLOS'25 §7): MMT, DLRM, CANDLE-Uno, plus a
tiny multi-branch model that trains on CPU.

Weights are graph weights. The large models use zero-stride (broadcast) arrays so that building
and planning them costs no memory; `multibranch_small` has seeded random weights.
"""

from __future__ import annotations

import numpy as np

from mlc.compiler.frontends.builder import GraphBuilder

from .common import Workload


def _weight(g: GraphBuilder, name: str, shape, lazy: bool = True) -> str:
    if lazy:
        return g.weight(name, np.broadcast_to(np.float32(0.0), tuple(shape)))
    rng = np.random.default_rng(len(g.weights))  # deterministic per weight position
    scale = 1.0 / np.sqrt(shape[0])
    return g.weight(name, (rng.standard_normal(shape) * scale).astype(np.float32))


def _dense(g: GraphBuilder, x: str, width_in: int, width_out: int, prefix: str,
           lazy: bool = True) -> str:
    w = _weight(g, f"{prefix}.w", (width_in, width_out), lazy)
    return g.op("Relu", g.op("MatMul", x, w, name=f"{prefix}.matmul"), name=f"{prefix}.relu")


def _transformer_layer(g: GraphBuilder, x: str, p: str, hidden: int, ffn: int, heads: int,
                       batch: int, seq: int) -> str:
    def norm(value: str, tag: str) -> str:
        scale = _weight(g, f"{p}.{tag}.scale", (hidden,))
        return g.op("LayerNormalization", value, scale, name=f"{p}.{tag}")

    def heads_first(value: str, tag: str) -> str:
        split = g.op("Reshape", value, shape=(batch, seq, heads, hidden // heads),
                     name=f"{p}.{tag}.split")
        return g.op("Transpose", split, perm=(0, 2, 1, 3), name=f"{p}.{tag}.heads")

    h = norm(x, "ln1")
    q, k, v = (heads_first(g.op("MatMul", h, _weight(g, f"{p}.w{t}", (hidden, hidden)),
                                name=f"{p}.{t}"), t) for t in "qkv")
    k_t = g.op("Transpose", k, perm=(0, 1, 3, 2), name=f"{p}.k_t")
    probs = g.op("Softmax", g.op("MatMul", q, k_t, name=f"{p}.scores"), name=f"{p}.softmax")
    ctx = g.op("Transpose", g.op("MatMul", probs, v, name=f"{p}.ctx"), perm=(0, 2, 1, 3),
               name=f"{p}.ctx_t")
    ctx = g.op("Reshape", ctx, shape=(batch, seq, hidden), name=f"{p}.merge")
    attn = g.op("MatMul", ctx, _weight(g, f"{p}.wo", (hidden, hidden)), name=f"{p}.o")
    x = g.op("Add", x, attn, name=f"{p}.res1")
    up = g.op("Relu", g.op("MatMul", norm(x, "ln2"), _weight(g, f"{p}.w1", (hidden, ffn)),
                           name=f"{p}.up"), name=f"{p}.act")
    down = g.op("MatMul", up, _weight(g, f"{p}.w2", (ffn, hidden)), name=f"{p}.down")
    return g.op("Add", x, down, name=f"{p}.res2")


def mmt(g: GraphBuilder, *, batch: int, branches: int, layers: int, hidden: int, ffn: int,
        heads: int, seq: int) -> str:
    """mmt: multi-modal transformer, branches=4 x layers=8 transformer layers (hidden=1024,
    ffn=4096, heads=16, seq=256), branch outputs concatenated, then a linear head."""
    outs = []
    for b in range(branches):
        x = g.input(f"X{b}", (batch, seq, hidden))
        for layer in range(layers):
            x = _transformer_layer(g, x, f"b{b}.l{layer}", hidden, ffn, heads, batch, seq)
        outs.append(x)
    cat = g.op("Concat", *outs, axis=-1, name="concat")
    return g.op("MatMul", cat, _weight(g, "head.w", (branches * hidden, hidden)), name="head")


def dlrm(g: GraphBuilder, *, batch: int, dense: int, sparse: int, layers: int, width: int,
         dim: int, bag: int, rows: int) -> str:
    """dlrm: dense=7 MLP branches of layers=4 x width=4096 and sparse=7 embedding bags
    (dim=64, bag=100, rows=100000: Gather + ReduceSum), concatenated (interaction), top MLP."""
    outs = []
    for b in range(dense):
        x = g.input(f"dense{b}", (batch, width))
        for layer in range(layers):
            x = _dense(g, x, width, width, f"mlp{b}.l{layer}")
        outs.append(x)
    for b in range(sparse):
        idx = g.input(f"idx{b}", (batch, bag), dtype="int64")
        table = _weight(g, f"emb{b}.table", (rows, dim))
        rows_out = g.op("Gather", table, idx, axis=0, name=f"emb{b}.gather")
        outs.append(g.op("ReduceSum", rows_out, axes=(1,), keepdims=0, name=f"emb{b}.bag"))
    x = g.op("Concat", *outs, axis=-1, name="interaction")
    x = _dense(g, x, dense * width + sparse * dim, width, "top.l0")
    x = _dense(g, x, width, width, "top.l1")
    return g.op("MatMul", x, _weight(g, "top.out.w", (width, 1)), name="top.out")


def candle_uno(g: GraphBuilder, *, batch: int, branches: int, layers: int, width: int) -> str:
    """candle_uno: branches=7 feature towers of layers=4 feed-forward layers (width=4096),
    concatenated, then two fused feed-forward layers and a scalar head."""
    outs = []
    for b in range(branches):
        x = g.input(f"feat{b}", (batch, width))
        for layer in range(layers):
            x = _dense(g, x, width, width, f"tower{b}.l{layer}")
        outs.append(x)
    x = g.op("Concat", *outs, axis=-1, name="concat")
    x = _dense(g, x, branches * width, width, "fused.l0")
    x = _dense(g, x, width, width, "fused.l1")
    return g.op("MatMul", x, _weight(g, "head.w", (width, 1)), name="head")


def multibranch_small(g: GraphBuilder, *, batch: int, branches: int, width: int) -> str:
    """multibranch_small: X(batch=8, width=32) into branches=3 of 2 MatMul+Relu layers,
    concatenated, then a MatMul head to (batch, width). Random weights: trains on CPU."""
    x = g.input("X", (batch, width))
    outs = []
    for b in range(branches):
        h = x
        for layer in range(2):
            h = _dense(g, h, width, width, f"branch{b}.l{layer}", lazy=False)
        outs.append(h)
    cat = g.op("Concat", *outs, axis=-1, name="concat")
    head = _weight(g, "head.w", (branches * width, width), lazy=False)
    return g.op("MatMul", cat, head, name="head")


WORKLOADS: dict[str, Workload] = {
    "mmt": Workload(mmt, {"batch": 8, "branches": 4, "layers": 8, "hidden": 1024,
                          "ffn": 4096, "heads": 16, "seq": 256},
                    {"small": {"batch": 2, "branches": 2, "layers": 2, "hidden": 32,
                               "ffn": 64, "heads": 2, "seq": 8}}),
    "dlrm": Workload(dlrm, {"batch": 64, "dense": 7, "sparse": 7, "layers": 4, "width": 4096,
                            "dim": 64, "bag": 100, "rows": 100000},
                     {"small": {"batch": 4, "dense": 2, "sparse": 2, "layers": 2,
                                "width": 32, "dim": 8, "bag": 4, "rows": 50}}),
    "candle_uno": Workload(candle_uno, {"batch": 64, "branches": 7, "layers": 4, "width": 4096},
                           {"small": {"batch": 4, "branches": 3, "layers": 2, "width": 32}}),
    "multibranch_small": Workload(multibranch_small, {"batch": 8, "branches": 3, "width": 32},
                                  {"small": {}}),
}
