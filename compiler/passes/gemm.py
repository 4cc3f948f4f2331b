"""Lower ONNX Gemm to MatMul (+ bias Add): region selection anchors on MatMul only.

Exporters emit Gemm for nn.Linear on 2-D inputs (and MatMul + Add on 3-D ones), so without
this pass the same layer is a region or not depending on the input's rank.
"""

from __future__ import annotations

from mlc.compiler.ir.graph import Graph, Node
from mlc.compiler.ir.types import np_dtype

from .rewrite import Editor, GraphView, Rewrite, scalar_weight


class _GemmLowering:
    """Builds the replacement of one Gemm node; transposed weights are shared across Gemms."""

    def __init__(self, view: GraphView):
        self.view = view
        self.transposed: dict[str, str] = {}  # weight -> its transposed copy

    def transpose(self, name: str, gemm: Node, nodes: list, weights: dict) -> str:
        """`name` transposed: a new weight when it is constant, else a Transpose node."""
        view = self.view
        if name in view.graph.weights:
            if name not in self.transposed:
                self.transposed[name] = view.fresh(f"{name}_T")
                weights[self.transposed[name]] = view.graph.weights[name].T.copy()
            return self.transposed[name]
        out = view.fresh(f"{name}_T")
        nodes.append(Node("Transpose", (name,), (out,), {"perm": (1, 0)},
                          view.fresh(f"{gemm.name}/transpose")))
        return out

    def scale(self, name: str, factor: float, gemm: Node, nodes: list, weights: dict,
              out: str | None = None) -> str:
        """`name` * factor, through a Mul by a new scalar weight."""
        view = self.view
        dtype = np_dtype(view.graph.types[gemm.outputs[0]].dtype)
        const = view.fresh(f"{gemm.name}/scale")
        weights[const] = scalar_weight(factor, dtype)
        out = out or view.fresh(f"{name}_scaled")
        nodes.append(Node("Mul", (name, const), (out,), {}, view.fresh(f"{gemm.name}/mul")))
        return out

    def lower(self, gemm: Node) -> Rewrite | None:
        """MatMul(A', B') [* alpha] [+ C * beta] with A', B' transposed as the attrs say."""
        view = self.view
        attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, **gemm.attrs}
        if not view.is_float(gemm.outputs[0]):
            return None
        nodes: list[Node] = []
        weights: dict = {}
        a, b = gemm.inputs[0], gemm.inputs[1]
        if attrs["transA"]:
            a = self.transpose(a, gemm, nodes, weights)
        if attrs["transB"]:
            b = self.transpose(b, gemm, nodes, weights)
        bias = gemm.inputs[2] if len(gemm.inputs) > 2 and attrs["beta"] != 0 else None
        steps = [attrs["alpha"] != 1.0, bias is not None]
        out = gemm.outputs[0]
        product = out if not any(steps) else view.fresh(f"{out}_matmul")
        nodes.append(Node("MatMul", (a, b), (product,), {}, gemm.name))
        if attrs["alpha"] != 1.0:
            product = self.scale(product, attrs["alpha"], gemm, nodes, weights,
                                 out if bias is None else None)
        if bias is not None:
            if attrs["beta"] != 1.0:
                bias = self._scaled_bias(bias, attrs["beta"], gemm, nodes, weights)
            nodes.append(Node("Add", (product, bias), (out,), {}, view.fresh(f"{gemm.name}/bias")))
        return Rewrite(frozenset({gemm.name}), {gemm.name: tuple(nodes)}, weights=weights)

    def _scaled_bias(self, bias: str, beta: float, gemm: Node, nodes: list, weights: dict):
        """beta * C: folded into a new weight when C is constant."""
        view = self.view
        if bias in view.graph.weights:
            name = view.fresh(f"{bias}_scaled")
            weights[name] = (view.graph.weights[bias] * beta).astype(
                view.graph.weights[bias].dtype)
            return name
        return self.scale(bias, beta, gemm, nodes, weights)


def lower_gemm(graph: Graph) -> Graph:
    """Requires a typed Graph. Ensures no float Gemm is left: each became MatMul (keeping the
    Gemm's node name), Transpose or pre-transposed weights for transA/transB, a Mul by a scalar
    weight for alpha != 1, and an Add of C (pre-scaled when beta != 1; dropped when beta = 0).
    Returns `graph` itself when it has no Gemm."""
    view = GraphView(graph)
    editor = Editor(view)
    lowering = _GemmLowering(view)
    for node in graph.nodes:
        if node.op == "Gemm":
            editor.add(lowering.lower(node))
    return editor.build()
