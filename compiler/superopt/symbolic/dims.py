"""Symbolic dimensions of an sGraph: monomials over data-dim symbols and size variables, and
the generic point that lets the concrete enumeration compute with them exactly.

A dim is a product of data-dim symbols (D0, D1, ...: one per logical dim of the workload, as
generators.dim_labels names them) over a product of variables: gDk, the number of blocks a
grid axis splits Dk into (each label is split by at most one grid axis), and f, the for-loop
range. Block tile dims are always of this form, e.g. D1/(gD1*f); reduction sizes multiply
them.

Generic point. The loop variable f is 3; symbol Dk owns two primes, p_k for itself and q_k
for its grid variable, and Dk = p_k * q_k * 3, so every Dk/(gDk*f) is an integer. By unique
factorization the value of a monomial determines the monomial: `decode` inverts `encode`.
The concrete machinery (shape rules, abstract-expression sizes, the target e-graph's split
rule) run at the generic point thus computes with the symbolic expressions exactly: two dims
are equal there iff their expressions are identical, and Dk has just 6 proper divisors
(Dk/gDk, Dk/f, Dk/(gDk*f), gDk, f, gDk*f), the symbolic ways to split a sum over Dk.

    >>> d = Dim(("D1",), ("gD1", "f"))
    >>> str(d), decode(encode(d)) == d
    ('D1/(gD1*f)', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOOP_VAR = "f"
LOOP_PRIME = 3
_PRIMES = (5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
           97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179,
           181)
MAX_SYMBOLS = len(_PRIMES) // 2


class SymbolicError(ValueError):
    """A value that is not a monomial of the generic point, or a binding that leaves a
    division inexact."""


def symbol(index: int) -> str:
    """The name of data dim `index` (a dim label): D0, D1, ..."""
    if not isinstance(index, int) or not 0 <= index < MAX_SYMBOLS:
        raise SymbolicError(f"at most {MAX_SYMBOLS} data dims are supported, got label "
                            f"{index!r}")
    return f"D{index}"


def grid_variable(label: int) -> str:
    """The grid variable that splits data dim `label`: gD<label>."""
    return f"g{symbol(label)}"


def symbol_index(name: str) -> int:
    """k of the symbol name D<k>; SymbolicError for anything else (names come from files)."""
    digits = name[1:] if isinstance(name, str) and name.startswith("D") else ""
    if not digits.isdigit() or not digits.isascii() or int(digits) >= MAX_SYMBOLS:
        raise SymbolicError(f"{name!r} is not a data dim symbol (D0 to D{MAX_SYMBOLS - 1})")
    return int(digits)


def variable_prime(name: str) -> int:
    """The generic value of a variable (f, or gDk)."""
    if name == LOOP_VAR:
        return LOOP_PRIME
    if not isinstance(name, str) or not name.startswith("gD"):
        raise SymbolicError(f"{name!r} is not a variable (f or gD<k>)")
    return _PRIMES[2 * symbol_index(name[1:]) + 1]


_PRIME_VARIABLE = {LOOP_PRIME: LOOP_VAR,
                   **{_PRIMES[2 * k + 1]: f"gD{k}" for k in range(MAX_SYMBOLS)}}


def prime_variable(value: int) -> str:
    """The variable whose generic value is `value` (a grid or loop size of a generic block)."""
    if value not in _PRIME_VARIABLE:
        raise SymbolicError(f"{value} is not the generic value of a variable")
    return _PRIME_VARIABLE[value]


def _symbol_primes(name: str) -> int:
    k = symbol_index(name)
    return _PRIMES[2 * k] * _PRIMES[2 * k + 1] * LOOP_PRIME


@dataclass(frozen=True, order=True)
class Dim:
    """A monomial: product of data symbols (with repeats) over product of variables."""

    symbols: tuple[str, ...] = ()
    over: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "symbols", tuple(sorted(self.symbols)))
        object.__setattr__(self, "over", tuple(sorted(self.over, key=_variable_order)))

    def __str__(self) -> str:
        top = "*".join(self.symbols) or "1"
        if not self.over:
            return top
        bottom = self.over[0] if len(self.over) == 1 else f"({'*'.join(self.over)})"
        return f"{top}/{bottom}"

    def evaluate(self, sizes: dict[str, int], variables: dict[str, int]) -> int:
        """The dim's value under a binding of the data symbols and the variables; raises
        SymbolicError when the division is not exact."""
        top = math.prod(sizes[s] for s in self.symbols)
        bottom = math.prod(variables.get(v, 1) for v in self.over)
        if bottom == 0 or top % bottom:
            raise SymbolicError(f"{self} = {top}/{bottom} is not an integer")
        return top // bottom


def _variable_order(name: str):
    return (1, 0) if name == LOOP_VAR else (0, symbol_index(name[1:]))


def encode(dim: Dim) -> int:
    """The dim's value at the generic point; raises SymbolicError for a monomial no tile can
    have (gDk over a dim without Dk, or more f than symbols)."""
    for variable in set(dim.over):
        owner = dim.symbols if variable == LOOP_VAR else [s for s in dim.symbols
                                                           if f"g{s}" == variable]
        if dim.over.count(variable) > len(owner):
            raise SymbolicError(f"{dim}: {variable} divides no dim it can split")
    top = math.prod(_symbol_primes(s) for s in dim.symbols)
    return top // math.prod(variable_prime(v) for v in dim.over)


def generic_size(index: int) -> int:
    """The generic value of data symbol D<index>."""
    return encode(Dim((symbol(index),)))


def _multiplicity(value: int, prime: int) -> tuple[int, int]:
    count = 0
    while value % prime == 0:
        value //= prime
        count += 1
    return value, count


def decode(value: int) -> Dim:
    """The monomial whose generic value is `value` (1 is the empty monomial)."""
    if value < 1:
        raise SymbolicError(f"{value} is not a generic size")
    rest, symbols, over = value, [], []
    rest, loops = _multiplicity(rest, LOOP_PRIME)
    for k in range(MAX_SYMBOLS):
        rest, own = _multiplicity(rest, _PRIMES[2 * k])
        rest, grid = _multiplicity(rest, _PRIMES[2 * k + 1])
        if grid > own:
            raise SymbolicError(f"{value} is not a monomial D/(vars) (too many gD{k})")
        symbols += [f"D{k}"] * own
        over += [f"gD{k}"] * (own - grid)
    if rest != 1:
        raise SymbolicError(f"{value} has a factor {rest} outside the generic primes")
    if loops > len(symbols):
        raise SymbolicError(f"{value} is not a monomial D/(vars) (too many f)")
    over += [LOOP_VAR] * (len(symbols) - loops)
    return Dim(tuple(symbols), tuple(over))

