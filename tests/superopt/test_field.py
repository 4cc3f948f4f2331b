"""FieldArith: the primes, field axioms on random arrays, and exact large-K matmuls."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.superopt.mugraph import MuGraphError
from mlc.compiler.superopt.verify import FieldArith, FieldValue, P, Q, random_field_value
from mlc.compiler.superopt.verify.field import EXACT_INNER_DIM, INVERSE, SQRT, pow_mod


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % k for k in range(2, int(n**0.5) + 1))


def _int_matmul(a, b):
    """An independent oracle: int64 matmul (no BLAS), exact while K * P^2 < 2^63."""
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def arith():
    return FieldArith(seed=7)


def test_primes():
    assert _is_prime(P) and _is_prime(Q)
    assert P == 2 * Q + 1 and (P - 1) % Q == 0
    assert P % 4 == 3 and Q % 4 == 3
    assert P < 2**15
    assert (P - 1) ** 2 * 8192 < 2**53 and EXACT_INNER_DIM >= 8192
    # the largest such pair below 2^15
    assert not any(_is_prime(q) and _is_prime(2 * q + 1) and q % 4 == 3
                   for q in range(Q + 1, 2**14))


def test_pow_mod_matches_python(rng):
    base = rng.integers(0, P, 50)
    for exponent in (0, 1, 2, 17, P - 2):
        assert pow_mod(base, exponent, P).tolist() == [pow(int(b), exponent, P) for b in base]


def test_inverse(arith, rng):
    a = random_field_value(rng, (64, 33))
    one = arith.div(a, a)
    nonzero_p, nonzero_q = a.p != 0, a.q != 0
    assert np.all(one.p[nonzero_p] == 1) and np.all(one.q[nonzero_q] == 1)
    for m in (P, Q):
        x = np.arange(1, m)
        assert np.all(x * INVERSE[m][x] % m == 1)
        assert INVERSE[m][0] == 0  # 1/0 := 0, a consistent function


def test_sqrt_is_a_root_of_x_or_minus_x(arith, rng):
    a = random_field_value(rng, (1000,))
    root = arith.sqrt(a)
    square = arith.mul(root, root)
    for got, x, m in ((square.p, a.p, P), (square.q, a.q, Q)):
        assert np.all((got == x) | (got == (-x) % m))
    squares = random_field_value(rng, (1000,))
    squares = arith.mul(squares, squares)
    root = arith.sqrt(squares)
    assert np.array_equal(arith.mul(root, root).p, squares.p)
    assert np.array_equal(arith.mul(root, root).q, squares.q)
    assert SQRT[P][0] == 0 and SQRT[Q][0] == 0


def test_exp_homomorphism(arith, rng):
    a, b = random_field_value(rng, (500,)), random_field_value(rng, (500,))
    lhs = arith.exp(arith.add(a, b))
    rhs = arith.mul(arith.exp(a), arith.exp(b))
    assert np.array_equal(lhs.p, rhs.p) and np.array_equal(lhs.q, rhs.q)
    zero = arith.from_numpy(np.zeros(3, np.int64))
    assert arith.to_numpy(arith.exp(zero)).tolist() == [1, 1, 1]
    quotient = arith.div(arith.exp(a), arith.exp(b))
    assert np.array_equal(quotient.p, arith.exp(arith.sub(a, b)).p)


def test_omega_is_random_per_seed_and_primitive():
    omegas = {FieldArith(seed=s).omega for s in range(20)}
    assert len(omegas) > 15
    for omega in omegas:
        assert omega != 1 and pow(omega, Q, P) == 1
    with pytest.raises(ValueError):
        FieldArith(omega=1)


def test_crt_round_trip(arith, rng):
    x = rng.integers(0, P * Q, 1000)
    value = arith.from_numpy(x)
    assert np.array_equal(value.p, x % P) and np.array_equal(value.q, x % Q)
    assert np.array_equal(arith.to_numpy(value), x)


@pytest.mark.parametrize("inner", [1, 64, 1000, 8192])
def test_matmul_is_exact(arith, rng, inner):
    a, b = random_field_value(rng, (3, 5, inner)), random_field_value(rng, (3, inner, 4))
    got = arith.matmul(a, b)
    assert np.array_equal(got.p, _int_matmul(a.p, b.p) % P)  # exact: < 2^43
    assert np.array_equal(got.q, _int_matmul(a.q, b.q) % Q)


def test_matmul_worst_case_stays_exact(arith):
    inner = 8192
    worst = FieldValue(np.full((2, inner), P - 1), np.full((2, inner), Q - 1))
    cols = FieldValue(np.full((inner, 3), P - 1), np.full((inner, 3), Q - 1))
    got = arith.matmul(worst, cols)
    assert np.all(got.p == (P - 1) ** 2 * inner % P)
    assert np.all(got.q == (Q - 1) ** 2 * inner % Q)


def test_ring_axioms(arith, rng):
    a, b, c = (random_field_value(rng, (200,)) for _ in range(3))
    left = arith.mul(a, arith.add(b, c))
    right = arith.add(arith.mul(a, b), arith.mul(a, c))
    assert np.array_equal(arith.to_numpy(left), arith.to_numpy(right))
    back = arith.add(arith.sub(a, b), b)
    assert np.array_equal(arith.to_numpy(back), arith.to_numpy(a))
    assert np.array_equal(arith.to_numpy(arith.add(a, arith.neg(a))), np.zeros(200))


def test_scale_and_counts(arith, rng):
    a = random_field_value(rng, (100,))
    eighth = arith.scale(a, 0.125)
    assert np.array_equal(arith.to_numpy(arith.scale(eighth, 8)), arith.to_numpy(a))
    third = arith.scale(a, 1 / 3)
    assert np.array_equal(arith.to_numpy(arith.scale(third, 3)), arith.to_numpy(a))
    assert np.array_equal(arith.to_numpy(arith.divide_by_count(a, 8)), arith.to_numpy(eighth))
    # an irrational factor is a fresh random residue per trial: consistent for one float,
    # different for another, never the exact value it cannot represent
    root = arith.scale(a, 1 / np.sqrt(128))
    assert np.array_equal(arith.to_numpy(root), arith.to_numpy(arith.scale(a, 1 / np.sqrt(128))))
    assert not np.array_equal(arith.to_numpy(root),
                              arith.to_numpy(arith.scale(a, np.float32(1 / np.sqrt(128)))))


def test_max_is_zero_and_layout(arith, rng):
    a = random_field_value(rng, (2, 3, 4))
    assert arith.to_numpy(arith.max(a, (-1,))).shape == (2, 3, 1)
    assert not arith.to_numpy(arith.max(a, (-1,))).any()
    assert not arith.to_numpy(arith.running_max(a, 1)).any()
    moved = arith.transpose(arith.reshape(a, (6, 4)), (1, 0))
    assert np.array_equal(arith.to_numpy(moved), arith.to_numpy(a).reshape(6, 4).T)
    wide = arith.broadcast_to(arith.sum(a, (0,)), (5, 3, 4))
    assert arith.shape(wide) == (5, 3, 4)
    with pytest.raises(MuGraphError, match="integer arrays"):
        arith.from_numpy(np.ones(3))


def test_matmul_chunks_the_inner_dim(arith, rng, monkeypatch):
    from mlc.compiler.superopt.verify import field
    monkeypatch.setattr(field, "EXACT_INNER_DIM", 7)
    a, b = random_field_value(rng, (3, 50)), random_field_value(rng, (50, 4))
    got = arith.matmul(a, b)
    assert np.array_equal(got.p, _int_matmul(a.p, b.p) % P)
    assert np.array_equal(got.q, _int_matmul(a.q, b.q) % Q)
