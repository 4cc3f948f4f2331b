"""Cached and checkpointed search results are re-verified before use (issue 15, class 3): an
edited cache entry or sGraph checkpoint is discarded and searched again with a note, a stored
"proven" flag counts only once its proof re-runs, and an untampered cache is still reused and
labelled as before. Tiny workload, small budgets, one worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlc.compiler.ir import interpret
from mlc.compiler.superopt.mugraph import FloatArith, run_mugraph
from mlc.compiler.superopt.search import search
from mlc.compiler.superopt.symbolic.driver import search_symbolic
from mlc.specs.workloads import get_workload

WORKLOAD = "rmsnorm_matmul:small"  # rms_norm(X) @ W: the fused kernel divides by the norm


def matches_reference(graph, reference) -> bool:
    """The µGraph's float64 outputs against the numpy reference interpreter's."""
    rng = np.random.default_rng(7)
    inputs = {name: rng.standard_normal(t.shape) for name, t in reference.inputs.items()}
    want = interpret(reference, inputs, float64=True)
    got = run_mugraph(graph, dict(zip(graph.inputs, inputs.values())), FloatArith(np.float64))
    return all(np.allclose(got[ours], want[theirs], rtol=1e-6, atol=1e-9)
               for ours, theirs in zip(graph.outputs, reference.outputs))


def tamper(path: Path, old: str, new: str) -> None:
    """Replace every `old` by `new` in a cache file (as a user's editor would)."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def only_file(folder: Path) -> Path:
    (path,) = [p for p in folder.glob("*.json")]
    return path


# ---- the concrete search's cache ----------------------------------------------------------

@pytest.fixture(scope="module")
def concrete(tmp_path_factory):
    """A cache holding one concrete search result, and that result."""
    cache = tmp_path_factory.mktemp("concrete")
    reference = get_workload(WORKLOAD)
    first = search(reference, budget_s=20, max_block_ops=4, workers=1, cache_dir=cache)
    assert first.verified and not first.cached
    assert '"op": "div"' in only_file(cache).read_text()
    return cache, only_file(cache).read_text(), first


def rerun_concrete(cache: Path):
    return search(get_workload(WORKLOAD), budget_s=20, max_block_ops=4, workers=1,
                  cache_dir=cache)


def test_untampered_cache_is_reused_and_labelled(concrete):
    cache, text, first = concrete
    only_file(cache).write_text(text)
    again = rerun_concrete(cache)
    assert again.cached and not again.notes and again == first
    assert again.verification == "probabilistic"
    assert matches_reference(again.best, get_workload(WORKLOAD))


def test_edited_candidate_is_discarded_and_searched_again(concrete):
    cache, text, _ = concrete
    path = only_file(cache)
    path.write_text(text)
    tamper(path, '"op": "div"', '"op": "mul"')
    again = rerun_concrete(cache)
    assert not again.cached and again.verified
    assert any("failed re-verification" in note for note in again.notes)
    assert matches_reference(again.best, get_workload(WORKLOAD))
    assert '"op": "div"' in path.read_text()  # the fresh result replaced the edited one


@pytest.mark.parametrize("text", ["{not json", '{"budget_s": NaN}', "[]", "\x00\xff",
                                  '{"budget_s": 1, "budget_exhausted": false, "result": 3}'])
def test_unparsable_entry_is_discarded_with_a_note(concrete, text):
    cache, _, _ = concrete
    only_file(cache).write_text(text)
    again = rerun_concrete(cache)
    assert not again.cached
    assert any("does not parse" in note for note in again.notes)
    assert matches_reference(again.best, get_workload(WORKLOAD))


def test_a_relabelled_or_rebased_entry_is_not_believed(concrete):
    """A "formal" label the concrete search never gives, and a best that is not a verified
    candidate: the label is what was re-checked, the best is chosen again."""
    cache, text, first = concrete
    doc = json.loads(text)
    doc["result"]["verification"] = "formal"
    doc["result"]["best_est_time_us"] = 0.001
    doc["result"]["best"]["kernels"][0]["block"]["ops"][-2]["op"] = "mul"
    only_file(cache).write_text(json.dumps(doc))
    again = rerun_concrete(cache)
    assert again.cached and again.verification == "probabilistic"
    assert again.best_est_time_us == first.best_est_time_us
    assert matches_reference(again.best, get_workload(WORKLOAD))


# ---- the symbolic search's checkpoint -------------------------------------------------------

@pytest.fixture(scope="module")
def symbolic(tmp_path_factory):
    """A cache holding one sGraph checkpoint whose winning sGraph is formally proven."""
    cache = tmp_path_factory.mktemp("symbolic")
    first = search_symbolic(get_workload(WORKLOAD), budget_s=20, workers=1, cache_dir=cache)
    assert first.verification == "formal" and not first.cached
    path = only_file(cache / "symbolic")
    assert '"proven": true' in path.read_text()
    return cache, path.read_text(), first


def rerun_symbolic(cache: Path):
    return search_symbolic(get_workload(WORKLOAD), budget_s=20, workers=1, cache_dir=cache)


def test_untampered_checkpoint_is_reused_and_still_formal(symbolic):
    cache, text, first = symbolic
    only_file(cache / "symbolic").write_text(text)
    again = rerun_symbolic(cache)
    assert again.cached and not again.notes
    assert again.verification == "formal" and again.best == first.best


def test_edited_sgraph_with_its_proof_flag_is_discarded(symbolic):
    cache, text, _ = symbolic
    path = only_file(cache / "symbolic")
    doc = json.loads(text)
    doc["proofs"] = {key: {"proven": True, "seconds": 0.1, "reason": ""}
                     for key in [str(i) for i in range(len(doc["sgraphs"]))]}
    path.write_text(json.dumps(doc))
    tamper(path, '"op": "div"', '"op": "mul"')
    again = rerun_symbolic(cache)
    assert not again.cached and again.verification == "formal"
    assert any("failed re-verification" in note for note in again.notes)
    assert matches_reference(again.best, get_workload(WORKLOAD))


def test_a_stored_proof_counts_only_when_it_runs_again(symbolic, monkeypatch):
    """A proven flag whose proof does not go through now (simulated: the prover finds
    nothing) gives a probabilistic label and a note, never "formal"."""
    from mlc.compiler.superopt.symbolic import driver
    from mlc.compiler.superopt.verify.formal.prove import Proof

    cache, text, _ = symbolic
    only_file(cache / "symbolic").write_text(text)
    calls = []

    def no_proof(graph, reference, max_seconds=None):
        calls.append(graph)
        return Proof(False, 0.0, 0, 0, "no proof (test)")

    monkeypatch.setattr(driver, "prove_mugraph", no_proof)
    again = rerun_symbolic(cache)
    assert calls, "the stored proof was trusted without being run again"
    assert again.cached and again.verification == "probabilistic"
    assert any("did not re-run" in note for note in again.notes)
    assert matches_reference(again.best, get_workload(WORKLOAD))


@pytest.mark.parametrize("edit", [
    lambda doc: doc.update(sgraphs=3),
    lambda doc: doc.update(enumerated=-1),
    lambda doc: doc.update(budget_s=float("inf")),
    lambda doc: doc["proofs"].update({"0": {"proven": "yes", "seconds": 0, "reason": ""}}),
    lambda doc: doc["sgraphs"][0]["kernels"][0]["block"].update(grid=["gD99", 1, 1]),
    lambda doc: doc["sgraphs"][0]["kernels"][0]["block"].update(grid=[True, 1, 1]),
    lambda doc: doc["sgraphs"][0]["kernels"][0]["block"].update(forloop_range=2),
    lambda doc: doc["sgraphs"][0]["inputs"][0].update(shape=["D0", "Dx"]),
    lambda doc: doc["sgraphs"][0]["inputs"][0].update(shape=["D0", "D7"]),
    lambda doc: doc["sgraphs"][0].update(kernels={}),
    lambda doc: doc.update(key="0" * 64),
], ids=["sgraphs", "count", "inf", "proof", "symbol", "bool-grid", "loop", "dim", "other-dim",
        "kernels", "key"])
def test_malformed_checkpoint_is_refused_with_a_reason(symbolic, edit, tmp_path):
    """What checkpoint_for does with a stored file, step by step (no search needed)."""
    from mlc.compiler.superopt.symbolic.driver import recheck_checkpoint
    from mlc.compiler.superopt.symbolic.search import (
        input_symbols,
        load_checkpoint,
        structure_key,
    )

    _, text, _ = symbolic
    doc = json.loads(text)
    edit(doc)
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(doc).replace("Infinity", "1e999"))
    checkpoint, why = load_checkpoint(path, 20)
    if checkpoint is not None:
        reference = get_workload(WORKLOAD)
        symbols = input_symbols(reference)
        why = recheck_checkpoint(checkpoint, reference, symbols,
                                 structure_key(reference, symbols), seed=0)
    assert why and "checkpoint" in why


def test_an_unwritable_cache_costs_only_the_cache(concrete, symbolic, tmp_path):
    """A cache folder that cannot be created: the result stands, a note says nothing was
    kept."""
    from mlc.compiler.superopt.search.cache import store
    from mlc.compiler.superopt.symbolic.search import Checkpoint, store_checkpoint

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "not written" in store(blocker / "x.json", concrete[2], 20.0)
    checkpoint = Checkpoint.from_json(json.loads(symbolic[1]))
    assert "not written" in store_checkpoint(blocker / "symbolic" / "x.json", checkpoint)
