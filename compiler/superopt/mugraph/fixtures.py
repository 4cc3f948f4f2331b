"""Hand-written µGraphs shipped with mlc: the best known µGraph per Mirage workload (full and
`_small` shapes) and a deliberately wrong twin of each, for tests of search, verify and cost.

The JSON lives in the mlc.specs package (specs/mugraphs/, written by make_fixtures.py there);
each graph's name is the workload spec it implements.

    >>> load_fixture("gqa_small").name
    'gqa:small'
    >>> fixture_workload("rmsnorm_matmul")
    'rmsnorm_matmul'
"""

from __future__ import annotations

import json
from importlib.resources import files

from .model import MuGraph
from .ops import MuGraphError
from .serialize import mugraph_from_json


def _folder(wrong: bool):
    folder = files("mlc.specs").joinpath("mugraphs")
    return folder.joinpath("wrong") if wrong else folder


def _names(wrong: bool) -> list[str]:
    return sorted(entry.name[:-len(".json")] for entry in _folder(wrong).iterdir()
                  if entry.name.endswith(".json"))


def _load(name: str, wrong: bool) -> MuGraph:
    known = _names(wrong)
    if name not in known:
        kind = "wrong fixture" if wrong else "fixture"
        raise MuGraphError(f"no µGraph {kind} {name!r}; known: {', '.join(known)}")
    resource = _folder(wrong).joinpath(f"{name}.json")
    try:
        return mugraph_from_json(json.loads(resource.read_text()))
    except MuGraphError as err:
        raise MuGraphError(f"µGraph fixture {name!r}: {err}") from None


def list_fixtures() -> list[str]:
    """Names of the shipped best-known µGraphs, e.g. "gqa", "gqa_small"."""
    return _names(False)


def load_fixture(name: str) -> MuGraph:
    """A shipped best-known µGraph; MuGraphError lists the known names for an unknown one."""
    return _load(name, False)


def fixture_workload(name: str) -> str:
    """The workload spec a fixture implements, for get_workload: "gqa_small" -> "gqa:small"."""
    return load_fixture(name).name


def list_wrong_fixtures() -> list[str]:
    """Names of the deliberately wrong twins (same names as the fixtures they shadow)."""
    return _names(True)


def load_wrong_fixture(name: str) -> MuGraph:
    """A µGraph that validates but computes something other than its workload."""
    return _load(name, True)
