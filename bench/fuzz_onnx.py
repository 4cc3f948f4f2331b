"""ONNX importer fuzzing: random valid models and mutated (broken) ones through mlc (import, then
the reference and torch executors) and onnxruntime. Prints a table (ran / matched onnxruntime /
clear error / internal error) and writes JSON with every non-matching case.

    .venv/bin/python bench/fuzz_onnx.py --out build/bench/fuzz_onnx.json [--valid 500]
        [--mutated 500] [--seed 0]

Seeds are per model (seed + index), so a case in the JSON is rebuilt with
`random_model(np.random.default_rng(seed))` (then `mutate(model, rng)` for mutated ones).
onnxruntime runs in a worker process, so a crash there is recorded instead of ending the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mlc.compiler.frontends.onnx_fuzz import Outcome, evaluate, mutate, run_onnxruntime
from mlc.compiler.frontends.onnx_random import random_model

KINDS = ("matched", "mismatch", "ort_refused", "too_large", "clear_error", "internal_error")


class OnnxRuntimeWorker:
    """onnxruntime in a child process, restarted after a crash (reported as a refusal)."""

    def __init__(self):
        self.pool = ProcessPoolExecutor(max_workers=1)
        self.crashes = 0

    def __call__(self, data: bytes, feeds):
        try:
            return self.pool.submit(run_onnxruntime, data, feeds).result(timeout=120)
        except BrokenProcessPool:
            self.crashes += 1
            self.pool = ProcessPoolExecutor(max_workers=1)
            raise RuntimeError("onnxruntime crashed on this model") from None

    def close(self):
        self.pool.shutdown(cancel_futures=True)


def run_cases(kind: str, count: int, seed: int, worker, workdir: Path) -> list[dict]:
    """One record per model: seed, mutations applied, outcome and detail."""
    records = []
    for index in range(count):
        rng = np.random.default_rng(seed + index)
        model, feeds = random_model(rng)
        mutations: list[str] = []
        data = model.SerializeToString()
        if kind == "mutated":
            data, mutations = mutate(model, rng)
        start = time.perf_counter()
        outcome: Outcome = evaluate(data, feeds, workdir, onnxruntime_run=worker)
        records.append({"kind": kind, "seed": seed + index, "mutations": mutations,
                        "outcome": outcome.kind, "detail": outcome.detail,
                        "seconds": time.perf_counter() - start})
    return records


def summary_row(records: list[dict]) -> dict:
    counts = Counter(r["outcome"] for r in records)
    ran = counts["matched"] + counts["mismatch"] + counts["ort_refused"]
    return {"models": len(records), "ran": ran, **{k: counts[k] for k in KINDS}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/fuzz_onnx.json"))
    parser.add_argument("--valid", type=int, default=500, help="random valid models")
    parser.add_argument("--mutated", type=int, default=500, help="mutated models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first model")
    args = parser.parse_args()
    logging.getLogger("mlc").setLevel(logging.ERROR)  # refusals are counted, not printed
    start = time.perf_counter()
    worker = OnnxRuntimeWorker()
    try:
        with tempfile.TemporaryDirectory(prefix="mlc-fuzz-") as workdir:
            records = (run_cases("valid", args.valid, args.seed, worker, Path(workdir))
                       + run_cases("mutated", args.mutated, args.seed + 10**6, worker,
                                   Path(workdir)))
    finally:
        worker.close()
    seconds = time.perf_counter() - start
    summary = {kind: summary_row([r for r in records if r["kind"] == kind])
               for kind in ("valid", "mutated")}
    table = Table(title="ONNX importer fuzzing: mlc against onnxruntime")
    columns = ("models", "ran", "matched", "mismatch", "ort_refused", "too_large",
               "clear_error", "internal_error")
    table.add_column("set")
    for column in columns:
        table.add_column(column, justify="right")
    for kind, row in summary.items():
        table.add_row(kind, *(str(row[c]) for c in columns))
    console = Console(width=120)
    console.print(table)
    notable = [r for r in records if r["outcome"] not in ("matched", "clear_error")]
    for record in notable[:40]:
        console.print(f"  {record['kind']} seed {record['seed']} {record['mutations']}: "
                      f"{record['outcome']}: {record['detail'][:160]}", highlight=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "fuzz_onnx", "seconds": seconds, "seed": args.seed,
        "onnxruntime_crashes": worker.crashes, "summary": summary,
        "errors": Counter(r["detail"].split(": ", 2)[-1][:70] for r in records
                          if r["outcome"] == "clear_error").most_common(40),
        "notable": notable}, indent=1) + "\n")
    console.print(f"wrote {args.out} ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
