"""Property-based fuzzing of every reader of a user's structured file (issue 15): the µGraph
JSON loader, graph.json, partition plans, demand and GPU files, request traces and finetuning
data. Valid documents are mutated (a leaf replaced by any JSON value, NaN and infinities
included; a key dropped; a container swapped for a scalar) and arbitrary documents generated;
each reader must either accept the document or raise MlcError -- never any other exception."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlc.cli.testing import run_cli
from mlc.compiler.errors import MlcError

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# Any JSON-like value a hostile file could hold once parsed (YAML and Python callers can also
# hand NaN and infinities to the checkers, so those are in too).
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


def _paths(doc, prefix=()):
    """Every path (tuple of keys / indices) into a parsed JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated(draw, original):
    """`original` with one node replaced, deleted or emptied (a deep copy; the original is
    untouched)."""
    doc = json.loads(json.dumps(original))
    paths = list(_paths(doc))
    path = draw(st.sampled_from(paths[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "replace", "delete", "empty"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "empty":
        parent[path[-1]] = type(parent[path[-1]])() if isinstance(
            parent[path[-1]], (dict, list, str)) else None
    else:
        parent[path[-1]] = draw(json_values)
    return doc


def accepts_or_refuses(read, doc, refusals=(MlcError,)):
    """Run a reader on `doc`: fine if it returns or raises one of `refusals` (the reader's
    documented errors); anything else fails the property."""
    try:
        read(doc)
    except refusals:
        pass


def _write_json(doc) -> str:
    """Serialized as a hostile file would be: NaN / Infinity written as JSON's extensions."""
    return json.dumps(doc, allow_nan=True)


# ---- documents ------------------------------------------------------------------------------

MUGRAPH = json.loads((ROOT / "specs/mugraphs/rmsnorm_matmul_small.json").read_text())
DEMAND = json.loads((ROOT / "examples/demand.json").read_text())
REQUEST = json.loads((ROOT / "examples/requests.jsonl").read_text().splitlines()[0])
TRACE_RECORD = {"id": 1, "prompt_tokens": 12, "max_new_tokens": 8, "arrival": 0.5}


@functools.lru_cache(maxsize=None)
def _artifacts() -> Path:
    """An imported MLP and a partition plan, built once per session in a private folder."""
    root = Path(tempfile.mkdtemp(prefix="mlc-fuzz-readers-"))
    assert run_cli("import", ROOT / "examples/mlp.onnx", "--out", root / "mlp").returncode == 0
    done = run_cli("partition", "workload:multibranch_small", "--devices", "2", "--batch", "8",
                   "--micro-batch", "2", "--out", root / "part")
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module", autouse=True)
def _cleanup_artifacts():
    yield
    if _artifacts.cache_info().currsize:
        shutil.rmtree(_artifacts(), ignore_errors=True)


# ---- properties -----------------------------------------------------------------------------

@SETTINGS
@given(st.one_of(mutated(MUGRAPH), json_values))
def test_mugraph_loader_never_crashes(doc):
    from mlc.compiler.superopt.mugraph import MuGraphError
    from mlc.compiler.superopt.mugraph.serialize import mugraph_from_json
    # MuGraphError is the loader's documented refusal; every command turns it into MlcError
    accepts_or_refuses(mugraph_from_json, doc, (MlcError, MuGraphError))


@SETTINGS
@given(st.one_of(mutated(DEMAND), json_values))
def test_demand_reader_never_crashes(doc):
    from mlc.compiler.plan.coral.inputs import parse_demand
    accepts_or_refuses(parse_demand, doc)


@SETTINGS
@given(st.one_of(mutated({"h100": {"available": 4, "price_per_hour": 3.5}}), json_values))
def test_gpu_overrides_never_crash(doc):
    from mlc.compiler.plan.coral.catalog import load_catalog
    accepts_or_refuses(load_catalog, doc)


@SETTINGS
@given(st.lists(st.one_of(mutated(REQUEST), json_values), min_size=1, max_size=3))
def test_serve_request_trace_never_crashes(records):
    from mlc.runtime.serve.trace import load_finetune_data, load_requests
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.jsonl"
        path.write_text("\n".join(_write_json(r) for r in records) + "\n")
        accepts_or_refuses(lambda p: load_requests(p, 256), path)
        accepts_or_refuses(lambda p: load_finetune_data(p, 256), path)


@SETTINGS
@given(st.lists(st.one_of(mutated(TRACE_RECORD), json_values), min_size=1, max_size=3))
def test_coserve_trace_never_crashes(records):
    from mlc.compiler.plan.coserve.traces import read_trace
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.jsonl"
        path.write_text("\n".join(_write_json(r) for r in records) + "\n")
        accepts_or_refuses(read_trace, path)


@SETTINGS
@given(st.data())
def test_graph_json_loader_never_crashes(data):
    from mlc.compiler.ir.serialize import load_graph
    source = _artifacts() / "mlp"
    doc = data.draw(st.one_of(mutated(json.loads((source / "graph.json").read_text())),
                              json_values))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        shutil.copy(source / "weights.safetensors", folder)
        (folder / "graph.json").write_text(_write_json(doc))
        accepts_or_refuses(load_graph, folder / "graph.json")


@SETTINGS
@given(st.data())
def test_partition_plan_reader_never_crashes(data):
    from mlc.compiler.ir.serialize import load_graph
    from mlc.runtime.pipeline.plan import parse_plan
    source = _artifacts() / "part"
    graph = load_graph(source / "graph.json")
    doc = data.draw(st.one_of(mutated(json.loads((source / "plan.json").read_text())),
                              json_values))
    accepts_or_refuses(lambda d: parse_plan(d, graph), doc)
