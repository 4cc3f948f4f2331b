"""The formal verifier's terms and rules in egglog: one sort, one function per term op, the
`unit` analysis relation, and the translation of rules.py's patterns into egglog rules.
"""

from __future__ import annotations

from egglog import (
    Expr,
    String,
    StringLike,
    eq,
    function,
    i64,
    i64Like,
    ne,
    relation,
    rewrite,
    rule,
    ruleset,
    var,
)

from .rules import FACTS, REWRITES, Fact, Rewrite
from .terms import SIGNATURES, Term


class Tensor(Expr):
    """A tensor term over symbolic grid and loop names."""


# egg_fn pins the egglog names ("fv_" + terms.py's op name; bare names clash with primitives)
@function(egg_fn="fv_var")
def f_var(name: StringLike) -> Tensor: ...
@function(egg_fn="fv_partition")
def f_partition(t: Tensor, dim: i64Like, name: StringLike) -> Tensor: ...
@function(egg_fn="fv_replicate")
def f_replicate(t: Tensor, name: StringLike) -> Tensor: ...
@function(egg_fn="fv_combine")
def f_combine(t: Tensor, dim: i64Like, name: StringLike) -> Tensor: ...
@function(egg_fn="fv_reduce")
def f_reduce(t: Tensor, name: StringLike) -> Tensor: ...
@function(egg_fn="fv_rmean")
def f_rmean(t: Tensor, name: StringLike) -> Tensor: ...
@function(egg_fn="fv_add")
def f_add(a: Tensor, b: Tensor) -> Tensor: ...
@function(egg_fn="fv_sub")
def f_sub(a: Tensor, b: Tensor) -> Tensor: ...
@function(egg_fn="fv_mul")
def f_mul(a: Tensor, b: Tensor) -> Tensor: ...
@function(egg_fn="fv_div")
def f_div(a: Tensor, b: Tensor) -> Tensor: ...
@function(egg_fn="fv_matmul")
def f_matmul(a: Tensor, b: Tensor) -> Tensor: ...
@function(egg_fn="fv_exp")
def f_exp(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_sqrt")
def f_sqrt(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_silu")
def f_silu(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_neg")
def f_neg(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_gelu")
def f_gelu(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_gelu_tanh")
def f_gelu_tanh(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_relu")
def f_relu(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_sigmoid")
def f_sigmoid(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_tanh")
def f_tanh(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_erf")
def f_erf(a: Tensor) -> Tensor: ...
@function(egg_fn="fv_scale")
def f_scale(a: Tensor, c: StringLike) -> Tensor: ...
@function(egg_fn="fv_shift")
def f_shift(a: Tensor, c: StringLike) -> Tensor: ...
@function(egg_fn="fv_sum")
def f_sum(t: Tensor, dim: i64Like) -> Tensor: ...
@function(egg_fn="fv_mean")
def f_mean(t: Tensor, dim: i64Like) -> Tensor: ...
@function(egg_fn="fv_max")
def f_max(t: Tensor, dim: i64Like) -> Tensor: ...


unit = relation("fv_unit", Tensor, i64)  # the tensor has size 1 along the data dim
batch_dim = relation("fv_batch", i64)  # a data dim that is a matmul batch dim
indexed = relation("fv_indexed", Tensor, String)  # the tensor carries the named axis

CONSTRUCTORS = {"var": f_var, "partition": f_partition, "replicate": f_replicate,
                "combine": f_combine, "reduce": f_reduce, "rmean": f_rmean, "add": f_add,
                "sub": f_sub, "mul": f_mul, "div": f_div, "matmul": f_matmul, "exp": f_exp,
                "sqrt": f_sqrt, "silu": f_silu, "neg": f_neg, "gelu": f_gelu,
                "gelu_tanh": f_gelu_tanh, "sigmoid": f_sigmoid, "relu": f_relu, "tanh": f_tanh,
                "erf": f_erf,
                "scale": f_scale, "shift": f_shift, "sum": f_sum, "mean": f_mean, "max": f_max}

BATCH_DIMS = range(-8, -2)  # the batch dims declared in every proof's e-graph
_KIND_SORT = {"t": Tensor, "d": i64, "g": String, "name": String, "c": String}


def to_egglog(term: Term, variables: dict | None = None, kinds: dict | None = None):
    """An egglog expression for a term or pattern ("?x" strings become egglog variables).

    Ensures: `kinds` (when given) records each pattern variable's kind ("t", "d" or "g").
    """
    variables = {} if variables is None else variables
    kinds = {} if kinds is None else kinds
    if isinstance(term, str):  # a tensor pattern variable on its own
        kinds.setdefault(term, "t")
        return variables.setdefault(term, var(term[1:], Tensor))
    op, *args = term
    built = []
    for kind, arg in zip(SIGNATURES[op], args):
        if isinstance(arg, str) and arg.startswith("?"):
            kinds.setdefault(arg, kind)
            if arg not in variables:
                variables[arg] = var(arg[1:], _KIND_SORT[kind])
            built.append(variables[arg])
        elif kind == "t":
            built.append(to_egglog(arg, variables, kinds))
        else:
            built.append(i64(arg) if kind == "d" else String(arg))
    return CONSTRUCTORS[op](*built)


def _condition(cond: tuple, variables: dict, kinds: dict):
    def value(x, sort):
        if isinstance(x, str) and x.startswith("?"):
            return variables[x]
        return i64(x) if sort is i64 else String(x)

    head, *args = cond
    if head == "ne":
        sort = i64 if kinds[args[0]] == "d" else String
        return ne(value(args[0], sort)).to(value(args[1], sort))
    if head == "unit":
        return unit(variables[args[0]], value(args[1], i64))
    if head == "indexed":
        return indexed(variables[args[0]], value(args[1], String))
    if head == "batch":
        return batch_dim(value(args[0], i64))
    raise ValueError(f"unknown rule condition {head!r}")


def egglog_rewrite(rewrite_rule: Rewrite):
    """The egglog rewrite of one rules.py Rewrite."""
    variables: dict = {}
    kinds: dict = {}
    lhs = to_egglog(rewrite_rule.lhs, variables, kinds)
    rhs = to_egglog(rewrite_rule.rhs, variables, kinds)
    conditions = [_condition(c, variables, kinds) for c in rewrite_rule.conditions]
    return rewrite(lhs).to(rhs, *conditions)


def egglog_fact(fact: Fact):
    """The egglog rule of one analysis Fact: node and premises imply relation(node, about)."""
    kind = "d" if fact.relation == "unit" else "g"
    variables: dict = {}
    kinds: dict = {fact.about: kind}
    node = to_egglog(fact.term, variables, kinds)
    variables.setdefault(fact.about, var(fact.about[1:], _KIND_SORT[kind]))
    matched = var("fact_node", Tensor)
    premises = [eq(matched).to(node)] + [_condition(c, variables, kinds) for c in fact.premises]
    conclude = unit if fact.relation == "unit" else indexed
    return rule(*premises).then(conclude(matched, variables[fact.about]))


def formal_ruleset():
    """Every rewrite and analysis fact as one egglog ruleset."""
    return ruleset(*[egglog_rewrite(r) for r in REWRITES], *[egglog_fact(f) for f in FACTS],
                   name="formal_verifier")
