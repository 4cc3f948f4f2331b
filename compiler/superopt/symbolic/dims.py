"""Symbolic dimensions of an sGraph: monomials over data-dim symbols and size variables, and
the generic point that lets the concrete enumeration compute with them exactly.

A dim is a product of data-dim symbols (D0, D1, ...: one per logical dim of the workload, as
generators.dim_labels names them) over a product of variables (g0, g1, g2: the grid; f: the
for-loop range), e.g. D1/(g0*f). Block tile dims are always of this form (a grid axis and the
loop each divide a dim at most once); reduction sizes multiply them.

Generic point. Each variable gets a distinct small prime (g0=3, g1=5, g2=7, f=11) and each
data symbol Dk the value PRIMES[k] * 1155 (1155 = 3*5*7*11, so every D/(vars) is an integer).
By unique factorization the value of a monomial determines the monomial: `decode` inverts
`encode`. So the concrete machinery (shape rules, abstract-expression sizes, the target
e-graph's split rule) run at the generic point computes with the symbolic expressions
exactly: two dims are equal there iff their expressions are identical.

    >>> d = Dim(("D1",), ("g0", "f"))
    >>> str(d), decode(encode(d)) == d
    ('D1/(g0*f)', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GRID_VARS = ("g0", "g1", "g2")
LOOP_VAR = "f"
VARIABLES = (*GRID_VARS, LOOP_VAR)
VARIABLE_PRIMES = {"g0": 3, "g1": 5, "g2": 7, "f": 11}
PRIME_VARIABLE = {p: v for v, p in VARIABLE_PRIMES.items()}
ALL_VARIABLES = math.prod(VARIABLE_PRIMES.values())  # 1155
DATA_PRIMES = (13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


class SymbolicError(ValueError):
    """A value that is not a monomial of the generic point, or a binding that leaves a
    division inexact."""


def symbol(index: int) -> str:
    """The name of data dim `index` (a dim label): D0, D1, ..."""
    if not 0 <= index < len(DATA_PRIMES):
        raise SymbolicError(f"at most {len(DATA_PRIMES)} data dims are supported, "
                            f"got label {index}")
    return f"D{index}"


def _symbol_prime(name: str) -> int:
    return DATA_PRIMES[int(name[1:])]


@dataclass(frozen=True, order=True)
class Dim:
    """A monomial: product of data symbols (with repeats) over product of variables."""

    symbols: tuple[str, ...] = ()
    over: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "symbols", tuple(sorted(self.symbols)))
        object.__setattr__(self, "over", tuple(sorted(self.over, key=VARIABLES.index)))

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


def encode(dim: Dim) -> int:
    """The dim's value at the generic point."""
    top = math.prod(_symbol_prime(s) * ALL_VARIABLES for s in dim.symbols)
    return top // math.prod(VARIABLE_PRIMES[v] for v in dim.over)


def generic_size(index: int) -> int:
    """The generic value of data symbol D<index>."""
    return encode(Dim((symbol(index),)))


def decode(value: int) -> Dim:
    """The monomial whose generic value is `value` (1 is the empty monomial)."""
    if value < 1:
        raise SymbolicError(f"{value} is not a generic size")
    rest, symbols = value, []
    for index, prime in enumerate(DATA_PRIMES):
        while rest % prime == 0:
            rest //= prime
            symbols.append(symbol(index))
    counts = {}
    for variable, prime in VARIABLE_PRIMES.items():
        counts[variable] = 0
        while rest % prime == 0:
            rest //= prime
            counts[variable] += 1
    if rest != 1:
        raise SymbolicError(f"{value} has a factor {rest} outside the generic primes")
    over = []
    for variable, count in counts.items():
        missing = len(symbols) - count  # every symbol brings one factor of each variable
        if missing < 0:
            raise SymbolicError(f"{value} is not a monomial D/(vars) (too many {variable})")
        over += [variable] * missing
    return Dim(tuple(symbols), tuple(over))


def is_generic(value: int) -> bool:
    try:
        decode(value)
    except SymbolicError:
        return False
    return True
