"""Finite-field arithmetic for probabilistic verification: FieldArith runs a µGraph over
Z_p x Z_q (q | p - 1), the same interface as FloatArith, so one interpreter serves both.

A value is a pair of integer-valued arrays, one residue mod P and one mod Q: int64, or float64
for random inputs, which then feed float64 matmuls without a conversion copy (residues, their
products and row sums are exact float64 integers). Add, sub, mul and div act per component (a
mean divides by its count's inverse); exp maps the q-component x_q to omega^x_q mod P, with
omega a random Q-th root of unity drawn per trial, so exp(a + b) = exp(a) * exp(b) exactly.
Functions outside the field's algebra become *consistent* functions (the same input always
gives the same output), which is all an equality test between two programs needs:

- 1 / 0 := 0 (x^(m-2) mod m is 0 at 0); sqrt(x) := x^((m+1)/4) mod m, a square root of x when
  x is a square and of -x otherwise (both primes are 3 mod 4);
- silu(x) := x * exp(x), Mirage's LAX substitute for x * sigmoid(x);
- max and running_max := 0. A correct softmax is invariant to the row shift it subtracts
  (online softmax: exp(m_i - m_final) becomes exp(0) = 1), so the max cancels in any correct
  program; a misused max is the float check's job;
- a constant (a scale factor, a shift, a norm's epsilon) is its exact value when it is an
  integer or a small exact rational, else a random residue drawn per trial from the constant's
  bits: a fresh variable, so c * x and c' * x with different floats c != c' still differ, while
  both programs read the same residue for the same float;
- gelu, gelu_tanh, sigmoid, tanh and erf have no field algebra: each is an *uninterpreted*
  function, a random table over the residues drawn per trial (independent per function and
  component). Equality then means "the same function of the same value": a candidate that
  rewrites gelu through erf, or moves a factor across tanh, is rejected here (sound, not
  complete); the numbers themselves are the float stage's job (probabilistic.py states its
  tolerance).

The q-component of exp is the constant 1 (the trivial character of Z_q): it keeps exp(0) = 1
and exp(a + b) = exp(a) * exp(b) true in both components, so identities a correct rewrite uses
hold everywhere, and the q-component still checks the program with exp's argument ignored.
Mirage uses 0 there, which zeroes every path through exp in that component.

Matmuls are exact and fast: residues are below 2^15, so a float64 BLAS matmul sums products
below 2^30 exactly as long as the inner dim stays under 2^53 / (P - 1)^2 (about 8.4 million);
larger inner dims are split into chunks.
"""

from __future__ import annotations

import zlib
from fractions import Fraction

import numpy as np

from ..mugraph import MuGraphError

# p = 2q + 1 with both prime and both = 3 (mod 4): the largest such pair below 2^15. q | p - 1
# makes omega's order q; p = 3 (mod 4) and q = 3 (mod 4) give sqrt by one exponentiation.
P = 32183
Q = 16091
# Largest inner dim whose float64 dot products of residues < P stay exact integers.
EXACT_INNER_DIM = (2**53 - 1) // (P - 1) ** 2


def pow_mod(base: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
    """Vectorized base ** exponent mod modulus by square-and-multiply (int64, modulus < 2^31)."""
    base = np.asarray(base, dtype=np.int64) % modulus
    result = np.ones_like(base)
    while exponent:
        if exponent & 1:
            result = result * base % modulus
        base = base * base % modulus
        exponent >>= 1
    return result


def _table(modulus: int, exponent: int) -> np.ndarray:
    return pow_mod(np.arange(modulus, dtype=np.int64), exponent, modulus)


# Lookup tables over every residue (32 KiB entries): one gather per div or sqrt.
INVERSE = {m: _table(m, m - 2) for m in (P, Q)}
SQRT = {m: _table(m, (m + 1) // 4) for m in (P, Q)}
# CRT: x = x_p + P * ((x_q - x_p) * P^-1 mod Q) is the residue mod P*Q of a pair.
_P_INVERSE_MOD_Q = int(pow(P, Q - 2, Q))


class FieldValue:
    """A tensor over Z_P x Z_Q: `p` holds residues mod P, `q` residues mod Q (same shape)."""

    __slots__ = ("p", "q")

    def __init__(self, p: np.ndarray, q: np.ndarray):
        self.p = p
        self.q = q

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.p.shape)

    def __repr__(self) -> str:
        return f"FieldValue(shape={self.shape})"


def random_field_value(rng: np.random.Generator, shape) -> FieldValue:
    """Random over Z_P x Z_Q (independent components), as float64 residues.

    floor(u * m) for a uniform double u (2^53 equally likely values) gives each residue
    probability 1/m up to a relative error below m / 2^53 < 4e-12, about twice as fast as
    drawing integers and converting them.
    """
    return FieldValue(_uniform_residues(rng, shape, P), _uniform_residues(rng, shape, Q))


def _uniform_residues(rng: np.random.Generator, shape, modulus: int) -> np.ndarray:
    values = rng.random(shape)
    np.multiply(values, modulus, out=values)
    return np.floor(values, out=values)


def random_omega(rng: np.random.Generator) -> int:
    """A uniformly random primitive Q-th root of unity mod P.

    With P = 2Q + 1 the Q-th roots of unity are the squares; g^2 for g in [2, P - 2] hits each
    root other than 1 exactly twice (g and -g).
    """
    return int(pow(int(rng.integers(2, P - 1)), (P - 1) // Q, P))


def _exact_fraction(factor) -> Fraction:
    """factor as a small-denominator rational, or MuGraphError if it is not one exactly."""
    if isinstance(factor, (int, np.integer, Fraction)):
        return Fraction(factor)
    guess = Fraction(float(factor)).limit_denominator(1 << 12)
    if float(guess) != float(factor):
        raise MuGraphError(f"scale factor {factor!r} is not an exact small rational; the "
                           "finite-field check cannot represent it (use an integer or p/q)")
    return guess


class FieldArith:
    """µGraph arithmetic over Z_P x Z_Q; one instance is one trial (one omega).

    >>> arith = FieldArith(omega=random_omega(np.random.default_rng(0)))
    >>> arith.to_numpy(arith.exp(arith.from_numpy(np.array([0]))))  # exp(0) = 1
    array([1])
    """

    def __init__(self, omega: int | None = None, seed: int = 0):
        self.omega = random_omega(np.random.default_rng(seed)) if omega is None else int(omega)
        if self.omega == 1 or pow(self.omega, Q, P) != 1:
            raise ValueError(f"omega={self.omega} is not a primitive {Q}-th root of unity mod {P}")
        self._exp_table = _pow_each(self.omega, np.arange(Q, dtype=np.int64), P)  # omega^k
        self._tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # uninterpreted functions

    # ---- conversion and layout ---------------------------------------------------------------
    def from_numpy(self, array) -> FieldValue:
        """A FieldValue as is, or integers read as residues mod P*Q (split by CRT)."""
        if isinstance(array, FieldValue):
            return array
        array = np.asarray(array)
        if array.dtype.kind not in "iub":
            raise MuGraphError(f"FieldArith takes integer arrays (residues mod {P * Q}), got "
                               f"{array.dtype}")
        array = array.astype(np.int64)
        return FieldValue(array % P, array % Q)

    def to_numpy(self, value: FieldValue) -> np.ndarray:
        """The residue mod P*Q (CRT): equal arrays <=> both components equal."""
        p_part, q_part = value.p.astype(np.int64), value.q.astype(np.int64)
        return p_part + P * ((q_part - p_part) % Q * _P_INVERSE_MOD_Q % Q)

    def shape(self, value: FieldValue) -> tuple[int, ...]:
        return value.shape

    def reshape(self, value, shape):
        return FieldValue(value.p.reshape(shape), value.q.reshape(shape))

    def transpose(self, value, perm):
        return FieldValue(value.p.transpose(perm), value.q.transpose(perm))

    def broadcast_to(self, value, shape):
        return FieldValue(np.broadcast_to(value.p, shape), np.broadcast_to(value.q, shape))

    # ---- field arithmetic --------------------------------------------------------------------
    def add(self, a, b):
        return FieldValue((a.p + b.p) % P, (a.q + b.q) % Q)

    def sub(self, a, b):
        return FieldValue((a.p - b.p) % P, (a.q - b.q) % Q)

    def mul(self, a, b):
        return FieldValue(a.p * b.p % P, a.q * b.q % Q)

    def div(self, a, b):
        return FieldValue(a.p * INVERSE[P][_index(b.p)] % P, a.q * INVERSE[Q][_index(b.q)] % Q)

    def neg(self, a):
        return FieldValue(-a.p % P, -a.q % Q)

    def scale(self, a, factor):
        """a * factor (see constant())."""
        return self.mul(a, self.constant(factor))

    def shift(self, a, value):
        """a + value (see constant())."""
        return self.add(a, self.constant(value))

    def constant(self, value) -> FieldValue:
        """A float constant in the field: its exact value when it is an integer or a small
        rational, else a random residue fixed by (this trial, the float's bits)."""
        try:
            frac = _exact_fraction(value)
        except MuGraphError:
            bits = int(np.float64(value).view(np.int64)) & (2**64 - 1)
            rng = np.random.default_rng([self.omega, bits & 0xFFFFFFFF, bits >> 32])
            return FieldValue(np.int64(rng.integers(0, P)), np.int64(rng.integers(0, Q)))
        return self._constant(frac.numerator, frac.denominator)

    def activation(self, name: str, a):
        """An uninterpreted function: one random table per (trial, function, component)."""
        if name not in self._tables:
            seed = [self.omega, zlib.crc32(name.encode())]
            rng = np.random.default_rng(seed)
            self._tables[name] = (rng.integers(0, P, P), rng.integers(0, Q, Q))
        table_p, table_q = self._tables[name]
        return FieldValue(table_p[_index(a.p)], table_q[_index(a.q)])

    def divide_by_count(self, a, count: int):
        return self.mul(a, self._constant(1, count))

    def _constant(self, numerator: int, denominator: int) -> FieldValue:
        """numerator / denominator as a 0-d FieldValue (1/0 := 0 per component)."""
        return FieldValue(np.int64(numerator % P * INVERSE[P][denominator % P] % P),
                          np.int64(numerator % Q * INVERSE[Q][denominator % Q] % Q))

    # ---- consistent substitutes for transcendental functions ---------------------------------
    def exp(self, a):
        return FieldValue(self._exp_table[_index(a.q)], np.ones(a.shape, dtype=np.int64))

    def sqrt(self, a):
        return FieldValue(SQRT[P][_index(a.p)], SQRT[Q][_index(a.q)])

    def silu(self, a):
        return self.mul(a, self.exp(a))

    def max(self, a, axes):
        return FieldValue(*(np.zeros(_kept_shape(a.shape, axes), np.int64),) * 2)

    def running_max(self, a, axis):
        return FieldValue(*(np.zeros(a.shape, np.int64),) * 2)

    # ---- contractions ------------------------------------------------------------------------
    def matmul(self, a, b):
        return FieldValue(_matmul_mod(a.p, b.p, P), _matmul_mod(a.q, b.q, Q))

    def sum(self, a, axes):
        return FieldValue(np.sum(a.p, axis=axes, keepdims=True) % P,
                          np.sum(a.q, axis=axes, keepdims=True) % Q)


def _pow_each(base: int, exponents: np.ndarray, modulus: int) -> np.ndarray:
    """base ** exponents[i] mod modulus, vectorized over the exponents."""
    result = np.ones_like(exponents)
    power = np.int64(base % modulus)
    exponents = exponents.copy()
    while exponents.any():
        odd = (exponents & 1).astype(bool)
        result[odd] = result[odd] * power % modulus
        power = power * power % modulus
        exponents >>= 1
    return result


def _index(residues: np.ndarray) -> np.ndarray:
    """Residues as table indices (float64 inputs hold exact integers)."""
    return residues.astype(np.intp, copy=False)


def _kept_shape(shape, axes) -> tuple[int, ...]:
    rank = len(shape)
    reduced = {axis % rank for axis in axes}
    return tuple(1 if d in reduced else size for d, size in enumerate(shape))


def _matmul_mod(a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
    """(a @ b) mod modulus, exact: float64 BLAS on chunks of at most EXACT_INNER_DIM."""
    inner = a.shape[-1]
    total = np.mod(np.matmul(a[..., :0].astype(np.float64), b[..., :0, :].astype(np.float64)),
                   modulus)  # zeros of the output shape (also right for an empty inner dim)
    for start in range(0, inner, EXACT_INNER_DIM):
        stop = start + EXACT_INNER_DIM
        part = np.matmul(a[..., start:stop].astype(np.float64, copy=False),
                         b[..., start:stop, :].astype(np.float64, copy=False))
        total = np.mod(total + part, modulus)
    return total.astype(np.int64)
