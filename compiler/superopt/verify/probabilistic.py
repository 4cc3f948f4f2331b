"""Probabilistic equivalence of a candidate µGraph and a reference IR graph (Mirage §5).

Stage 1, field: `trials` independent trials over Z_P x Z_Q (field.py), each with fresh uniform
inputs and a fresh random Q-th root of unity omega; the candidate and the reference lowering
(lowering.py) must agree exactly on every output. Stage 2, float: one float64 run of the
candidate against `interpret(reference, float64=True)` on random normal inputs, which catches
what the field cannot see (a misused max, overflow-prone orderings, a wrong sqrt branch).

Error bound. Degree: inputs have degree 1; add and sub take the max of their operands'
degrees, mul and matmul add them, reductions keep them; the outputs of exp, sqrt, 1/x and max
count as fresh atoms of degree 1 (an exp's argument is itself a polynomial over Z_Q). Clearing
denominators turns "candidate output = reference output" into a polynomial identity; d bounds
its degree, and we take d = DEGREE_BOUND = 32 (the programs we compare stay under 8: attention
cross-multiplies (2, 1)-degree fractions, nTrans nests two norms). If the candidate differs
from the reference as a LAX program, a trial accepts it only if
  - some exp argument differs as a polynomial mod Q but collides at the random x_q:
    probability <= d / Q (Schwartz-Zippel over Z_Q), or
  - the nonzero difference polynomial mod P vanishes at the random point: <= d / P (over Z_P),
so one trial accepts with probability eps <= d/P + d/Q = PER_TRIAL_BOUND (about 0.003),
and t independent trials with probability <= eps^t. DEFAULT_TRIALS is the least t with
eps^t <= TARGET_FALSE_ACCEPT = 1e-9, i.e. t = ceil(ln 1e-9 / ln eps) = 4.
Uninterpreted functions. gelu, gelu_tanh, sigmoid, tanh and erf have no field algebra: the
field stage reads each as a random function (field.py), which proves only that candidate and
reference apply the same function to the same value; the numbers are then checked by the
float stage alone, in float64 against the IR interpreter, with max |candidate - reference| /
max |reference| < float_rtol (FLOAT_RTOL = 1e-4). A verdict lists such ops in `uninterpreted`.
Constants that are not small exact rationals (1/sqrt(d), eps) are random residues per trial.
Caveats: sqrt (x^((m+1)/4)), 1/0 := 0 and max := 0 are consistent functions outside the LAX
fragment, so for programs that use them the bound is the atom heuristic above, backed by the
float stage; a difference whose integer coefficients are all multiples of P or Q is invisible
(coefficients here are counts and small scale factors, far below Q).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from mlc.compiler.errors import MlcError
from mlc.compiler.ir import Graph, interpret

from ..mugraph import (
    FloatArith,
    MuGraph,
    MuGraphError,
    block_shapes,
    kernel_shapes,
    run_mugraph,
)
from ..mugraph.unary import ACTIVATIONS, library_activation
from .field import FieldArith, P, Q, random_field_value, random_omega
from .lowering import lower_to_mugraph

DEGREE_BOUND = 32
FLOAT_RTOL = 1e-4  # the float stage's bound on max |error| / max |reference|
TARGET_FALSE_ACCEPT = 1e-9
PER_TRIAL_BOUND = DEGREE_BOUND / P + DEGREE_BOUND / Q
# Float stage inputs: N(0, FLOAT_INPUT_SCALE^2) keeps softmax exponents moderate.
FLOAT_INPUT_SCALE = 0.5
# Largest tensor (elements) the interpreters materialize here: one field value is two int64
# arrays, and a reference keeps several alive, so beyond this a check would exhaust memory.
MAX_VERIFY_ELEMENTS = 1 << 25


def trials_for(false_accept: float = TARGET_FALSE_ACCEPT, degree: int = DEGREE_BOUND) -> int:
    """Field trials that push the false-accept bound (d/P + d/Q)^t below `false_accept`."""
    per_trial = degree / P + degree / Q
    return max(1, math.ceil(math.log(false_accept) / math.log(per_trial)))


DEFAULT_TRIALS = trials_for()


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one candidate.

    stage says which check decided: "field" (rejected in a finite-field trial), "float"
    (passed every field trial; the float check accepted or rejected), or "too large" (not
    checked: a tensor has more than MAX_VERIFY_ELEMENTS elements; not equivalent as far as
    this check can tell). max_error is, for a field
    rejection, the fraction of the differing output's elements that differ (1.0 when the shapes
    differ); otherwise the float check's max |candidate - reference| / max |reference|.
    output names the first differing reference output (None when equivalent).
    """

    equivalent: bool
    output: str | None
    max_error: float
    trials: int
    seconds: float
    stage: str
    uninterpreted: tuple[str, ...] = ()  # ops the field stage could only treat as functions


def verify(candidate: MuGraph, reference: Graph, *, trials: int | None = None, seed: int = 0,
           float_rtol: float = FLOAT_RTOL) -> Verdict:
    """Is `candidate` equivalent to `reference`? Inputs and outputs pair up by position.

    >>> verify(lower_to_mugraph(graph), graph).equivalent
    True
    """
    return verify_many([candidate], reference, trials=trials, seed=seed,
                       float_rtol=float_rtol)[0]


def verify_many(candidates, reference: Graph, *, trials: int | None = None, seed: int = 0,
                float_rtol: float = FLOAT_RTOL) -> list[Verdict]:
    """Verify several candidates against one reference, sharing its inputs and evaluations."""
    candidates = list(candidates)
    trials = DEFAULT_TRIALS if trials is None else trials
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    for candidate in candidates:
        _check_pairing(candidate, reference)
    lowered = lower_to_mugraph(reference)
    largest = max(math.prod(shape) for shape in kernel_shapes(lowered).values())
    if largest > MAX_VERIFY_ELEMENTS:
        return [Verdict(False, None, math.nan, 0, 0.0, "too large") for _ in candidates]
    shapes = list(lowered.inputs.values())
    seconds = [0.0] * len(candidates)
    done: list[Verdict | None] = [
        Verdict(False, None, math.nan, 0, 0.0, "too large")
        if interpreted_elements(candidate) > MAX_VERIFY_ELEMENTS else None
        for candidate in candidates]
    for trial in range(trials):
        start = time.perf_counter()
        rng = np.random.default_rng([seed, trial])
        arith = FieldArith(omega=random_omega(rng))
        values = [random_field_value(rng, shape) for shape in shapes]
        expected = _outputs(lowered, values, arith)
        shared = time.perf_counter() - start
        for index, candidate in enumerate(candidates):
            if done[index] is not None:
                continue
            start = time.perf_counter()
            mismatch = _field_mismatch(_outputs(candidate, values, arith), expected, reference)
            seconds[index] += shared + time.perf_counter() - start
            if mismatch is not None:
                done[index] = Verdict(False, *mismatch, trial + 1, seconds[index], "field")
    pending = [i for i, verdict in enumerate(done) if verdict is None]
    if pending:
        _float_stage([candidates[i] for i in pending], reference, seed, float_rtol,
                     trials, [seconds[i] for i in pending], done, pending)
    uninterpreted = uninterpreted_ops(lowered)
    if uninterpreted:
        done = [dataclasses.replace(v, uninterpreted=uninterpreted) for v in done]
    return done


def uninterpreted_ops(graph: MuGraph) -> tuple[str, ...]:
    """The activations `graph` applies, which the field stage treats as uninterpreted."""
    found = []
    for op in graph.ops:
        names = [b.op for b in op.block.ops] if op.op == "block" else \
            [library_activation(op.op, op.attrs)]
        found += [name for name in names if name in ACTIVATIONS]
    return tuple(dict.fromkeys(found))


def interpreted_elements(graph: MuGraph) -> int:
    """Largest tensor the vectorized interpreter materializes for `graph`: kernel tensors, and
    every block tile held behind its grid and for-loop axes (blocks x iterations x tile). A
    candidate past MAX_VERIFY_ELEMENTS is refused as "too large" instead of being interpreted
    for minutes (or exhausting memory) past the search's budget."""
    shapes = kernel_shapes(graph)
    largest = max((math.prod(shape) for shape in shapes.values()), default=0)
    for op in graph.ops:
        if op.op != "block":
            continue
        block = op.block
        tiles = block_shapes(block, [shapes[t] for t in op.inputs]).tiles
        copies = math.prod(block.grid) * block.forloop_range
        largest = max([largest, *(copies * math.prod(tile) for tile in tiles.values())])
    return largest


def verify_each(candidates, reference: Graph, *, seed: int = 0,
                on_error=None) -> list[Verdict | None]:
    """verify_many, but one candidate that raises (a bug on its path: interpreter, field
    arithmetic) cannot take the others down: the batch is retried one by one and a failing
    candidate gets None, its error passed to `on_error(err)`. MlcError (a refusal the user
    must see) still propagates."""
    candidates = list(candidates)
    try:
        return verify_many(candidates, reference, seed=seed)
    except MlcError:
        raise
    except Exception:  # noqa: BLE001 - isolated below, candidate by candidate
        pass
    verdicts: list[Verdict | None] = []
    for candidate in candidates:
        try:
            verdicts.append(verify_many([candidate], reference, seed=seed)[0])
        except MlcError:
            raise
        except Exception as err:  # noqa: BLE001 - counted and reported by the caller
            if on_error is not None:
                on_error(err)
            verdicts.append(None)
    return verdicts


def _check_pairing(candidate: MuGraph, reference: Graph) -> None:
    kernel_shapes(candidate)
    ours = [tuple(s) for s in candidate.inputs.values()]
    theirs = [tuple(t.shape) for t in reference.inputs.values()]
    if ours != theirs:
        raise MuGraphError(f"candidate {candidate.name!r} inputs {ours} do not pair up with "
                           f"reference {reference.name!r} inputs {theirs} (matched by position)")
    if len(candidate.outputs) != len(reference.outputs):
        raise MuGraphError(f"candidate {candidate.name!r} has {len(candidate.outputs)} outputs, "
                           f"reference {reference.name!r} has {len(reference.outputs)}")


def _outputs(graph: MuGraph, values: list, arith) -> list[np.ndarray]:
    results = run_mugraph(graph, dict(zip(graph.inputs, values)), arith)
    return [results[name] for name in graph.outputs]


def _field_mismatch(got, expected, reference: Graph):
    """(reference output name, fraction differing) of the first differing output, or None."""
    for name, ours, theirs in zip(reference.outputs, got, expected):
        if ours.shape != theirs.shape:
            return name, 1.0
        differ = np.count_nonzero(ours != theirs)
        if differ:
            return name, differ / theirs.size
    return None


def _float_stage(candidates, reference, seed, float_rtol, trials, seconds, done, where):
    """One float64 run per candidate against the IR interpreter; fills done[where[i]]."""
    start = time.perf_counter()
    rng = np.random.default_rng([seed, trials, 1])
    inputs = {name: rng.standard_normal(t.shape) * FLOAT_INPUT_SCALE
              for name, t in reference.inputs.items()}
    expected = [interpret(reference, inputs, float64=True)[name] for name in reference.outputs]
    shared = time.perf_counter() - start
    for candidate, spent, index in zip(candidates, seconds, where):
        start = time.perf_counter()
        got = _outputs(candidate, list(inputs.values()), FloatArith(np.float64))
        worst_name, worst = None, 0.0
        for name, ours, theirs in zip(reference.outputs, got, expected):
            error = _relative_error(ours, theirs)
            if error > worst or worst_name is None:
                worst_name, worst = name, error
        spent += shared + time.perf_counter() - start
        ok = worst < float_rtol
        done[index] = Verdict(ok, None if ok else worst_name, worst, trials, spent, "float")


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| / max |expected| (inf for a shape mismatch or a non-finite value)."""
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        return math.inf
    if not got.size:
        return 0.0
    scale = max(float(np.max(np.abs(expected))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(got - expected))) / scale
