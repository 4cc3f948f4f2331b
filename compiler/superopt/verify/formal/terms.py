"""Terms of the formal verifier: tensor programs over symbolic grid and loop names.

A term is a hashable nested tuple `(op, *args)`. Tensor arguments are terms; data dims are
negative ints counted from the last dim (-1 = last), so a term never needs its rank; grid and
loop names are strings whose sizes stay symbolic (one proof covers every size).

    ("var", "X")                         a kernel input
    ("partition", t, dim, g)             t split along dim into |g| chunks, one per index of g
    ("replicate", t, g)                  the same t at every index of g
    ("combine", t, dim, g)               the chunks of t over g concatenated along dim
    ("reduce", t, g)                     the sum of t over g; ("rmean", t, g) the mean
    ("add" | "sub" | "mul" | "div" | "matmul", a, b)
    ("exp" | "sqrt" | "silu" | "neg", a)
    ("gelu" | "gelu_tanh" | "sigmoid" | "tanh" | "erf", a)   activations, uninterpreted
    ("scale" | "shift", a, c)            a * c and a + c for a constant c, written as the
                                         repr of a float (so equal constants are equal names)
    ("sum" | "mean" | "max", t, dim)     a reduction along a data dim that keeps it as size 1

    >>> show(("combine", ("partition", ("var", "X"), -1, "gx"), -1, "gx"))
    'combine(partition(X, -1, gx), -1, gx)'
"""

from __future__ import annotations

Term = tuple

# op -> argument kinds: "t" a tensor term, "d" a data dim (int < 0), "g" a grid/loop name,
# "c" a constant (a float's repr)
SIGNATURES: dict[str, tuple[str, ...]] = {
    "var": ("name",),
    # parallelization
    "partition": ("t", "d", "g"),
    "replicate": ("t", "g"),
    "combine": ("t", "d", "g"),
    "reduce": ("t", "g"),
    "rmean": ("t", "g"),
    # elementwise (numpy broadcasting) and matmul over the last two dims
    "add": ("t", "t"),
    "sub": ("t", "t"),
    "mul": ("t", "t"),
    "div": ("t", "t"),
    "matmul": ("t", "t"),
    "exp": ("t",),
    "sqrt": ("t",),
    "silu": ("t",),
    "neg": ("t",),
    # activations: only their elementwise nature is known (no algebra), see rules.py
    "gelu": ("t",),
    "gelu_tanh": ("t",),
    "sigmoid": ("t",),
    "relu": ("t",),
    "tanh": ("t",),
    "erf": ("t",),
    # elementwise with a constant
    "scale": ("t", "c"),
    "shift": ("t", "c"),
    # data-dim reductions (keep the dim)
    "sum": ("t", "d"),
    "mean": ("t", "d"),
    "max": ("t", "d"),
}

ACTIVATIONS = ("gelu", "gelu_tanh", "sigmoid", "tanh", "erf", "relu")
UNARY = ("exp", "sqrt", "silu", "neg") + ACTIVATIONS
WITH_CONSTANT = ("scale", "shift")
BINARY = ("add", "sub", "mul", "div")
ELEMENTWISE = UNARY + WITH_CONSTANT + BINARY


def constant(value) -> str:
    """The "c" argument of a scale / shift term: one spelling per float value."""
    return repr(float(value))
DIM_REDUCTIONS = ("sum", "mean", "max")


def check_term(term: Term) -> Term:
    """Ensures: every node names a known op with arguments of the kinds SIGNATURES gives."""
    op, *args = term
    kinds = SIGNATURES.get(op)
    if kinds is None or len(kinds) != len(args):
        raise ValueError(f"malformed term node {op!r} with {len(args)} arguments")
    for kind, arg in zip(kinds, args):
        if kind == "t":
            check_term(arg)
        elif kind == "d" and not (isinstance(arg, int) and arg < 0):
            raise ValueError(f"{op}: data dim {arg!r} must be a negative int")
        elif kind in ("g", "name", "c") and not isinstance(arg, str):
            raise ValueError(f"{op}: {kind} {arg!r} must be a string")
    return term


def show(term: Term) -> str:
    """Prefix rendering with inputs by name."""
    if term[0] == "var":
        return term[1]
    parts = [show(a) if isinstance(a, tuple) else str(a) for a in term[1:]]
    return f"{term[0]}({', '.join(parts)})"


def names_in(term: Term) -> set[str]:
    """The grid and loop names a term mentions."""
    op, *args = term
    found = set()
    for kind, arg in zip(SIGNATURES[op], args):
        if kind == "t":
            found |= names_in(arg)
        elif kind == "g":
            found.add(arg)
    return found
