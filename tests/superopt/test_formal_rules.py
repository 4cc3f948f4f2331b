"""Soundness of the formal verifier's rule set, and its evaluator against the µGraph
interpreter: every rewrite (and every analysis fact) is checked on random concrete instances,
enumerated from rules.py so that a new rule is covered without further work."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mlc.compiler.superopt.mugraph import FloatArith, run_mugraph
from mlc.compiler.superopt.mugraph.fixtures import load_fixture
from mlc.compiler.superopt.verify.formal.evaluate import (
    EvaluationError,
    NamedValue,
    evaluate,
    plain,
)
from mlc.compiler.superopt.verify.formal.lift import lift_mugraph, name_sizes
from mlc.compiler.superopt.verify.formal.rules import FACTS, REWRITES
from mlc.compiler.superopt.verify.formal.terms import SIGNATURES

NAMES = ("g", "h")          # the grid names pattern variables range over (they may collide)
CONTEXT = "ctx"             # an extra named axis a bound tensor may carry
CONSTANTS = ("0.5", "-3.0")  # what a scale / shift constant ("c") ranges over
DIMS = (-1, -2, -3)
SIZES = (1, 6, 6, 12)       # 6 and 12 split into 2 or 3 chunks
ATTEMPTS = 400
MIN_INSTANCES = 8


def _kinds(pattern, found: dict) -> dict:
    """Pattern variable -> kind ("t", "d", "g"), read off SIGNATURES."""
    if isinstance(pattern, str):
        found.setdefault(pattern, "t")
        return found
    for kind, arg in zip(SIGNATURES[pattern[0]], pattern[1:]):
        if kind == "t":
            _kinds(arg, found)
        elif isinstance(arg, str) and arg.startswith("?"):
            found.setdefault(arg, kind)
    return found


def _substitute(pattern, binding: dict):
    if isinstance(pattern, str):
        return binding.get(pattern, pattern)
    return tuple(_substitute(a, binding) if isinstance(a, (tuple, str)) else a
                 for a in pattern)


def _sample(rng, kinds: dict, conditions) -> tuple[dict, dict, dict] | None:
    """A random binding meeting the conditions: pattern vars -> dims, names, or var leaves."""
    picks = {"d": lambda: int(rng.choice(DIMS)), "c": lambda: str(rng.choice(CONSTANTS)),
             "g": lambda: str(rng.choice(NAMES))}
    binding = {v: picks[k]() for v, k in kinds.items() if k != "t"}
    unit_dims: dict[str, list[int]] = {}
    indexed: dict[str, set[str]] = {}
    for head, *args in conditions:
        values = [binding.get(a, a) for a in args]
        if head == "ne" and values[0] == values[1]:
            return None
        if head == "batch" and values[0] > -3:
            return None
        if head == "unit":
            unit_dims.setdefault(args[0], []).append(values[1])
        if head == "indexed":
            indexed.setdefault(args[0], set()).add(values[1])
    sizes = {"g": int(rng.choice((2, 3))), "h": int(rng.choice((2, 3))), CONTEXT: 2}
    env = {}
    for v, k in kinds.items():
        if k != "t":
            continue
        shape = [int(rng.choice(SIZES)) for _ in DIMS]
        for dim in unit_dims.get(v, []):
            shape[dim] = 1
        axes = tuple(a for a in NAMES + (CONTEXT,)
                     if a in indexed.get(v, ()) or rng.random() < 0.3)
        lead = tuple(sizes[a] for a in axes)
        env[v[1:]] = NamedValue(axes, rng.uniform(0.5, 2.0, lead + tuple(shape)))
        binding[v] = ("var", v[1:])
    return binding, env, sizes


def _same(left: NamedValue, right: NamedValue) -> bool:
    if set(left.axes) != set(right.axes):
        return False
    order = [right.axes.index(a) for a in left.axes]
    rest = list(range(len(right.axes), right.array.ndim))
    moved = np.transpose(right.array, order + rest)
    return moved.shape == left.array.shape and np.allclose(left.array, moved, rtol=1e-9)


def _instances(rng, lhs, conditions, kinds):
    """Yield (binding, env, sizes, lhs value) for random instances where lhs is defined."""
    for _ in range(ATTEMPTS):
        sample = _sample(rng, kinds, conditions)
        if sample is None:
            continue
        binding, env, sizes = sample
        try:
            value = evaluate(_substitute(lhs, binding), env, sizes)
        except EvaluationError:
            continue
        yield binding, env, sizes, value


def test_rule_names_are_unique():
    assert len({r.name for r in REWRITES}) == len(REWRITES)
    assert len({f.name for f in FACTS}) == len(FACTS)


@pytest.mark.parametrize("rule", REWRITES, ids=lambda r: r.name)
def test_rewrite_is_sound(rule):
    """Both sides agree numerically wherever the left side is defined."""
    rng = np.random.default_rng(zlib.crc32(rule.name.encode()))
    kinds = _kinds(rule.rhs, _kinds(rule.lhs, {}))
    assert set(kinds) == set(_kinds(rule.lhs, {})), "rhs introduces a variable"
    checked = 0
    for binding, env, sizes, left in _instances(rng, rule.lhs, rule.conditions, kinds):
        right = evaluate(_substitute(rule.rhs, binding), env, sizes)
        assert _same(left, right), (rule.name, binding)
        checked += 1
    assert checked >= MIN_INSTANCES, f"{rule.name}: only {checked} valid random instances"


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.name)
def test_fact_is_sound(fact):
    """Where the premises hold, the node has size 1 along the fact's dim ("unit") or carries
    the fact's name as an axis ("indexed")."""
    rng = np.random.default_rng(zlib.crc32(fact.name.encode()))
    checked = 0
    kinds = {fact.about: "d" if fact.relation == "unit" else "g", **_kinds(fact.term, {})}
    for binding, _, _, value in _instances(rng, fact.term, fact.premises, kinds):
        about = binding[fact.about]
        if fact.relation == "unit":
            assert value.array.shape[value.data_axis(about)] == 1, (fact.name, binding)
        else:
            assert about in value.axes, (fact.name, binding)
        checked += 1
    assert checked >= MIN_INSTANCES, f"{fact.name}: only {checked} valid random instances"


LIFTABLE = [f"{name}{size}" for name in ("rmsnorm_matmul", "gated_mlp", "lora", "gqa",
                                         "qknorm", "ntrans") for size in ("_small", "")]


@pytest.mark.parametrize("name", LIFTABLE)
def test_evaluator_matches_interpreter_on_lifted_fixture(name):
    graph = load_fixture(name)
    rng = np.random.default_rng(3)
    inputs = {k: rng.uniform(0.5, 1.5, shape) for k, shape in graph.inputs.items()}
    expected = run_mugraph(graph, inputs, FloatArith())
    env = {k: plain(v) for k, v in inputs.items()}
    for output, term in lift_mugraph(graph).items():
        value = evaluate(term, env, name_sizes(graph))
        assert value.axes == ()
        np.testing.assert_allclose(value.array, expected[output], rtol=1e-5, atol=1e-5)
