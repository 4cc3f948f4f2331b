"""The symbolic search's checkpoint: the verified sGraphs of one workload structure, what the
search counted, and the formal proofs found so far; stored as JSON in the search cache.

A stored checkpoint is a file anyone can edit, so loading trusts none of it: the reader is
strict (every field checked, MlcError / SymbolicError / MuGraphError naming what is wrong),
driver.checkpoint_for re-verifies its sGraphs at the small binding before use, and a stored
`"proven": true` is only a claim (`claimed`) until its proof is re-run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mlc.compiler.artifact import atomic_file
from mlc.compiler.errors import MlcError
from mlc.compiler.safe_io import check_number, dump_json, read_json

from ..mugraph.ops import MuGraphError
from ..search.result import Failures
from .dims import SymbolicError
from .sgraph import SGraph, sgraph_from_json, sgraph_to_json

CHECKPOINT_VERSION = 1
_FIELDS = {"format_version", "kind", "key", "options", "enumerated", "pruned", "complete",
           "rejected", "search_seconds", "budget_s", "budget_exhausted", "proofs", "sgraphs"}
_COUNTS = ("enumerated", "pruned", "complete", "rejected")


@dataclass
class Checkpoint:
    """The verified sGraphs of one workload structure, with what the search counted.

    proofs maps an sGraph's index ("3", or "3/split" for its split-reduction variant) to its
    formal proof ({"proven", "seconds", "reason"}), filled in as sGraphs win instantiations.
    claimed holds the indexes a loaded file said were proven, whose proofs have not been run
    again yet (they are not in proofs until they are).
    """

    key: str
    sgraphs: list[SGraph]
    enumerated: int
    pruned: int
    complete: int
    rejected: int  # complete sGraphs the small-binding verification rejected
    search_seconds: float
    budget_s: float
    budget_exhausted: bool
    options: dict
    proofs: dict[str, dict] = field(default_factory=dict)
    loaded: bool = False
    claimed: set[str] = field(default_factory=set)
    # this run's only (not stored): why sGraphs were skipped, candidates that failed
    notes: list[str] = field(default_factory=list)
    failures: Failures = field(default_factory=Failures)

    def to_json(self) -> dict:
        return {"format_version": CHECKPOINT_VERSION, "kind": "sgraph_checkpoint",
                "key": self.key, "options": self.options, "enumerated": self.enumerated,
                "pruned": self.pruned, "complete": self.complete, "rejected": self.rejected,
                "search_seconds": self.search_seconds, "budget_s": self.budget_s,
                "budget_exhausted": self.budget_exhausted,
                "proofs": dict(self.proofs),
                "sgraphs": [sgraph_to_json(s) for s in self.sgraphs]}

    @staticmethod
    def from_json(doc, where: str = "checkpoint") -> Checkpoint:
        """The checkpoint a document describes, every field checked (proof claims kept as
        they are: see `distrust_proofs`)."""
        if not isinstance(doc, dict) or set(doc) != _FIELDS:
            odd = sorted(set(doc) ^ _FIELDS) if isinstance(doc, dict) else ["(not an object)"]
            raise MlcError(f"{where}: not an sGraph checkpoint (fields {', '.join(odd)})")
        if doc["format_version"] != CHECKPOINT_VERSION or doc["kind"] != "sgraph_checkpoint":
            raise MlcError(f"{where}: checkpoint format_version {doc['format_version']!r}, "
                           f"kind {doc['kind']!r}; expected {CHECKPOINT_VERSION}, "
                           "sgraph_checkpoint")
        if not isinstance(doc["key"], str) or not isinstance(doc["options"], dict) \
                or not isinstance(doc["sgraphs"], list):
            raise MlcError(f"{where}: key, options and sgraphs must be a string, an object "
                           "and a list")
        if not isinstance(doc["budget_exhausted"], bool):
            raise MlcError(f"{where}: budget_exhausted must be true or false")
        counts = [check_number(doc[k], f"{where}: {k}", low=0, integer=True) for k in _COUNTS]
        return Checkpoint(doc["key"], [_sgraph(s, f"{where}: sgraphs[{i}]")
                                       for i, s in enumerate(doc["sgraphs"])],
                          *counts,
                          float(check_number(doc["search_seconds"], f"{where}: search_seconds",
                                             low=0)),
                          float(check_number(doc["budget_s"], f"{where}: budget_s", low=0)),
                          doc["budget_exhausted"], dict(doc["options"]),
                          _proofs(doc["proofs"], f"{where}: proofs"), loaded=True)

    def distrust_proofs(self) -> None:
        """Move every stored "proven" into `claimed`: it counts again once re-run."""
        self.claimed = {key for key, proof in self.proofs.items() if proof["proven"]}
        self.proofs = {key: proof for key, proof in self.proofs.items()
                       if key not in self.claimed}


def _sgraph(doc, where: str) -> SGraph:
    try:
        return sgraph_from_json(doc)
    except (MuGraphError, SymbolicError) as err:
        raise MlcError(f"{where}: {err}") from None


def _proofs(doc, where: str) -> dict[str, dict]:
    """{index: {"proven": bool, "seconds": number, "reason": str}}, checked."""
    if not isinstance(doc, dict):
        raise MlcError(f"{where}: expected an object")
    for key, proof in doc.items():
        if not isinstance(proof, dict) or set(proof) != {"proven", "seconds", "reason"} \
                or not isinstance(proof["proven"], bool) or not isinstance(proof["reason"], str):
            raise MlcError(f"{where}[{key!r}]: expected {{proven: true|false, seconds, "
                           "reason}")
        check_number(proof["seconds"], f"{where}[{key!r}].seconds", low=0)
    return {key: dict(proof) for key, proof in doc.items()}


def checkpoint_path(cache_dir, key: str, options: dict) -> Path:
    digest = hashlib.sha256(json.dumps({"key": key, "options": options},
                                       sort_keys=True).encode()).hexdigest()
    return Path(cache_dir) / "symbolic" / f"{digest}.json"


def load_checkpoint(path: Path, budget_s: float) -> tuple[Checkpoint | None, str | None]:
    """(the stored checkpoint, None); (None, None) when it was cut short by a smaller budget
    than this one; (None, why) when it cannot be read or does not parse."""
    try:
        checkpoint = Checkpoint.from_json(read_json(path, "sGraph checkpoint"), str(path))
    except MlcError as err:
        return None, f"sGraph checkpoint does not parse ({err})"
    if checkpoint.budget_exhausted and checkpoint.budget_s < budget_s:
        return None, None
    return checkpoint, None


def store_checkpoint(path: Path, checkpoint: Checkpoint) -> str | None:
    """Write the checkpoint atomically; a note instead of an error when it cannot be written
    (the search's results stand, they are only not kept)."""
    try:
        text = dump_json(checkpoint.to_json())
        with atomic_file(path) as tmp:
            tmp.write_text(text)
    except (MlcError, OSError) as err:
        return f"sGraph checkpoint not written ({err})"
    return None
