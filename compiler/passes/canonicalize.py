"""Fold the activations exporters spell out elementwise back into the IR's named ops.

ONNX has no SiLU before opset 24's Swish and no Gelu before opset 20, so exporters write
silu(x) as Mul(x, Sigmoid(x)), BERT's GELU as 0.5 * x * (1 + Erf(x / sqrt2)) and GPT-2's
gelu_new with Pow(x, 3) and Tanh, each in whatever order and with whatever constants the
model's Python happened to use. Rather than match node patterns, this pass recognizes a
"cone" (elementwise nodes computing a function of one tensor x and scalar constants) by
evaluating it in float64 on sample points and comparing with the functions in TARGETS.
"""

from __future__ import annotations

import math

import numpy as np

from mlc.compiler.ir import reference as ref
from mlc.compiler.ir.graph import Graph, Node
from mlc.compiler.ir.ops import compute

from .rewrite import Editor, GraphView, Rewrite

# Ops a cone may contain: elementwise, no attributes that change the function's shape.
CONE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "Exp",
                      "Sqrt", "Neg", "Reciprocal", "Identity"})
MAX_CONE_NODES = 16  # the longest spelling seen (gelu_new) has 8 nodes

# x in [-8, 8] covers where the functions differ; the tails check saturation.
SAMPLES = np.concatenate([np.linspace(-8.0, 8.0, 161), [-30.0, -12.0, 1e-3, -1e-3, 12.0, 30.0]])
# |cone - target| <= TOLERANCE * (1 + |target|): loose enough for float32-rounded constants
# (1e-7 relative), tight enough that erf- and tanh-GELU (which differ by ~1e-3) stay apart.
TOLERANCE = 1e-5


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _gelu_erf(x):
    return 0.5 * x * (1.0 + ref.erf(x / math.sqrt(2.0)))


# (IR op, attrs, float64 reference): the named ops a cone may turn into, checked in order.
TARGETS = (
    ("Gelu", {"approximate": "none"}, _gelu_erf),
    ("Gelu", {"approximate": "tanh"}, _gelu_tanh),
    ("Silu", {}, lambda x: x * ref.sigmoid(x)),
    ("Sigmoid", {}, ref.sigmoid),
    ("Tanh", {}, np.tanh),
)
EXPECTED = [fn(SAMPLES) for _, _, fn in TARGETS]


def _max_cone(view: GraphView, root: Node) -> list[Node]:
    """Root plus the elementwise nodes feeding it (through cone ops), at most MAX_CONE_NODES."""
    cone, stack, seen = [], [root], {root.name}
    while stack and len(cone) < MAX_CONE_NODES:
        node = stack.pop()
        cone.append(node)
        for name in node.inputs:
            producer = view.producers.get(name)
            if producer is not None and producer.name not in seen \
                    and producer.op in CONE_OPS and len(producer.outputs) == 1:
                seen.add(producer.name)
                stack.append(producer)
    return cone


def _sub_cone(view: GraphView, root: Node, leaf: str, allowed: set[str]) -> list[Node] | None:
    """The nodes computing root from `leaf` and scalar constants only, in graph order, when
    every intermediate value is read only inside them; else None."""
    found: dict[str, Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.name in found:
            continue
        found[node.name] = node
        for name in node.inputs:
            if name == leaf or view.scalar(name) is not None:
                continue
            producer = view.producers.get(name)
            if producer is None or producer.name not in allowed:
                return None
            stack.append(producer)
    members = set(found)
    for node in found.values():
        if node is not root and not view.private(node.outputs[0], members):
            return None
    order = {node.name: i for i, node in enumerate(view.graph.nodes)}
    return sorted(found.values(), key=lambda node: order[node.name])


def _evaluate(view: GraphView, cone: list[Node], leaf: str) -> np.ndarray | None:
    """The cone's output at SAMPLES (float64), or None when it is not finite everywhere."""
    values = {leaf: SAMPLES}
    with np.errstate(all="ignore"):
        try:
            for node in cone:
                args = [values[name] if name in values else np.float64(view.scalar(name))
                        for name in node.inputs]
                args = [np.asarray(a, dtype=np.float64) for a in args]
                values[node.outputs[0]] = compute(node.op, args, node.attrs)[0]
        except (ValueError, TypeError, IndexError, ArithmeticError):
            return None
    out = np.broadcast_to(values[cone[-1].outputs[0]], SAMPLES.shape)
    return out if np.all(np.isfinite(out)) else None


def _identify(values: np.ndarray) -> tuple[str, dict] | None:
    """The first TARGETS entry the sampled function equals within TOLERANCE."""
    for (op, attrs, _), expected in zip(TARGETS, EXPECTED):
        if np.all(np.abs(values - expected) <= TOLERANCE * (1.0 + np.abs(expected))):
            return op, attrs
    return None


def _match(view: GraphView, root: Node) -> Rewrite | None:
    """The largest cone rooted at `root` that computes one of TARGETS, as a Rewrite."""
    if root.op not in CONE_OPS or len(root.outputs) != 1 or not view.is_float(root.outputs[0]):
        return None
    cone = _max_cone(view, root)
    if len(cone) < 2:
        return None
    allowed = {node.name for node in cone}
    order = {node.name: i for i, node in enumerate(view.graph.nodes)}
    # Leaves produced earliest first: the first that matches gives the largest cone.
    leaves = {name for node in cone for name in node.inputs if view.scalar(name) is None}
    leaves = sorted(leaves, key=lambda v: order.get(getattr(view.producers.get(v), "name", ""),
                                                    -1))
    out_type = view.graph.types[root.outputs[0]]
    for leaf in leaves:
        if view.graph.types[leaf] != out_type:
            continue
        sub = _sub_cone(view, root, leaf, allowed)
        if sub is None or len(sub) < 2:
            continue
        values = _evaluate(view, sub, leaf)
        found = None if values is None else _identify(values)
        if found is not None:
            op, attrs = found
            node = Node(op, (leaf,), root.outputs, attrs, root.name)
            return Rewrite(frozenset(n.name for n in sub), {root.name: (node,)})
    return None


def canonicalize_activations(graph: Graph) -> Graph:
    """Requires a typed Graph. Ensures the same function, with every elementwise cone that
    computes a TARGETS function of one tensor (within TOLERANCE on SAMPLES) replaced by that
    single named op (keeping the root's name and output). Cone nodes whose values are read
    outside the cone or are graph outputs are never absorbed; returns `graph` itself when
    nothing matched."""
    view = GraphView(graph)
    editor = Editor(view)
    for root in reversed(graph.nodes):  # outermost root first: it claims the largest cone
        if not editor.claimed(root.name):
            editor.add(_match(view, root))
    return editor.build()
