"""Per-op emission rules of the Triton renderer: how a tile op, a for-loop accumulator or a
library op becomes Triton (or torch) source, as tables keyed by op name.

Register tiles are fp32 with every dim padded to a power of two (at least 16, or exactly 1 for a
size-1 dim); rules mask the padding off wherever it could leak into real values (reductions,
the K dim of a matmul), and skip the mask where the padding is known to hold zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

from mlc.compiler.superopt.mugraph import MuGraphError
from mlc.compiler.superopt.mugraph.unary import TORCH as TORCH_ACTIVATIONS
from mlc.compiler.superopt.mugraph.unary import library_activation

# ---- register tiles --------------------------------------------------------------------------

def padded(size: int) -> int:
    """Register size of a tile dim: 1 stays 1 (it broadcasts), else a power of two >= 16."""
    return 1 if size == 1 else max(16, 1 << (size - 1).bit_length())


@dataclass(frozen=True)
class Tile:
    """A µGraph tile as a register tensor: leading size-1 dims dropped (down to rank 2)."""

    var: str
    shape: tuple[int, ...]  # the µGraph tile shape
    dims: tuple[int, ...]  # the register tensor's true sizes
    pads: tuple[int, ...]  # ... and its padded sizes
    zero_padded: bool = False  # known zeros in the padding (so sums need no mask)

    @classmethod
    def of(cls, var: str, shape: tuple[int, ...], what: str, zero_padded=False) -> Tile:
        dims = list(shape)
        while len(dims) > 2 and dims[0] == 1:
            dims.pop(0)
        if not 1 <= len(dims) <= 3:
            raise MuGraphError(f"{what} has shape {tuple(shape)}: the Triton renderer supports "
                               "tiles of rank 1 to 3 once leading size-1 dims are dropped")
        return cls(var, tuple(shape), tuple(dims), tuple(padded(d) for d in dims), zero_padded)

    @property
    def rank(self) -> int:
        return len(self.dims)

    def axis(self, tile_dim: int) -> int | None:
        """Register axis of a µGraph tile dim; None for a dropped leading size-1 dim."""
        axis = tile_dim % len(self.shape) - (len(self.shape) - self.rank)
        return axis if axis >= 0 else None

    def as_rank(self, rank: int) -> str:
        """The variable with new leading axes so that it has `rank` axes."""
        if rank == self.rank:
            return self.var
        return f"{self.var}[{', '.join(['None'] * (rank - self.rank) + [':'] * self.rank)}]"


def axis_mask(tile: Tile, axis: int) -> str | None:
    """`arange < size` along one register axis, or None where that axis has no padding."""
    if tile.dims[axis] == tile.pads[axis]:
        return None
    index = ", ".join(":" if a == axis else "None" for a in range(tile.rank))
    arange = f"tl.arange(0, {tile.pads[axis]})"
    return f"{arange} < {tile.dims[axis]}" if tile.rank == 1 else \
        f"{arange}[{index}] < {tile.dims[axis]}"


NEG_INF = 'float("-inf")'
REDUCTIONS = {"sum": ("tl.sum", "0.0"), "max": ("tl.max", NEG_INF)}


def reduce(kind: str, expr: str, tile: Tile, axis: int) -> str:
    """Reduce a register axis keeping it as size 1; padding is set to the identity first
    (`expr` is `tile` or an elementwise function of it that maps 0 to 0)."""
    function, identity = REDUCTIONS[kind]
    mask = axis_mask(tile, axis)
    if mask and not (kind == "sum" and tile.zero_padded):
        expr = f"tl.where({mask}, {expr}, {identity})"
    return f"{function}({expr}, axis={axis}, keep_dims=True)"


def zero_padding(tile: Tile, axis: int) -> str:
    mask = None if tile.zero_padded else axis_mask(tile, axis)
    return f"tl.where({mask}, {tile.var}, 0.0)" if mask else tile.var


# ---- tile ops: one rule per op, returning the expression for the output tile ------------------

@dataclass(frozen=True)
class OpSite:
    """What an emission rule sees. `args` are the input variables, already given the output's
    rank for elementwise ops (so Triton broadcasts size-1 axes)."""

    args: tuple[str, ...]
    inputs: tuple[Tile, ...]
    out: Tile
    attrs: dict


def _fmt(template: str) -> Callable[[OpSite], str]:
    return lambda site: template.format(*site.args)


def float_literal(value) -> str:
    """A Python float literal; inf / nan have none (and would poison every lane anyway)."""
    value = float(value)
    if not math.isfinite(value):
        raise MuGraphError(f"Triton renderer: scalar {value} is not finite")
    return repr(value)


def _mul_scalar(site: OpSite) -> str:
    return f"{site.args[0]} * {float_literal(site.attrs['scale'])}"


def _add_scalar(site: OpSite) -> str:
    return f"{site.args[0]} + {float_literal(site.attrs['value'])}"


def _reduce_op(kind: str, site: OpSite) -> str:
    tile = site.inputs[0]
    axis = tile.axis(site.attrs["dim"])
    if axis is None or tile.dims[axis] == 1:
        return tile.var  # reducing a size-1 dim
    return reduce(kind, tile.var, tile, axis)


def _rms_norm(site: OpSite) -> str:
    x = site.inputs[0]
    squares = reduce("sum", f"{x.var} * {x.var}", x, x.rank - 1)
    eps = site.attrs.get("eps", 0.0)
    shift = f" + {float_literal(eps)}" if eps else ""
    return f"{x.var} / tl.sqrt({squares} / {float(x.dims[-1])!r}{shift})"


def _softmax(site: OpSite) -> str:
    x = site.inputs[0]
    return f"softmax_rows({x.var}, {x.dims[-1]}, {x.pads[-1]})"


def _layer_norm(site: OpSite) -> str:
    x = site.inputs[0]
    eps = float_literal(site.attrs["eps"])
    return f"layer_norm_rows({x.var}, {x.dims[-1]}, {x.pads[-1]}, {eps})"


def _matmul(site: OpSite) -> str:
    a, b = site.inputs
    out = site.out
    operands = []
    for tile, k_axis in ((a, a.rank - 1), (b, b.rank - 2)):
        expr = zero_padding(tile, k_axis)  # padded K entries may hold inf/nan: select them off
        if tile.rank < out.rank:
            expr = f"({expr})" if expr != tile.var else expr
            expanded = f"{expr}[{', '.join(['None'] * (out.rank - tile.rank) + [':'] * 2)}]"
            expr = f"tl.broadcast_to({expanded}, {out.pads[:-2] + tile.pads[-2:]})"
        operands.append(expr)
    tensor_core = min(a.pads[-2], a.pads[-1], b.pads[-1]) >= 16
    return f"{'dot' if tensor_core else 'outer_matmul'}({operands[0]}, {operands[1]})"


TILE_OPS: dict[str, Callable[[OpSite], str]] = {
    # elementwise
    "exp": _fmt("tl.exp({0})"),
    "silu": _fmt("silu({0})"),
    "sqrt": _fmt("tl.sqrt({0})"),
    "square": _fmt("{0} * {0}"),
    "neg": _fmt("-{0}"),
    "mul_scalar": _mul_scalar,
    "add_scalar": _add_scalar,
    "gelu": _fmt("gelu({0})"),
    "gelu_tanh": _fmt("gelu_tanh({0})"),
    "sigmoid": _fmt("tl.sigmoid({0})"),
    "relu": _fmt("tl.maximum({0}, 0.0)"),
    "tanh": _fmt("tanh({0})"),
    "erf": _fmt("tl.erf({0})"),
    "add": _fmt("{0} + {1}"),
    "sub": _fmt("{0} - {1}"),
    "mul": _fmt("{0} * {1}"),
    "div": _fmt("{0} / {1}"),
    # matmul over the last two axes (batched when the tiles keep a batch axis)
    "matmul": _matmul,
    # reductions keep the reduced dim; the norm family works row-wise over the last dim and
    # must see only its true lanes (helpers.py masks the padding)
    "reduce_sum": partial(_reduce_op, "sum"),
    "reduce_max": partial(_reduce_op, "max"),
    "rms_norm": _rms_norm,
    "softmax": _softmax,
    "layer_norm": _layer_norm,
}
ELEMENTWISE = {"unary", "binary"}

# Ops that leave zeros in the padding when their inputs have zeros there (loads zero-fill it);
# "aligned" ones only when no input broadcasts (0 + a broadcast value is not 0). Not here:
# sigmoid (0.5), add_scalar, exp, softmax (a padded row of zeros gives 1 / width per lane),
# and the norms: a padded row of zeros normalizes to 0 / 0 (layer_norm with eps = 0, rms_norm).
KEEP_ZERO_PADDING = {"silu": "any", "sqrt": "any", "square": "any", "neg": "any",
                     "mul_scalar": "any", "gelu": "any", "gelu_tanh": "any", "tanh": "any",
                     "erf": "any", "relu": "any", "mul": "any", "matmul": "any",
                     "reduce_sum": "any", "accum_sum": "any", "add": "aligned", "sub": "aligned"}


def keeps_zero_padding(op: str, inputs: list[Tile], out_dims: tuple[int, ...]) -> bool:
    rule = KEEP_ZERO_PADDING.get(op)
    if rule is None or not all(t.zero_padded for t in inputs):
        return False
    return rule == "any" or all(t.dims == out_dims for t in inputs)


# ---- for-loop accumulators -------------------------------------------------------------------

@dataclass(frozen=True)
class AccumSite:
    """An accumulator: its register variable, the in-loop tile it adds, and for the rescaling
    ones the running max and its previous-iteration value."""

    acc: str
    x: Tile
    out: Tile
    forloop_range: int
    reduction_dimx: int
    scale_by: str = ""  # exp(previous max - current max), the online-softmax correction


@dataclass(frozen=True)
class AccumRule:
    fill: str  # initial register value
    update: Callable[[AccumSite], str]  # the accumulator's next value
    finish: Callable[[AccumSite], str] | None = None  # after the loop; None: use as is
    shape_of_input: bool = False  # the register has the input's shape, not the output's


def _sum_last(x: Tile, expr: str | None = None) -> str:
    return reduce("sum", expr or x.var, x, x.rank - 1)


def _add(site: AccumSite) -> str:
    return f"{site.acc} + {site.x.var}"


def _add_row_sums(site: AccumSite) -> str:
    return f"{site.acc} + {_sum_last(site.x)}"


def _add_row_squares(site: AccumSite) -> str:
    return f"{site.acc} + {_sum_last(site.x, f'{site.x.var} * {site.x.var}')}"


def _max_rows(site: AccumSite) -> str:
    return f"tl.maximum({site.acc}, {reduce('max', site.x.var, site.x, site.x.rank - 1)})"


def _rescale_add(site: AccumSite) -> str:
    return f"{site.acc} * {site.scale_by} + {site.x.var}"


def _rescale_add_row_sums(site: AccumSite) -> str:
    return f"{site.acc} * {site.scale_by} + {_sum_last(site.x)}"


def _rms_finish(site: AccumSite) -> str:
    count = site.forloop_range * site.x.dims[-1]
    return f"tl.sqrt({site.acc} / {float(count)!r})"


def _fold_finish(site: AccumSite) -> str:
    width = site.reduction_dimx
    return (f"fold_last({site.acc}, {site.x.dims[-1]}, {site.x.pads[-1]}, {width}, "
            f"{padded(width)})")


ACCUMULATORS: dict[str, AccumRule] = {
    "accum_sum": AccumRule("0.0", _add),
    "accum_sum_ld": AccumRule("0.0", _add_row_sums),
    "accum_rms_ld": AccumRule("0.0", _add_row_squares, _rms_finish),
    "accum_sum_todimx": AccumRule("0.0", _add, _fold_finish, shape_of_input=True),
    # the running max: its in-loop value feeds in-loop ops, its last value is the final max
    "accum_max_ld": AccumRule(NEG_INF, _max_rows),
    # sum_i x_i * exp(m_i - m_final), kept by rescaling with exp(m_old - m_new) every step
    "accum_sum_rescale": AccumRule("0.0", _rescale_add),
    "accum_sum_ld_rescale": AccumRule("0.0", _rescale_add_row_sums),
}
RESCALING = {"accum_sum_rescale", "accum_sum_ld_rescale"}


def registers(fill: str, pads: tuple[int, ...]) -> str:
    if fill == "0.0":
        return f"tl.zeros({pads}, dtype=tl.float32)"
    return f"tl.full({pads}, {fill}, tl.float32)"


# ---- kernel-level library ops, executed by the host launcher with torch ----------------------

def library_activation_expr(activation: str, operand: str) -> str:
    """torch source of an activation tile op (gelu, gelu_tanh, ...) from unary.TORCH, the
    table the µGraph's torch arithmetic also uses."""
    path, kwargs = TORCH_ACTIVATIONS[activation]
    extra = "".join(f", {key}={value!r}" for key, value in kwargs.items())
    return f"torch.{path}({operand}{extra})"


def _activation_template(op: str) -> Callable[[dict], str]:
    return lambda attrs: library_activation_expr(library_activation(op, attrs), "{0}")


# library op -> a format template over its operands {0}, {1} and attributes, or a function of
# the attributes giving one (Gelu's form depends on `approximate`)
LIBRARY_EXPRS: dict[str, str | Callable[[dict], str]] = {
    "MatMul": "torch.matmul({0}, {1})",
    "Add": "{0} + {1}",
    "Sub": "{0} - {1}",
    "Mul": "{0} * {1}",
    "Div": "{0} / {1}",
    "Exp": "torch.exp({0})",
    "Sqrt": "torch.sqrt({0})",
    "Silu": "torch.nn.functional.silu({0})",
    "Neg": "-{0}",
    **{op: _activation_template(op) for op in ("Gelu", "Sigmoid", "Tanh", "Erf", "Relu")},
    "Scale": "{0} * {scale}",
    "Shift": "{0} + {value}",
    "ReduceSum": "torch.sum({0}, dim={dim}, keepdim=True)",
    "ReduceMean": "torch.mean({0}, dim={dim}, keepdim=True)",
    "ReduceMax": "torch.amax({0}, dim={dim}, keepdim=True)",
}

# float attributes of library ops, written as checked literals (float_literal) in the source
LIBRARY_FLOAT_ATTRS = ("scale", "value")
