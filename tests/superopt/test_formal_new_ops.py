"""The formal verifier on the activation, scalar and row-norm ops: fused µGraphs using gelu,
mul_scalar / add_scalar, softmax, layer_norm and silu are proven equal to IR graphs, and
their wrong twins are not. Every candidate is also run against the IR reference interpreter,
so a "proven" here is known to be right and a "not proven" wrong twin is known to differ."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir.interpreter import interpret
from mlc.compiler.superopt.mugraph import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    FloatArith,
    KernelOp,
    MuGraph,
    run_mugraph,
)
from mlc.compiler.superopt.verify.formal import (
    evaluate,
    lift_mugraph,
    name_sizes,
    plain,
    prove_mugraph,
    prove_terms,
)

R = -1  # imap/omap/fmap: replicate / unused / no loop
X_SHAPE, W_SHAPE = (8, 32), (32, 16)


def block_graph(name, shapes, grid, forloop_range, tiles, ops, saves) -> MuGraph:
    """A one-kernel µGraph with output "Y" from compact rows: tiles (name, source, imap,
    fmap), ops (op, inputs, output[, attrs]), saves (tile, omap)."""
    block = BlockGraph(
        grid, forloop_range, tuple(BlockInput(*row) for row in tiles),
        tuple(BlockOp(op, tuple(ins), out, *rest) for op, ins, out, *rest in ops),
        tuple(BlockOutput(*row) for row in saves))
    kernel = KernelOp("block", tuple(shapes), ("Y",), block=block)
    return MuGraph(name, shapes, (kernel,), ("Y",))


def fused_matmul(epilogue, prologue=(), grid=(2, 1, 1), columns=True) -> MuGraph:
    """Y = epilogue(sum over a 4-step K loop of prologue(x) @ w): the grid splits W's columns
    (columns=True, X replicated) or X's rows (W replicated)."""
    x_imap, w_imap, omap = ((R, R, R), (1, R, R), (1, R, R)) if columns else \
        ((0, R, R), (R, R, R), (0, R, R))
    ops = [*prologue, ("matmul", [prologue[-1][2] if prologue else "x", "w"], "p"),
           ("accum_sum", ["p"], "acc"), *epilogue]
    return block_graph("fused", {"X": X_SHAPE, "W": W_SHAPE}, grid, 4,
                       [("x", 0, x_imap, 1), ("w", 1, w_imap, 0)], ops,
                       [(ops[-1][2], omap)])


def reference(*tail) -> object:
    """IR graph Y = tail(X @ W): each tail entry is (op, extra inputs builder, attrs)."""
    builder = GraphBuilder("reference")
    value = builder.op("MatMul", builder.input("X", X_SHAPE), builder.input("W", W_SHAPE))
    for index, (op, extra, attrs) in enumerate(tail):
        name = "Y" if index == len(tail) - 1 else None
        value = builder.op(op, value, *extra(builder, value), name=name, **attrs)
    return builder.build(value)


def const(value):
    return lambda builder, _: [builder.const(value)]


def nothing(builder, _):
    return []


def numerically_equal(graph: MuGraph, ir) -> bool:
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal(s).astype(np.float32) for n, s in graph.inputs.items()}
    want = interpret(ir, inputs, float64=True)["Y"]
    got = run_mugraph(graph, {k: v.astype(np.float64) for k, v in inputs.items()},
                      FloatArith(np.float64))["Y"]
    return bool(np.allclose(got, want, rtol=1e-9, atol=1e-9))


CASES = {  # name -> (candidate, reference, is it right?)
    "gelu-after-the-loop": (
        lambda: fused_matmul([("gelu", ["acc"], "y")]),
        lambda: reference(("Gelu", nothing, {})), True),
    "gelu-of-partial-sums": (
        lambda: block_graph("fused", {"X": X_SHAPE, "W": W_SHAPE}, (2, 1, 1), 4,
                            [("x", 0, (R, R, R), 1), ("w", 1, (1, R, R), 0)],
                            [("matmul", ["x", "w"], "p"), ("gelu", ["p"], "g"),
                             ("accum_sum", ["g"], "y")], [("y", (1, R, R))]),
        lambda: reference(("Gelu", nothing, {})), False),
    "gelu-tanh-for-gelu": (
        lambda: fused_matmul([("gelu_tanh", ["acc"], "y")]),
        lambda: reference(("Gelu", nothing, {})), False),
    "gelu-tanh": (
        lambda: fused_matmul([("gelu_tanh", ["acc"], "y")]),
        lambda: reference(("Gelu", nothing, {"approximate": "tanh"})), True),
    "scale-before-the-matmul": (
        lambda: fused_matmul([], prologue=[("mul_scalar", ["x"], "xs", {"scale": 0.25})]),
        lambda: reference(("Mul", const(0.25), {})), True),
    "wrong-scale": (
        lambda: fused_matmul([("mul_scalar", ["acc"], "y", {"scale": 0.5})]),
        lambda: reference(("Mul", const(0.25), {})), False),
    "shift-after-the-loop": (
        lambda: fused_matmul([("add_scalar", ["acc"], "y", {"value": 0.5})]),
        lambda: reference(("Add", const(0.5), {})), True),
    "shift-every-iteration": (
        lambda: block_graph("fused", {"X": X_SHAPE, "W": W_SHAPE}, (2, 1, 1), 4,
                            [("x", 0, (R, R, R), 1), ("w", 1, (1, R, R), 0)],
                            [("matmul", ["x", "w"], "p"),
                             ("add_scalar", ["p"], "q", {"value": 0.5}),
                             ("accum_sum", ["q"], "y")], [("y", (1, R, R))]),
        lambda: reference(("Add", const(0.5), {})), False),
    "sigmoid-then-tanh": (
        lambda: fused_matmul([("sigmoid", ["acc"], "s"), ("tanh", ["s"], "y")]),
        lambda: reference(("Sigmoid", nothing, {}), ("Tanh", nothing, {})), True),
    "silu-for-x-times-sigmoid": (
        lambda: fused_matmul([("silu", ["acc"], "y")]),
        lambda: reference(("Sigmoid", nothing, {}),
                          ("Mul", lambda builder, value: [builder.nodes[0].outputs[0]], {})),
        True),
    "softmax-on-whole-rows": (
        lambda: fused_matmul([("softmax", ["acc"], "y")], columns=False),
        lambda: reference(("Softmax", nothing, {"axis": -1})), True),
    "softmax-on-column-chunks": (
        lambda: fused_matmul([("softmax", ["acc"], "y")]),
        lambda: reference(("Softmax", nothing, {"axis": -1})), False),
    "layer-norm-on-whole-rows": (
        lambda: fused_matmul([("layer_norm", ["acc"], "y", {"eps": 1e-3})], columns=False),
        lambda: reference(("LayerNormalization",
                           lambda b, _: [b.const(np.ones(16)), b.const(np.zeros(16))],
                           {"epsilon": 1e-3})), True),
    "layer-norm-wrong-eps": (
        lambda: fused_matmul([("layer_norm", ["acc"], "y", {"eps": 1e-5})], columns=False),
        lambda: reference(("LayerNormalization",
                           lambda b, _: [b.const(np.ones(16)), b.const(np.zeros(16))],
                           {"epsilon": 1e-3})), False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_proven_exactly_when_right(name):
    build, build_reference, right = CASES[name]
    graph, ir = build(), build_reference()
    assert numerically_equal(graph, ir) == right, "the case itself is mislabelled"
    proof = prove_mugraph(graph, ir, max_seconds=5.0)
    assert proof.proven == right, proof.reason
    assert proof.proven or proof.reason


def test_library_ops_lift_to_what_the_interpreter_computes():
    """Lifted terms of the new library and tile ops evaluate to the interpreter's values."""
    ops = (KernelOp("Gelu", ("X",), ("A",)), KernelOp("Scale", ("A",), ("B",), {"scale": 0.5}),
           KernelOp("Shift", ("B",), ("C",), {"value": -0.25}),
           KernelOp("Sigmoid", ("C",), ("D",)), KernelOp("Tanh", ("X",), ("E",)),
           KernelOp("Erf", ("E",), ("F",)), KernelOp("Add", ("D", "F"), ("G",)),
           KernelOp("Gelu", ("G",), ("Y",), {"approximate": "tanh"}))
    library = MuGraph("library", {"X": (4, 6)}, ops, ("Y",))
    fused = fused_matmul([("layer_norm", ["acc"], "n", {"eps": 0.1}),
                          ("softmax", ["n"], "s"), ("erf", ["s"], "y")], columns=False)
    rng = np.random.default_rng(1)
    for graph in (library, fused):
        inputs = {n: rng.standard_normal(s) for n, s in graph.inputs.items()}
        want = run_mugraph(graph, inputs, FloatArith())["Y"]
        term = lift_mugraph(graph)["Y"]
        got = evaluate(term, {k: plain(v) for k, v in inputs.items()}, name_sizes(graph))
        np.testing.assert_allclose(got.array, want, rtol=1e-9, atol=1e-12)


def test_constants_are_compared_by_value_not_folded():
    """scale(scale(x, 2), 3) equals scale(x, 6) but the rules do not fold constants: the
    prover says "not proven" (the caller then falls back to testing), it does not raise."""
    x = ("var", "X")
    proof = prove_terms({"Y": ("scale", ("scale", x, "2.0"), "3.0")},
                        {"Y": ("scale", x, "6.0")}, max_seconds=2.0)
    assert not proof.proven and proof.reason
    same = prove_terms({"Y": ("scale", x, repr(0.1 + 0.2))}, {"Y": ("scale", x, "0.3")})
    assert not same.proven  # 0.1 + 0.2 != 0.3 in floats: different constants
