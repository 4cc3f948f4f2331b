"""Random valid ONNX models for fuzzing the importer: a few dozen ops with random shapes,
attributes, weights and opsets, each runnable by onnxruntime (`random_model`). `onnx_fuzz`
breaks them on purpose and runs either kind through mlc and onnxruntime.

Every generator reads and returns float32 values and keeps tensors small (<= MAX_NUMEL
elements), so a model runs in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSETS = (9, 11, 12, 13, 15, 17, 18, 19, 21)
MAX_NUMEL = 512


@dataclass(frozen=True)
class Value:
    """A float32 tensor of the graph being built."""

    name: str
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)


class Builder:
    """Accumulates nodes, initializers and values for one random model."""

    def __init__(self, rng: np.random.Generator, opset: int):
        self.rng, self.opset = rng, opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.values: list[Value] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}{self._count}"

    def weight(self, shape, low=-1.0, high=1.0) -> str:
        array = self.rng.uniform(low, high, size=shape).astype(np.float32)
        return self.constant(array, "w")

    def constant(self, array, stem="c") -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values) -> str:
        return self.constant(np.array(values, np.int64), "i")

    def node(self, op: str, inputs, outputs: int = 1, **attrs) -> list[str]:
        names = [self.name(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=self.name("n"),
                                           **attrs))
        return names

    def value(self, name: str, shape) -> Value | None:
        """Record a new float32 value; None (and no record) when it is empty or too big."""
        shape = tuple(int(d) for d in shape)
        if 0 in shape or math.prod(shape) > MAX_NUMEL:
            return None
        value = Value(name, shape)
        self.values.append(value)
        return value

    def pick_axis(self, rank: int, allow_negative: bool = True) -> int:
        axis = int(self.rng.integers(0, rank))
        return axis - rank if allow_negative and self.opset >= 11 and self.rng.random() < 0.5 \
            else axis

    def random_shape(self, low_rank=1, high_rank=4, low=1, high=5) -> tuple[int, ...]:
        rank = int(self.rng.integers(low_rank, high_rank + 1))
        return tuple(int(d) for d in self.rng.integers(low, high + 1, size=rank))

    def broadcast_partner(self, shape) -> tuple[int, ...]:
        """A shape that broadcasts with `shape` without growing it."""
        keep = int(self.rng.integers(0, len(shape) + 1))
        tail = shape[len(shape) - keep:]
        return tuple(d if self.rng.random() < 0.6 else 1 for d in tail)


# ---- generators: each takes the builder and an input value, returns the new value or None ------

UNARY = ("Relu", "Neg", "Abs", "Tanh", "Sigmoid", "Sin", "Cos", "Softsign", "Erf", "Floor",
         "Ceil", "Softplus", "Identity")


def gen_unary(b: Builder, x: Value):
    op = str(b.rng.choice(UNARY + ("HardSwish",) * (b.opset >= 14) + ("LeakyRelu", "Elu",
                                                                          "HardSigmoid")))
    attrs = {}
    if op in ("LeakyRelu", "Elu"):
        attrs["alpha"] = float(b.rng.uniform(0.01, 1.5))
    if op == "HardSigmoid":
        attrs.update(alpha=float(b.rng.uniform(0.1, 0.5)), beta=float(b.rng.uniform(0.2, 0.7)))
    return b.value(b.node(op, [x.name], **attrs)[0], x.shape)


def gen_math(b: Builder, x: Value):
    """Ops that need a tame domain: Exp(Tanh x), Sqrt(Abs x), Log(Sigmoid x)."""
    first, second = [("Tanh", "Exp"), ("Abs", "Sqrt"), ("Sigmoid", "Log")][b.rng.integers(3)]
    inner = b.node(first, [x.name])[0]
    return b.value(b.node(second, [inner])[0], x.shape)


def gen_binary(b: Builder, x: Value):
    op = str(b.rng.choice(["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum", "Mean"]))
    others = [v for v in b.values if v is not x and _broadcasts(v.shape, x.shape)]
    if others and b.rng.random() < 0.5 and op not in ("Div", "Pow"):
        other = others[b.rng.integers(len(others))]
        partner, shape = other.name, np.broadcast_shapes(x.shape, other.shape)
    elif op == "Div":
        sign = np.where(b.rng.random(b.broadcast_partner(x.shape)) < 0.5, -1.0, 1.0)
        partner = b.constant((sign * b.rng.uniform(0.5, 2.0, sign.shape)).astype(np.float32))
        shape = x.shape
    elif op == "Pow":
        x = Value(b.node("Abs", [x.name])[0], x.shape)
        partner = b.constant(np.float32(b.rng.choice([2.0, 0.5, 3.0])))
        shape = x.shape
    else:
        partner, shape = b.weight(b.broadcast_partner(x.shape)), x.shape
    if op in ("Sum", "Mean", "Max", "Min") and b.rng.random() < 0.3:
        return b.value(b.node(op, [x.name, partner, x.name])[0], shape)
    return b.value(b.node(op, [x.name, partner])[0], shape)


def _broadcasts(a, b) -> bool:
    try:
        return tuple(np.broadcast_shapes(a, b)) == tuple(b) and len(a) <= len(b)
    except ValueError:
        return False


def gen_matmul(b: Builder, x: Value):
    n = int(b.rng.integers(1, 6))
    k = x.shape[-1]
    w = b.weight((k, n), -1 / math.sqrt(k), 1 / math.sqrt(k))
    if x.rank == 2 and b.rng.random() < 0.5:
        return _gemm(b, x, n)
    return b.value(b.node("MatMul", [x.name, w])[0], x.shape[:-1] + (n,))


def _gemm(b: Builder, x: Value, n: int):
    trans_a, trans_b = int(b.rng.integers(2)), int(b.rng.integers(2))
    m, k = x.shape[::-1] if trans_a else x.shape
    w = b.weight((n, k) if trans_b else (k, n))
    inputs = [x.name, w]
    if b.opset < 11 or b.rng.random() < 0.7:
        bias_shape = [(n,), (1, n), (m, n), ()][b.rng.integers(4)]
        inputs.append(b.weight(bias_shape))
    return b.value(b.node("Gemm", inputs, alpha=float(b.rng.uniform(0.5, 2)),
                          beta=float(b.rng.uniform(0.5, 2)), transA=trans_a,
                          transB=trans_b)[0], (m, n))


REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceL1",
              "ReduceSumSquare", "ReduceLogSumExp", "ReduceProd")


def gen_reduce(b: Builder, x: Value):
    op = str(b.rng.choice(REDUCTIONS))
    keepdims = int(b.rng.integers(2))
    axes = None
    if b.rng.random() < 0.8:
        count = int(b.rng.integers(1, x.rank + 1))
        axes = sorted(int(a) for a in b.rng.choice(x.rank, size=count, replace=False))
        axes = [a - x.rank if b.opset >= 11 and b.rng.random() < 0.3 else a for a in axes]
    as_input = b.opset >= (13 if op == "ReduceSum" else 18)
    inputs, attrs = [x.name], {"keepdims": keepdims}
    if axes is not None:
        if as_input:
            inputs.append(b.ints(axes))
        else:
            attrs["axes"] = axes
    reduced = set(range(x.rank)) if axes is None else {a % x.rank for a in axes}
    shape = tuple(1 if i in reduced else d for i, d in enumerate(x.shape) if keepdims or
                  i not in reduced)
    out = b.node(op, inputs, **attrs)[0]
    if op in ("ReduceProd", "ReduceSumSquare", "ReduceSum", "ReduceL1") and shape:
        out = b.node("Tanh", [out])[0]  # keep later ops in a tame range
    return b.value(out, shape) if shape else None


def gen_softmax(b: Builder, x: Value):
    op = str(b.rng.choice(["Softmax", "LogSoftmax"]))
    attrs = {}
    if b.rng.random() < 0.7 or (b.opset < 13 and x.rank < 2):  # default axis 1 before 13
        attrs["axis"] = b.pick_axis(x.rank)
    return b.value(b.node(op, [x.name], **attrs)[0], x.shape)


def gen_reshape(b: Builder, x: Value):
    target = _factor_shape(b, math.prod(x.shape))
    spec = list(target)
    if b.rng.random() < 0.4:
        spec[int(b.rng.integers(len(spec)))] = -1
    for i, d in enumerate(spec):
        if i < x.rank and d == x.shape[i] and b.rng.random() < 0.5:
            spec[i] = 0  # copy the input's dim
    return b.value(b.node("Reshape", [x.name, b.ints(spec)])[0], target)


def _factor_shape(b: Builder, numel: int) -> tuple[int, ...]:
    rank = int(b.rng.integers(1, 5))
    dims = [1] * rank
    remaining = numel
    for p in range(2, numel + 1):
        while remaining % p == 0:
            dims[int(b.rng.integers(rank))] *= p
            remaining //= p
    return tuple(dims)


def gen_transpose(b: Builder, x: Value):
    if x.rank < 2:
        return None
    if b.rng.random() < 0.2:
        return b.value(b.node("Transpose", [x.name])[0], x.shape[::-1])
    perm = [int(p) for p in b.rng.permutation(x.rank)]
    return b.value(b.node("Transpose", [x.name], perm=perm)[0], tuple(x.shape[p] for p in perm))


def gen_concat(b: Builder, x: Value):
    axis = b.pick_axis(x.rank)
    extra = list(x.shape)
    extra[axis] = int(b.rng.integers(1, 4))
    inputs = [x.name, b.weight(extra)] + ([x.name] if b.rng.random() < 0.3 else [])
    shape = list(x.shape)
    shape[axis] = sum(x.shape[axis] if n == x.name else extra[axis] for n in inputs)
    return b.value(b.node("Concat", inputs, axis=axis)[0], shape)


def gen_slice(b: Builder, x: Value):
    count = int(b.rng.integers(1, x.rank + 1))
    axes = [int(a) for a in b.rng.choice(x.rank, size=count, replace=False)]
    starts, ends, steps, shape = [], [], [], list(x.shape)
    for a in axes:
        dim = x.shape[a]
        step = int(b.rng.choice([1, 1, 2, -1])) if b.opset >= 10 else 1
        start, end = (int(v) for v in b.rng.integers(-dim - 2, dim + 3, size=2))
        starts.append(start)
        ends.append(end)
        steps.append(step)
        shape[a] = len(range(*slice(start, end, step).indices(dim)))
    if b.opset < 10:
        out = b.node("Slice", [x.name], starts=starts, ends=ends, axes=axes)[0]
    else:
        out = b.node("Slice", [x.name, b.ints(starts), b.ints(ends), b.ints(axes),
                               b.ints(steps)])[0]
    return b.value(out, shape)


def gen_gather(b: Builder, x: Value):
    axis = b.pick_axis(x.rank)
    dim = x.shape[axis]
    index_shape = b.random_shape(0, 2, 1, 3)
    indices = b.rng.integers(-dim, dim, size=index_shape)
    shape = x.shape[:axis % x.rank] + index_shape + x.shape[axis % x.rank + 1:]
    return b.value(b.node("Gather", [x.name, b.ints(indices)], axis=axis)[0], shape)


def gen_flatten(b: Builder, x: Value):
    axis = int(b.rng.integers(0, x.rank + 1))
    if b.opset >= 11 and axis and b.rng.random() < 0.3:
        axis -= x.rank
    split = axis % x.rank if axis < 0 else axis
    shape = (math.prod(x.shape[:split]), math.prod(x.shape[split:]))
    return b.value(b.node("Flatten", [x.name], axis=axis)[0], shape)


def gen_unsqueeze(b: Builder, x: Value):
    if x.rank >= 5:
        return None
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    if ones and b.rng.random() < 0.5:  # Squeeze
        axes = ones if b.rng.random() < 0.5 else ones[:1]
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return b.value(_axes_node(b, "Squeeze", x, axes), shape) if shape else None
    rank = x.rank + 1
    axis = int(b.rng.integers(0, rank))
    shape = list(x.shape)
    shape.insert(axis, 1)
    return b.value(_axes_node(b, "Unsqueeze", x, [axis]), shape)


def _axes_node(b: Builder, op: str, x: Value, axes) -> str:
    if b.opset >= 13:
        return b.node(op, [x.name, b.ints(axes)])[0]
    return b.node(op, [x.name], axes=axes)[0]


def gen_split(b: Builder, x: Value):
    axis = b.pick_axis(x.rank)
    dim = x.shape[axis]
    if dim < 2:
        return None
    cut = int(b.rng.integers(1, dim))
    sizes = [cut, dim - cut]
    if b.opset < 13:
        outs = b.node("Split", [x.name], 2, axis=axis, split=sizes)
    elif b.opset >= 18 and b.rng.random() < 0.5:
        sizes = [-(-dim // 2), dim - -(-dim // 2)]
        outs = b.node("Split", [x.name], 2, axis=axis, num_outputs=2)
    else:
        outs = b.node("Split", [x.name, b.ints(sizes)], 2, axis=axis)
    pick = int(b.rng.integers(2))
    shape = list(x.shape)
    shape[axis] = sizes[pick]
    return b.value(outs[pick], shape)


def gen_expand_tile(b: Builder, x: Value):
    if b.rng.random() < 0.5:
        target = [d if d != 1 else int(b.rng.integers(1, 4)) for d in x.shape]
        if b.rng.random() < 0.3:
            target = [2] + target
        out = b.node("Expand", [x.name, b.ints(target)])[0]
        return b.value(out, np.broadcast_shapes(x.shape, tuple(target)))
    repeats = [int(r) for r in b.rng.integers(1, 3, size=x.rank)]
    out = b.node("Tile", [x.name, b.ints(repeats)])[0]
    return b.value(out, [d * r for d, r in zip(x.shape, repeats)])


def gen_pad(b: Builder, x: Value):
    modes = ["constant", "reflect", "edge"] + ["wrap"] * (b.opset >= 19)
    mode = str(b.rng.choice(modes))
    pads = [int(p) for p in b.rng.integers(0, 3, size=2 * x.rank)]
    if mode == "reflect":
        pads = [min(p, x.shape[i % x.rank] - 1) for i, p in enumerate(pads)]
    shape = [d + pads[i] + pads[i + x.rank] for i, d in enumerate(x.shape)]
    fill = float(b.rng.uniform(-1, 1))
    if b.opset < 11:
        out = b.node("Pad", [x.name], pads=pads, mode=mode, value=fill)[0]
    else:
        out = b.node("Pad", [x.name, b.ints(pads), b.constant(np.float32(fill))], mode=mode)[0]
    return b.value(out, shape)


def gen_clip(b: Builder, x: Value):
    low, high = sorted(float(v) for v in b.rng.uniform(-1, 1, size=2))
    if b.opset < 11:
        return b.value(b.node("Clip", [x.name], min=low, max=high)[0], x.shape)
    inputs = [x.name, b.constant(np.float32(low)) if b.rng.random() < 0.7 else "",
              b.constant(np.float32(high))]
    return b.value(b.node("Clip", inputs)[0], x.shape)


def gen_where(b: Builder, x: Value):
    cond = b.node("Greater", [x.name, b.constant(np.float32(b.rng.uniform(-0.5, 0.5)))])[0]
    other = b.weight(b.broadcast_partner(x.shape))
    return b.value(b.node("Where", [cond, x.name, other])[0], x.shape)


def gen_cast(b: Builder, x: Value):
    wide = b.node("Cast", [x.name], to=TensorProto.DOUBLE)[0]
    return b.value(b.node("Cast", [wide], to=TensorProto.FLOAT)[0], x.shape)


def gen_norm(b: Builder, x: Value):
    if b.opset >= 17 and b.rng.random() < 0.6:
        axis = b.pick_axis(x.rank)
        normalized = x.shape[axis % x.rank:]
        inputs = [x.name, b.weight(normalized)] + ([b.weight(normalized)]
                                                   if b.rng.random() < 0.5 else [])
        return b.value(b.node("LayerNormalization", inputs, axis=axis,
                              epsilon=float(b.rng.choice([1e-5, 1e-3])))[0], x.shape)
    if x.rank < 2:
        return None
    c = x.shape[1]
    params = [b.weight((c,)), b.weight((c,)), b.weight((c,)), b.weight((c,), 0.5, 2.0)]
    return b.value(b.node("BatchNormalization", [x.name] + params,
                          epsilon=float(b.rng.choice([1e-5, 1e-3])))[0], x.shape)


def gen_window(b: Builder, x: Value):
    """Conv, MaxPool, AveragePool, GlobalAveragePool on an (N, C, H, W) value."""
    if x.rank != 4 or min(x.shape[2:]) < 2:
        return None
    n, c, h, w = x.shape
    kernel = [int(k) for k in b.rng.integers(1, min(h, w, 3) + 1, size=2)]
    strides = [int(s) for s in b.rng.integers(1, 3, size=2)]
    pads = [int(b.rng.integers(0, k)) for k in kernel * 2]
    choice = b.rng.integers(4)
    if choice == 3:
        op = str(b.rng.choice(["GlobalAveragePool", "GlobalMaxPool"]))
        return b.value(b.node(op, [x.name])[0], (n, c, 1, 1))
    out_hw = [(d + pads[i] + pads[i + 2] - kernel[i]) // strides[i] + 1
              for i, d in enumerate((h, w))]
    if choice == 0:
        group = int(b.rng.choice([g for g in (1, 2, c) if c % g == 0]))
        m = group * int(b.rng.integers(1, 3))
        weight = b.weight((m, c // group, *kernel), -0.5, 0.5)
        inputs = [x.name, weight] + ([b.weight((m,))] if b.rng.random() < 0.5 else [])
        out = b.node("Conv", inputs, kernel_shape=kernel, strides=strides, pads=pads,
                     group=group)[0]
        return b.value(out, (n, m, *out_hw))
    op = "MaxPool" if choice == 1 else "AveragePool"
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads}
    if op == "AveragePool":
        attrs["count_include_pad"] = int(b.rng.integers(2))
    return b.value(b.node(op, [x.name], **attrs)[0], (n, c, *out_hw))


def gen_argmax(b: Builder, x: Value):
    op = str(b.rng.choice(["ArgMax", "ArgMin"]))
    axis, keepdims = b.pick_axis(x.rank), int(b.rng.integers(2))
    attrs = {"axis": axis, "keepdims": keepdims}
    if b.opset >= 12:
        attrs["select_last_index"] = int(b.rng.integers(2))
    index = b.node(op, [x.name], **attrs)[0]
    shape = list(x.shape)
    if keepdims:
        shape[axis] = 1
    else:
        del shape[axis]
    return b.value(b.node("Cast", [index], to=TensorProto.FLOAT)[0], shape) if shape else None


def gen_shape_arith(b: Builder, x: Value):
    """Reshape(x, Concat(Slice(Shape(x), [0], [1]), [-1])): shape arithmetic folded at import."""
    if b.opset < 10:
        return None
    shape = b.node("Shape", [x.name])[0]
    first = b.node("Slice", [shape, b.ints([0]), b.ints([1])])[0]
    target = b.node("Concat", [first, b.ints([-1])], axis=0)[0]
    return b.value(b.node("Reshape", [x.name, target])[0],
                   (x.shape[0], math.prod(x.shape[1:])))


def gen_constant_of_shape(b: Builder, x: Value):
    fill = numpy_helper.from_array(np.array([b.rng.uniform(-1, 1)], np.float32))
    const = b.node("ConstantOfShape", [b.ints(list(x.shape))], value=fill)[0]
    return b.value(b.node("Add", [x.name, const])[0], x.shape)


GENERATORS = (
    (3, gen_unary), (1, gen_math), (3, gen_binary), (2, gen_matmul), (2, gen_reduce),
    (2, gen_softmax), (2, gen_reshape), (1, gen_transpose), (1, gen_concat), (2, gen_slice),
    (1, gen_gather), (1, gen_flatten), (1, gen_unsqueeze), (1, gen_split),
    (1, gen_expand_tile), (1, gen_pad), (1, gen_clip), (1, gen_where), (1, gen_cast),
    (2, gen_norm), (2, gen_window), (1, gen_argmax), (1, gen_shape_arith),
    (1, gen_constant_of_shape),
)


def random_model(rng: np.random.Generator, max_nodes: int = 8):
    """(a valid random ModelProto, feeds by input name)."""
    opset = int(rng.choice(OPSETS))
    b = Builder(rng, opset)
    inputs = []
    for i in range(int(rng.integers(1, 3))):
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(2, 6)),
                 int(rng.integers(2, 6))) if rng.random() < 0.3 else b.random_shape(high=4)
        value = b.value(f"x{i}", shape)
        inputs.append(value)
    weights = np.array([w for w, _ in GENERATORS], float)
    steps = int(rng.integers(1, max_nodes + 1))
    last = inputs[-1]
    for _ in range(steps * 3):
        if len(b.nodes) >= steps:
            break
        source = last if rng.random() < 0.6 else b.values[rng.integers(len(b.values))]
        generate = GENERATORS[rng.choice(len(GENERATORS), p=weights / weights.sum())][1]
        made = generate(b, source) if source.rank else None
        last = made or last
    outputs = [last] + ([b.values[rng.integers(len(b.values))]] if rng.random() < 0.3 else [])
    graph = helper.make_graph(
        b.nodes, "random", [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, v.shape)
                            for v in inputs],
        [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, None) for v in outputs],
        b.initializers)
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {v.name: rng.standard_normal(v.shape).astype(np.float32) for v in inputs}
    return model, feeds
