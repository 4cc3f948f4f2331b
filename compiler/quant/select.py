"""Which weights a quantizer touches: the weight operands of MatMul, Gemm and Conv.

`select_layers` requires a typed Graph and ensures one `Layer` per quantizable weight (float,
rank >= 2, every consumer a MatMul / Gemm / Conv that reads it as an operand), each with its
bit width and output-channel axis. Embedding tables (Gather), norm scales and biases (rank 1)
stay in float. Skip patterns and per-layer bit widths match weight names or consumer node
names with shell-style globs (`fnmatch`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.graph import Graph

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class Layer:
    weight: str  # the graph weight's name
    nodes: tuple[str, ...]  # the nodes that read it
    op: str  # MatMul | Gemm | Conv (of the first consumer)
    shape: tuple[int, ...]
    bits: int
    axis: int  # output-channel axis of the stored weight (per-channel baselines use it)

    @property
    def size(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def _channel_axis(graph: Graph, weight: str, node) -> int:
    """The output-channel axis of `weight` as `node` uses it."""
    rank = graph.types[weight].rank
    if node.op == "Conv":
        return 0  # [out, in, kh, kw]
    if node.op == "Gemm":
        position = node.inputs.index(weight)
        if position == 1:
            return 0 if node.attrs.get("transB", 0) else 1
        return 1 if node.attrs.get("transA", 0) else 0
    return rank - 1 if node.inputs.index(weight) == 1 else rank - 2  # x @ W: columns


def _weight_uses(graph: Graph, name: str, consumers) -> list[tuple] | None:
    """[(weight op node, the weight's value name there, perm or None)] when every use of
    `name` is a MatMul / Gemm / Conv operand, directly or through one Transpose (torch.export
    spells Linear as MatMul(x, Transpose(W))); None otherwise."""
    uses = []
    for reader in consumers.get(name, []):
        if reader.op in WEIGHT_OPS:
            uses.append((reader, name, None))
        elif reader.op == "Transpose":
            value = reader.outputs[0]
            after = consumers.get(value, [])
            if not after or any(node.op not in WEIGHT_OPS for node in after):
                return None
            perm = reader.attrs.get("perm") or tuple(reversed(range(graph.types[name].rank)))
            uses += [(node, value, tuple(perm)) for node in after]
        else:
            return None
    return uses or None


def _matches(patterns, *names) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names
               if name)


def check_patterns(graph: Graph, skip: tuple[str, ...] = (),
                   layer_bits: dict[str, int] | None = None) -> None:
    """Refuse a --skip or --layer-bits glob that matches no quantizable weight (nor a node that
    reads one): a typo would otherwise quantize, at the default bits, a layer the user meant
    to keep in float or at other bits, and say nothing."""
    consumers = graph.consumers()
    names = []
    for name, array in graph.weights.items():
        if graph.types[name].dtype in FLOAT_DTYPES and array.ndim >= 2:
            uses = _weight_uses(graph, name, consumers)
            if uses is not None:
                names.append((name, *(node.name for node, _, _ in uses)))
    if not names:
        return  # select_layers says there is nothing to quantize
    for flag, patterns in (("--skip", skip), ("--layer-bits", tuple(layer_bits or {}))):
        for pattern in patterns:
            if not any(_matches((pattern,), *candidates) for candidates in names):
                shown = ", ".join(candidates[0] for candidates in names[:6])
                more = f" (and {len(names) - 6} more)" if len(names) > 6 else ""
                raise MlcError(f"{flag} {pattern!r} matches no quantizable weight or node; the "
                               f"weights are: {shown}{more} (globs: * ? [abc])")


def select_layers(graph: Graph, bits: int, *, skip: tuple[str, ...] = (),
                  layer_bits: dict[str, int] | None = None) -> list[Layer]:
    """Quantizable weights with their bits (layer_bits patterns override `bits`, in order).

    Raises MlcError when bits are outside 1..8 or nothing is left to quantize.
    """
    layer_bits = dict(layer_bits or {})
    for where, value in [("--bits", bits)] + [(f"--layer-bits {p}", b)
                                              for p, b in layer_bits.items()]:
        if not 1 <= int(value) <= 8:
            raise MlcError(f"{where}={value}: bits must be between 1 and 8")
    consumers = graph.consumers()
    layers = []
    for name, array in graph.weights.items():
        if graph.types[name].dtype not in FLOAT_DTYPES or array.ndim < 2:
            continue
        uses = _weight_uses(graph, name, consumers)
        if uses is None:
            continue
        node_names = tuple(node.name for node, _, _ in uses)
        if _matches(skip, name, *node_names):
            continue
        chosen = bits
        for pattern, value in layer_bits.items():
            if _matches((pattern,), name, *node_names):
                chosen = int(value)
        node, value, perm = uses[0]
        axis = _channel_axis(graph, value, node)
        axis = axis if perm is None else perm[axis]  # back to the stored weight's axes
        layers.append(Layer(name, node_names, node.op, tuple(array.shape), chosen, axis))
    if not layers:
        raise MlcError(f"{graph.name}: nothing to quantize (no float weight of rank >= 2 feeds "
                       f"only {', '.join(WEIGHT_OPS)}" + (f", after --skip {list(skip)}"
                                                          if skip else "") + ")")
    return layers
