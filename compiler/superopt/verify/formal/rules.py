"""The formal verifier's rule set as data: directional rewrites over term patterns (terms.py
tuples whose "?x" strings are pattern variables), each with side conditions.

Conditions: ("ne", x, y) two dims or names differ; ("unit", t, d) tensor t has size 1 along
data dim d and ("indexed", t, g) t varies over name g (analysis facts, see FACTS); ("batch", d)
d is a batch dim of a matmul (d <= -3).
Families: parallelization (partition / replicate / combine / reduce move through ops), matmul
splits, and algebra. Activations (gelu, sigmoid, ...) are uninterpreted elementwise functions:
they only commute with partition / replicate, so a proof needs the candidate to apply the same
activation to the same value (silu = x * sigmoid(x) is the one identity used). A constant
("?k", kind "c") is compared by name, so scale(scale(x, 2), 3) is not scale(x, 6).
Every rewrite is sound for every binding that makes its left side defined;
tests/superopt/test_formal_rules.py checks each numerically.
"""

from __future__ import annotations

from dataclasses import dataclass

from .terms import BINARY, DIM_REDUCTIONS, UNARY, WITH_CONSTANT


@dataclass(frozen=True)
class Rewrite:
    name: str
    lhs: tuple
    rhs: tuple
    conditions: tuple = ()


@dataclass(frozen=True)
class Fact:
    """Analysis: when a node `term` exists and `premises` hold, relation(term, about) holds,
    relation "unit" (about a dim variable) or "indexed" (about a name variable)."""

    name: str
    term: tuple
    premises: tuple
    about: str
    relation: str = "unit"


A, B, C, T = "?a", "?b", "?c", "?t"
D, E = "?d", "?e"
G, H = "?g", "?h"
K = "?k"


def part(t, d, g):
    return ("partition", t, d, g)


def repl(t, g):
    return ("replicate", t, g)


def comb(t, d, g):
    return ("combine", t, d, g)


def red(t, g):
    return ("reduce", t, g)


def _parallel_elementwise() -> list[Rewrite]:
    rules = []
    for op in UNARY:
        rules += [Rewrite(f"{op}-partition", (op, part(A, D, G)), part((op, A), D, G)),
                  Rewrite(f"{op}-replicate", (op, repl(A, G)), repl((op, A), G))]
    for op in WITH_CONSTANT:
        rules += [Rewrite(f"{op}-partition", (op, part(A, D, G), K), part((op, A, K), D, G)),
                  Rewrite(f"{op}-replicate", (op, repl(A, G), K), repl((op, A, K), G))]
    for op in BINARY + ("matmul",):
        rules.append(Rewrite(f"{op}-replicate-replicate", (op, repl(A, G), repl(B, G)),
                             repl((op, A, B), G)))
    for op in BINARY:
        rules += [
            Rewrite(f"{op}-partition-partition", (op, part(A, D, G), part(B, D, G)),
                    part((op, A, B), D, G)),
            # division by a row statistic commutes with a column partition (and so on)
            Rewrite(f"{op}-partition-replicate", (op, part(A, D, G), repl(B, G)),
                    part((op, A, B), D, G), (("unit", B, D),)),
            Rewrite(f"{op}-replicate-partition", (op, repl(A, G), part(B, D, G)),
                    part((op, A, B), D, G), (("unit", A, D),)),
        ]
    return rules


def _parallel_structure() -> list[Rewrite]:
    rules = [
        Rewrite("combine-partition", comb(part(T, D, G), D, G), T),
        # a later kernel re-splitting what an earlier one concatenated (same name, same size)
        Rewrite("partition-combine", part(comb(T, D, G), D, G), T),
        Rewrite("partition-combine-swap", part(comb(T, D, G), E, H), comb(part(T, E, H), D, G),
                (("ne", D, E), ("ne", G, H))),
        Rewrite("partition-partition-swap", part(part(T, D, G), E, H), part(part(T, E, H), D, G),
                (("ne", D, E), ("ne", G, H))),
        Rewrite("replicate-partition-swap", repl(part(T, D, G), H), part(repl(T, H), D, G),
                (("ne", G, H),)),
        Rewrite("partition-replicate-swap", part(repl(T, H), D, G), repl(part(T, D, G), H),
                (("ne", G, H),)),
        Rewrite("replicate-replicate-swap", repl(repl(T, G), H), repl(repl(T, H), G),
                (("ne", G, H),)),
        Rewrite("combine-partition-swap", comb(part(T, D, H), E, G), part(comb(T, E, G), D, H),
                (("ne", D, E), ("ne", G, H))),
        Rewrite("reduce-partition-swap", red(part(T, D, H), G), part(red(T, G), D, H),
                (("ne", G, H),)),
        Rewrite("reduce-replicate-swap", red(repl(T, H), G), repl(red(T, G), H),
                (("ne", G, H),)),
        Rewrite("reduce-add", red(("add", A, B), G), ("add", red(A, G), red(B, G)),
                (("indexed", A, G), ("indexed", B, G))),
        Rewrite("sum-of-partition-chunks", red(("sum", part(T, D, G), D), G), ("sum", T, D)),
        Rewrite("mean-of-partition-chunks", ("rmean", ("mean", part(T, D, G), D), G),
                ("mean", T, D)),
        Rewrite("sum-of-sum", ("sum", ("sum", T, D), D), ("sum", T, D)),
        Rewrite("sum-over-combine", ("sum", comb(T, D, G), D), red(("sum", T, D), G)),
        Rewrite("mean-over-combine", ("mean", comb(T, D, G), D), ("rmean", ("mean", T, D), G)),
    ]
    for op in DIM_REDUCTIONS:
        rules += [Rewrite(f"{op}-partition-other-dim", (op, part(T, D, G), E),
                          part((op, T, E), D, G), (("ne", D, E),)),
                  Rewrite(f"{op}-replicate", (op, repl(T, G), E), repl((op, T, E), G))]
    return rules


def _matmul_splits() -> list[Rewrite]:
    return [
        Rewrite("matmul-rows", ("matmul", part(A, -2, G), repl(B, G)),
                part(("matmul", A, B), -2, G)),
        Rewrite("matmul-columns", ("matmul", repl(A, G), part(B, -1, G)),
                part(("matmul", A, B), -1, G)),
        Rewrite("matmul-batch", ("matmul", part(A, D, G), part(B, D, G)),
                part(("matmul", A, B), D, G), (("batch", D),)),
        # split-K: the partial products summed over the same name are the whole product
        Rewrite("matmul-split-k", red(("matmul", part(A, -1, G), part(B, -2, G)), G),
                ("matmul", A, B)),
        Rewrite("reduce-matmul-left", red(("matmul", A, repl(B, G)), G),
                ("matmul", red(A, G), B), (("indexed", A, G),)),
        Rewrite("reduce-matmul-right", red(("matmul", repl(A, G), B), G),
                ("matmul", A, red(B, G)), (("indexed", B, G),)),
    ]


def _both_ways(name, lhs, rhs, conditions=()) -> list[Rewrite]:
    return [Rewrite(f"{name}", lhs, rhs, conditions), Rewrite(f"{name}-rev", rhs, lhs, conditions)]


def _algebra() -> list[Rewrite]:
    return [
        Rewrite("add-comm", ("add", A, B), ("add", B, A)),
        Rewrite("mul-comm", ("mul", A, B), ("mul", B, A)),
        *_both_ways("add-assoc", ("add", A, ("add", B, C)), ("add", ("add", A, B), C)),
        *_both_ways("mul-assoc", ("mul", A, ("mul", B, C)), ("mul", ("mul", A, B), C)),
        Rewrite("mul-distribute", ("mul", A, ("add", B, C)),
                ("add", ("mul", A, B), ("mul", A, C))),
        Rewrite("div-distribute", ("div", ("add", A, B), C),
                ("add", ("div", A, C), ("div", B, C))),
        # matmul distributes only from sums to products: the other way round a broadcast
        # summand (size 1 along the contracted dim) would give an ill-shaped product
        Rewrite("matmul-factor-left", ("add", ("matmul", A, B), ("matmul", A, C)),
                ("matmul", A, ("add", B, C))),
        Rewrite("matmul-factor-right", ("add", ("matmul", A, C), ("matmul", B, C)),
                ("matmul", ("add", A, B), C)),
        *_both_ways("mul-div-assoc", ("mul", A, ("div", B, C)), ("div", ("mul", A, B), C)),
        # (x a) b = x (a b): a low-rank update folded into the weight, as LoRA kernels do
        *_both_ways("matmul-assoc", ("matmul", A, ("matmul", B, C)),
                    ("matmul", ("matmul", A, B), C)),
        # a per-row divisor (size 1 along the contracted dim) moves out of a matmul
        *_both_ways("matmul-row-divisor", ("matmul", ("div", A, C), B),
                    ("div", ("matmul", A, B), C), (("unit", C, -1),)),
        Rewrite("sub-as-add", ("sub", A, B), ("add", A, ("neg", B))),
        *_both_ways("silu-as-sigmoid", ("silu", A), ("mul", A, ("sigmoid", A))),
    ] + _scale_algebra()


def _scale_algebra() -> list[Rewrite]:
    """A constant factor moves out of linear ops (outward only: both sides of a proof then
    reach the same form), e.g. an attention scale applied before or after Q K^T."""
    def scale(t):
        return ("scale", t, K)

    return [
        Rewrite("scale-out-of-matmul-left", ("matmul", scale(A), B), scale(("matmul", A, B))),
        Rewrite("scale-out-of-matmul-right", ("matmul", A, scale(B)), scale(("matmul", A, B))),
        Rewrite("scale-out-of-mul", ("mul", scale(A), B), scale(("mul", A, B))),
        Rewrite("scale-out-of-div", ("div", scale(A), B), scale(("div", A, B))),
        Rewrite("scale-out-of-reduce", red(scale(A), G), scale(red(A, G))),
        Rewrite("scale-out-of-sum", ("sum", scale(A), D), scale(("sum", A, D))),
    ]


REWRITES: tuple[Rewrite, ...] = tuple(
    _parallel_elementwise() + _parallel_structure() + _matmul_splits() + _algebra())


def _facts() -> list[Fact]:
    facts = [Fact(f"{op}-is-unit", (op, T, D), (), D) for op in DIM_REDUCTIONS]
    facts += [Fact(f"{op}-keeps-unit", (op, A), (("unit", A, D),), D) for op in UNARY]
    facts += [Fact(f"{op}-keeps-unit", (op, A, K), (("unit", A, D),), D) for op in WITH_CONSTANT]
    facts += [Fact(f"{op}-keeps-unit", (op, A, B), (("unit", A, D), ("unit", B, D)), D)
              for op in BINARY]
    facts += [
        Fact("partition-keeps-unit", part(A, E, G), (("unit", A, D), ("ne", D, E)), D),
        Fact("replicate-keeps-unit", repl(A, G), (("unit", A, D),), D),
        Fact("reduce-keeps-unit", red(A, G), (("unit", A, D),), D),
        Fact("rmean-keeps-unit", ("rmean", A, G), (("unit", A, D),), D),
    ]
    return facts + _index_facts()


def _index_facts() -> list[Fact]:
    """indexed(t, g): t carries a named axis g (so a reduction over g sums |g| distinct terms
    rather than scaling one)."""
    facts = [Fact("partition-indexes", part(A, D, G), (), G, "indexed"),
             Fact("replicate-indexes", repl(A, G), (), G, "indexed")]
    for op in UNARY:
        facts.append(Fact(f"{op}-keeps-index", (op, A), (("indexed", A, G),), G, "indexed"))
    for op in WITH_CONSTANT:
        facts.append(Fact(f"{op}-keeps-index", (op, A, K), (("indexed", A, G),), G, "indexed"))
    for op in DIM_REDUCTIONS:
        facts.append(Fact(f"{op}-keeps-index", (op, A, D), (("indexed", A, G),), G, "indexed"))
    for op in BINARY + ("matmul",):
        facts += [Fact(f"{op}-keeps-index-left", (op, A, B), (("indexed", A, G),), G,
                       "indexed"),
                  Fact(f"{op}-keeps-index-right", (op, A, B), (("indexed", B, G),), G,
                       "indexed")]
    other = (("indexed", A, G), ("ne", G, H))
    facts += [Fact("partition-keeps-index", part(A, D, H), other, G, "indexed"),
              Fact("replicate-keeps-index", repl(A, H), other, G, "indexed"),
              Fact("combine-keeps-index", comb(A, D, H), other, G, "indexed"),
              Fact("reduce-keeps-index", red(A, H), other, G, "indexed"),
              Fact("rmean-keeps-index", ("rmean", A, H), other, G, "indexed")]
    return facts


FACTS: tuple[Fact, ...] = tuple(_facts())

