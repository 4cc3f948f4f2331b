"""What a search returns (SearchResult, its Candidates) and their JSON form in the cache.

`result_from_json` is strict: the cache is a file anyone can edit, so every field is checked
(types, finite non-negative numbers, known labels) and a bad one raises MlcError naming it.
Parsing says nothing about correctness: cache.py re-verifies what it loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlc.compiler.errors import MlcError
from mlc.compiler.safe_io import check_number

from ..mugraph.model import MuGraph
from ..mugraph.serialize import mugraph_from_json, mugraph_to_json

MODES = ("concrete", "symbolic")
CHECKS = ("none", "probabilistic", "formal")


@dataclass(frozen=True)
class Candidate:
    graph: MuGraph
    est_time_us: float
    verified: bool
    verification: str = "probabilistic"  # the check it passed: probabilistic | formal | none


@dataclass
class Failures:
    """Candidates dropped because building, interpreting, verifying or costing one raised an
    unexpected error (a bug in a candidate's path, not a verdict): how many, and the first
    error's text, so a report shows them instead of the search dying or hiding them."""

    count: int = 0
    first: str | None = None

    def add(self, stage: str, err: BaseException) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{stage}: {type(err).__name__}: {err}"

    def merge(self, other: Failures) -> None:
        """Add another record's count (a worker's); keep the first error seen."""
        self.count += other.count
        self.first = self.first or other.first

    def note(self) -> list[str]:
        """The report note (none when nothing failed)."""
        if not self.count:
            return []
        return [f"{self.count} candidate(s) failed and were dropped; first: {self.first}"]


@dataclass(frozen=True)
class SearchResult:
    """What the search found for one reference graph.

    best is the cheapest verified µGraph, or the unfused baseline when nothing verified (or
    when the baseline is cheaper still).
    enumerated counts search states (prefixes) visited, pruned the new tensors and tiles the
    abstract expressions rejected, complete the programs whose outputs matched the targets,
    verified those that passed the verifier; candidates are the cheapest verified ones.
    notes say what happened to a cached entry (discarded and why, a proof that did not re-run).
    """

    best: MuGraph
    best_est_time_us: float
    baseline_est_time_us: float
    enumerated: int
    pruned: int
    complete: int
    verified: int
    candidates: tuple[Candidate, ...]
    search_seconds: float
    budget_exhausted: bool
    cached: bool = field(default=False, compare=False)
    mode: str = "concrete"  # concrete | symbolic
    verification: str = "none"  # the check `best` passed (none: the unfused baseline)
    notes: tuple[str, ...] = field(default=(), compare=False)
    failed: int = field(default=0, compare=False)  # candidates dropped (Failures), not cached

    def to_json(self) -> dict:
        doc = {k: getattr(self, k) for k in ("best_est_time_us", "baseline_est_time_us",
                                              "enumerated", "pruned", "complete", "verified",
                                              "search_seconds", "budget_exhausted",
                                              "mode", "verification")}
        doc["best"] = mugraph_to_json(self.best)
        doc["candidates"] = [{"graph": mugraph_to_json(c.graph), "est_time_us": c.est_time_us,
                              "verified": c.verified, "verification": c.verification}
                             for c in self.candidates]
        return doc


_COUNTS = ("enumerated", "pruned", "complete", "verified")
_TIMES = ("best_est_time_us", "baseline_est_time_us", "search_seconds")
_RESULT_FIELDS = {*_COUNTS, *_TIMES, "budget_exhausted", "mode", "verification", "best",
                  "candidates"}


def result_from_json(doc, where: str) -> SearchResult:
    """A SearchResult from its cache JSON (`where` names the entry); MlcError when a field is
    missing, unknown or of the wrong kind, MuGraphError when a µGraph in it is malformed."""
    doc = _fields(doc, where, _RESULT_FIELDS)
    counts = {k: check_number(doc[k], f"{where}: {k}", low=0, integer=True) for k in _COUNTS}
    times = {k: float(check_number(doc[k], f"{where}: {k}", low=0)) for k in _TIMES}
    candidates = doc["candidates"]
    if not isinstance(candidates, list):
        raise MlcError(f"{where}: candidates: expected a list")
    return SearchResult(
        best=mugraph_from_json(doc["best"]),
        candidates=tuple(_candidate(c, f"{where}: candidates[{i}]")
                         for i, c in enumerate(candidates)),
        budget_exhausted=_flag(doc["budget_exhausted"], f"{where}: budget_exhausted"),
        mode=_label(doc["mode"], f"{where}: mode", MODES),
        verification=_label(doc["verification"], f"{where}: verification", CHECKS),
        cached=True, **counts, **times)


def _candidate(doc, where: str) -> Candidate:
    doc = _fields(doc, where, {"graph", "est_time_us", "verified", "verification"})
    return Candidate(mugraph_from_json(doc["graph"]),
                     float(check_number(doc["est_time_us"], f"{where}.est_time_us", low=0)),
                     _flag(doc["verified"], f"{where}.verified"),
                     _label(doc["verification"], f"{where}.verification", CHECKS))


def _fields(doc, where: str, fields: set[str]) -> dict:
    """An object with exactly these keys."""
    if not isinstance(doc, dict):
        raise MlcError(f"{where}: expected an object")
    if set(doc) != fields:
        odd = sorted(set(doc) ^ fields)
        raise MlcError(f"{where}: missing or unknown field(s) {', '.join(odd)}")
    return doc


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise MlcError(f"{where}: expected true or false, got {value!r}")
    return value


def _label(value, where: str, known) -> str:
    if value not in known:
        raise MlcError(f"{where}: {value!r} is not one of {', '.join(known)}")
    return value
