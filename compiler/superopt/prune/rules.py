"""The abstract-expression algebra as an egglog ruleset: Mirage's axioms (its egg rules on
`main`, `abstract_subexpr`), with reduction sizes as i64 arguments.

Every rule is read modulo the abstraction of terms.py: a term stands for one element, with
shapes and constant factors forgotten. Some rules are therefore coarser than real algebra
(sum(n, a * b) = sum(n, a) * b for any b): they only make more terms equal, which makes
pruning more permissive, never less.
"""

from __future__ import annotations

from egglog import (
    Expr,
    StringLike,
    birewrite,
    eq,
    function,
    i64,
    i64Like,
    relation,
    rewrite,
    rule,
    union,
    vars_,
)


class Ab(Expr):
    """An abstract expression (the e-graph's only sort)."""


# egg_fn pins the egglog names ("ab_" + terms.py's op name; bare names clash with primitives)
@function(egg_fn="ab_var")
def t_var(name: StringLike) -> Ab: ...
@function(egg_fn="ab_add")
def t_add(a: Ab, b: Ab) -> Ab: ...
@function(egg_fn="ab_sub")
def t_sub(a: Ab, b: Ab) -> Ab: ...
@function(egg_fn="ab_mul")
def t_mul(a: Ab, b: Ab) -> Ab: ...
@function(egg_fn="ab_div")
def t_div(a: Ab, b: Ab) -> Ab: ...
@function(egg_fn="ab_exp")
def t_exp(a: Ab) -> Ab: ...
@function(egg_fn="ab_sqrt")
def t_sqrt(a: Ab) -> Ab: ...
@function(egg_fn="ab_silu")
def t_silu(a: Ab) -> Ab: ...
@function(egg_fn="ab_neg")
def t_neg(a: Ab) -> Ab: ...
@function(egg_fn="ab_sigmoid")
def t_sigmoid(a: Ab) -> Ab: ...
@function(egg_fn="ab_gelu")
def t_gelu(a: Ab) -> Ab: ...
@function(egg_fn="ab_gelu_tanh")
def t_gelu_tanh(a: Ab) -> Ab: ...
@function(egg_fn="ab_tanh")
def t_tanh(a: Ab) -> Ab: ...
@function(egg_fn="ab_erf")
def t_erf(a: Ab) -> Ab: ...
@function(egg_fn="ab_relu")
def t_relu(a: Ab) -> Ab: ...
@function(egg_fn="ab_sum")
def t_sum(n: i64Like, a: Ab) -> Ab: ...
@function(egg_fn="ab_max")
def t_max(n: i64Like, a: Ab) -> Ab: ...


# split(n, j): j is a proper divisor of n and both are reduction sizes in play
split = relation("split", i64, i64)

CONSTRUCTORS = {"var": t_var, "add": t_add, "sub": t_sub, "mul": t_mul, "div": t_div,
                "exp": t_exp, "sqrt": t_sqrt, "silu": t_silu, "neg": t_neg,
                "sigmoid": t_sigmoid, "gelu": t_gelu, "gelu_tanh": t_gelu_tanh,
                "tanh": t_tanh, "erf": t_erf, "relu": t_relu, "sum": t_sum, "max": t_max}

a, b, c = vars_("a b c", Ab)
(s,) = vars_("s", Ab)
i, j, n = vars_("i j n", i64)


def core_rules() -> list:
    """Rules that saturate on every workload (seconds at most): everything but expansion."""
    return [
        # -- add and mul: commutative, associative; common factors come out (a*b + a*c)
        rewrite(t_add(a, b)).to(t_add(b, a)),
        rewrite(t_mul(a, b)).to(t_mul(b, a)),
        birewrite(t_add(a, t_add(b, c))).to(t_add(t_add(a, b), c)),
        birewrite(t_mul(a, t_mul(b, c))).to(t_mul(t_mul(a, b), c)),
        rewrite(t_add(t_mul(a, b), t_mul(a, c))).to(t_mul(a, t_add(b, c))),
        # -- division: div-add, mul-div, div-div
        birewrite(t_add(t_div(a, c), t_div(b, c))).to(t_div(t_add(a, b), c)),
        birewrite(t_mul(a, t_div(b, c))).to(t_div(t_mul(a, b), c)),
        birewrite(t_div(t_div(a, b), c)).to(t_div(a, t_mul(b, c))),
        # -- sums: over add, out of mul and div (any factor is invariant to an abstract sum)
        birewrite(t_sum(n, t_add(a, b))).to(t_add(t_sum(n, a), t_sum(n, b))),
        birewrite(t_sum(n, t_mul(a, b))).to(t_mul(t_sum(n, a), b)),
        birewrite(t_sum(n, t_div(a, b))).to(t_div(t_sum(n, a), b)),
        # -- reduction sizes: nested reductions merge and commute; one splits at a divisor
        rewrite(t_sum(i, t_sum(j, a))).to(t_sum(i * j, a)),
        rewrite(t_sum(i, t_sum(j, a))).to(t_sum(j, t_sum(i, a))),
        rewrite(t_max(i, t_max(j, a))).to(t_max(i * j, a)),
        rewrite(t_max(i, t_max(j, a))).to(t_max(j, t_max(i, a))),
        rule(eq(s).to(t_sum(n, a)), split(n, j)).then(union(s).with_(t_sum(j, t_sum(n / j, a)))),
        rule(eq(s).to(t_max(n, a)), split(n, j)).then(union(s).with_(t_max(j, t_max(n / j, a)))),
        # -- subtraction is adding a negation
        birewrite(t_sub(a, b)).to(t_add(a, t_neg(b))),
    ]


def expansion_rules() -> list:
    """Rules that multiply out: 3^n-ish growth on long sums (distribution alone takes nTrans
    to 338k e-nodes, 9 s, at d = 4096), so they run after the core saturates, within the
    expansion budget."""
    return [
        rewrite(t_mul(a, t_add(b, c))).to(t_add(t_mul(a, b), t_mul(a, c))),
        # common denominator: a/b + c/d = (a*d + c*b) / (b*d)
        rewrite(t_add(t_div(a, b), t_div(c, s))).to(
            t_div(t_add(t_mul(a, s), t_mul(c, b)), t_mul(b, s))),
    ]
