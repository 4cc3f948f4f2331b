"""`search(..., mode="symbolic")`: the symbolic search once per workload structure (its
checkpoint cached on disk and in `checkpoints`), then an instantiation per concrete shape.

Verification per shape: each candidate, cheapest first, is proven formally (verify/formal:
one proof covers every binding of its sizes, so it is attempted once per sGraph and the
checkpoint keeps the outcome) and, where no proof is found, checked by the probabilistic
verifier at this shape. The result says which check each winner passed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from mlc.compiler.ir import Graph, IRError
from mlc.compiler.safe_io import check_number

from ..cost import estimate, load_gpu
from ..mugraph.ops import MuGraphError
from ..search.driver import Candidate, SearchResult
from ..search.generators import dim_labels
from ..search.result import Failures
from ..verify import lower_to_mugraph, verify_each
from ..verify.formal import prove_mugraph
from ..verify.formal.prove import MAX_SECONDS, Proof
from .dims import SymbolicError
from .instantiate import instantiate_sgraph
from .search import (
    Checkpoint,
    checkpoint_path,
    data_sizes,
    input_symbols,
    load_checkpoint,
    store_checkpoint,
    structure_key,
    symbolic_search,
    verify_small,
)


def checkpoint_for(reference: Graph, symbols: dict, *, gpu, budget_s: float,
                   max_kernel_ops: int, max_block_ops: int, seed: int, workers, progress,
                   cache_dir, checkpoints: dict | None
                   ) -> tuple[Checkpoint, Path | None, bool, list[str]]:
    """The checkpoint of `reference`'s structure, its cache path, whether it was searched
    now, and notes: from `checkpoints`, the cache (re-verified: see `recheck_checkpoint`;
    its proofs only claims), or a new symbolic search (then stored in both)."""
    # no GPU in the key: the sGraphs do not depend on it (only their instantiation does)
    options = {"max_kernel_ops": max_kernel_ops, "max_block_ops": max_block_ops, "seed": seed}
    key = structure_key(reference, symbols)
    memo_key = json.dumps({"key": key, **options}, sort_keys=True)
    path = checkpoint_path(cache_dir, key, options) if cache_dir else None
    if checkpoints is not None and memo_key in checkpoints:
        return checkpoints[memo_key], path, False, []
    checkpoint, notes = None, []
    if path is not None and path.is_file():
        checkpoint, why = load_checkpoint(path, budget_s)
        if checkpoint is not None:
            why = recheck_checkpoint(checkpoint, reference, symbols, key, seed)
            checkpoint = None if why else checkpoint
        notes += [f"{why}; searched again"] if why else []
    fresh = checkpoint is None
    if fresh:
        checkpoint = symbolic_search(reference, gpu=gpu, budget_s=budget_s,
                                     max_kernel_ops=max_kernel_ops,
                                     max_block_ops=max_block_ops, seed=seed, workers=workers,
                                     progress=progress)
        if path is not None:
            notes += filter(None, [store_checkpoint(path, checkpoint)])
    else:
        checkpoint.distrust_proofs()  # re-run before a candidate is labelled formal
    if checkpoints is not None:
        checkpoints[memo_key] = checkpoint
    return checkpoint, path, fresh, notes


def recheck_checkpoint(checkpoint: Checkpoint, reference: Graph, symbols: dict, key: str,
                       seed: int) -> str | None:
    """Why a loaded checkpoint must not be used (None: it may): it belongs to another
    structure, or an sGraph fails the small-binding verification the search itself ran."""
    if checkpoint.key != key:
        return "sGraph checkpoint belongs to another workload structure"
    for index, sgraph in enumerate(checkpoint.sgraphs):
        if sgraph.symbols != symbols:
            return f"sGraph checkpoint: sGraph {index} has inputs {sgraph.symbols}"
    try:
        kept = verify_small(checkpoint.sgraphs, reference, symbols, seed)
    except (MuGraphError, SymbolicError) as err:
        return f"sGraph checkpoint does not fit this region ({err})"
    if len(kept) != len(checkpoint.sgraphs):
        failed = next(i for i, s in enumerate(checkpoint.sgraphs) if s not in kept)
        return (f"sGraph checkpoint: sGraph {failed} ({checkpoint.sgraphs[failed].describe()}) "
                "failed re-verification")
    return None


def search_symbolic(reference: Graph, *, gpu="h100", budget_s: float = 60.0,
                    max_kernel_ops: int = 1, max_block_ops: int = 7, seed: int = 0,
                    workers: int | None = None, progress: Callable | None = None,
                    cache_dir: str | Path | None = None, keep: int = 3,
                    checkpoints: dict | None = None, prove: bool = True) -> SearchResult:
    """The cheapest verified instantiation of the sGraphs of `reference`'s structure.

    Requires a reference whose inputs rebind (no shape-carrying attributes): raises
    SymbolicError otherwise, and the caller falls back to the concrete search. Ensures a
    SearchResult like the concrete search's, with `mode` "symbolic" and per candidate the
    verification it passed ("formal" or "probabilistic").
    """
    start = time.monotonic()
    check_number(budget_s, "search budget_s", low=0, low_open=True)  # NaN would never run out
    spec = load_gpu(gpu) if isinstance(gpu, str) else gpu
    notify = progress or (lambda message="", **_: None)
    baseline = lower_to_mugraph(reference)
    labels = dim_labels(baseline)
    try:
        symbols = input_symbols(reference, labels)
        sizes = data_sizes(reference, symbols)
        checkpoint, path, fresh, notes = checkpoint_for(
            reference, symbols, gpu=spec, budget_s=budget_s, max_kernel_ops=max_kernel_ops,
            max_block_ops=max_block_ops, seed=seed, workers=workers, progress=progress,
            cache_dir=cache_dir, checkpoints=checkpoints)
    except IRError as err:
        raise SymbolicError(f"{reference.name}: does not rebind to symbolic sizes ({err})") \
            from None
    baseline_time = estimate(baseline, spec).time_us
    failures = Failures(checkpoint.failures.count, checkpoint.failures.first) if fresh \
        else Failures()
    notes += checkpoint.notes if fresh else []
    ranked = []
    for index, sgraph in enumerate(checkpoint.sgraphs):
        try:
            instances = instantiate_sgraph(sgraph, reference, sizes, spec, labels)
        except Exception as err:  # noqa: BLE001 - one sGraph's bug drops it, counted
            failures.add(f"instantiate sGraph {index}", err)
            continue
        for instance in instances:
            proof_key = f"{index}/split" if instance.split else str(index)
            ranked.append((instance.est_time_us, proof_key, instance.graph))
    ranked.sort(key=lambda item: (item[0], item[1]))
    notify(f"instantiated {len(checkpoint.sgraphs)} sGraph(s): {len(ranked)} candidates")
    deadline = start + max(budget_s, 1.0)
    verified = _verify(ranked, reference, checkpoint, seed, keep, prove, notify, deadline,
                       notes, failures)
    if path is not None and prove:
        notes += filter(None, [store_checkpoint(path, checkpoint)])  # with the new proofs
    best = Candidate(baseline, baseline_time, False, "none")
    if verified and verified[0].est_time_us <= baseline_time:
        best = verified[0]
    return SearchResult(best.graph, best.est_time_us, baseline_time, checkpoint.enumerated,
                        checkpoint.pruned, checkpoint.complete, len(verified),
                        tuple(verified), time.monotonic() - start,
                        checkpoint.budget_exhausted, cached=not fresh,
                        mode="symbolic", verification=best.verification,
                        notes=tuple(dict.fromkeys(notes + failures.note())),
                        failed=failures.count)


def _verify(ranked, reference, checkpoint: Checkpoint, seed, keep, prove, notify, deadline,
            notes: list[str], failures: Failures):
    """Cheapest first, until `keep` pass: a formal proof (once per sGraph, kept in the
    checkpoint; at most MAX_SECONDS, less when the budget runs out, but at least one), else
    the probabilistic verifier at this shape, but only while nothing is proven yet (a slower
    unproven candidate could not win, so it is not worth a check). A proof a loaded
    checkpoint claimed is run again like any other; when it fails, `notes` says so. A
    candidate whose proof or check raises is dropped and counted in `failures` (a proof that
    raises only counts: the probabilistic check still runs)."""
    verified = []
    proofs = dict(checkpoint.proofs)  # plus this call's, also those the checkpoint won't keep
    for time_us, proof_key, graph in ranked:
        if len(verified) >= keep or (verified and time.monotonic() > deadline):
            break
        if prove and proof_key not in proofs:
            notify(f"proving sGraph {proof_key}")
            left = max(1.0, min(MAX_SECONDS, deadline - time.monotonic()))
            try:
                proof = prove_mugraph(graph, reference, max_seconds=left)
            except Exception as err:  # noqa: BLE001 - "not proven", counted
                failures.add(f"prove sGraph {proof_key}", err)
                proof = Proof(False, 0.0, 0, 0, f"the prover failed ({type(err).__name__})")
            proofs[proof_key] = {"proven": proof.proven, "seconds": round(proof.seconds, 3),
                                 "reason": proof.reason}
            if proof.proven or left >= MAX_SECONDS:  # a budget-cut attempt may be retried
                checkpoint.proofs[proof_key] = proofs[proof_key]
            if proof_key in checkpoint.claimed and not proof.proven:
                notes.append(f"sGraph {proof_key}: the cached proof did not re-run "
                             f"({proof.reason or 'not proven'}); checked probabilistically")
            checkpoint.claimed.discard(proof_key)
        if proofs.get(proof_key, {}).get("proven"):
            verified.append(Candidate(graph, time_us, True, "formal"))
            continue
        if any(c.verification == "formal" for c in verified):
            continue
        verdict = verify_each([graph], reference, seed=seed,
                              on_error=lambda err: failures.add("verify", err))[0]
        if verdict is not None and verdict.equivalent:
            verified.append(Candidate(graph, time_us, True, "probabilistic"))
    return verified
