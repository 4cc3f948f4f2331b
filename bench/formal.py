"""Formal verification (Prism-style e-graph proofs): every hand-written µGraph fixture, its
wrong twin, and the best µGraphs the search finds, with proof status, seconds, rewrite
iterations and e-graph size. Also the size of the rule set.

    .venv/bin/python bench/formal.py --out build/bench/formal.json [--search-budget 30]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlc.compiler.superopt.mugraph.fixtures import (
    fixture_workload,
    list_fixtures,
    list_wrong_fixtures,
    load_fixture,
    load_wrong_fixture,
)
from mlc.compiler.superopt.search import search
from mlc.compiler.superopt.verify.formal import FACTS, REWRITES, prove_mugraph
from mlc.specs.workloads import get_workload

SEARCHED = ("rmsnorm_matmul:small", "gated_mlp:small", "lora:small", "gqa:small")


def row(kind: str, name: str, graph, reference) -> dict:
    proof = prove_mugraph(graph, reference)
    return {"kind": kind, "name": name, "proven": proof.proven, "seconds": proof.seconds,
            "iterations": proof.iterations, "enodes": proof.enodes, "reason": proof.reason}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search-budget", type=float, default=30.0)
    parser.add_argument("--top", type=int, default=3, help="best searched µGraphs to prove")
    parser.add_argument("--out", type=Path, default=Path("build/bench/formal.json"))
    args = parser.parse_args()
    rows = []
    for name in list_fixtures():
        reference = get_workload(fixture_workload(name))
        rows.append(row("fixture", name, load_fixture(name), reference))
    for name in list_wrong_fixtures():
        reference = get_workload(fixture_workload(name))
        rows.append(row("wrong fixture", name, load_wrong_fixture(name), reference))
    for spec in SEARCHED:
        reference = get_workload(spec)
        found = search(reference, budget_s=args.search_budget, workers=1)
        for rank, candidate in enumerate(found.candidates[:args.top], start=1):
            rows.append(row("searched", f"{spec} #{rank}", candidate.graph, reference))
    table = Table(title=f"formal proofs ({len(REWRITES)} rewrites, {len(FACTS)} facts)")
    for col in ("kind", "µGraph", "proven", "seconds", "iterations", "e-nodes", "why not"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["kind"], r["name"], "yes" if r["proven"] else "no", f"{r['seconds']:.2f}",
                      str(r["iterations"]), str(r["enodes"]), "" if r["proven"] else r["reason"])
    Console(width=160).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rewrites": len(REWRITES), "facts": len(FACTS),
                                    "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
