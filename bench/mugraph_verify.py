"""Verification table: every hand-written µGraph fixture (and its deliberately wrong twin) and
every candidate of Mirage's saved checkpoints, verified against its reference program at full
size with mlc's verifier (finite-field trials, then a float64 check). Prints tables, writes JSON.

    .venv/bin/python bench/mugraph_verify.py --out build/bench/mugraph_verify.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir.graph import Graph
from mlc.compiler.superopt.mugraph.fixtures import (
    fixture_workload,
    list_fixtures,
    list_wrong_fixtures,
    load_fixture,
    load_wrong_fixture,
)
from mlc.compiler.superopt.mugraph.mirage_import import import_mirage_checkpoint
from mlc.compiler.superopt.verify import DEFAULT_TRIALS, verify_many
from mlc.specs.workloads import get_workload
from mlc.specs.workloads.common import softmax_attention

MIRAGE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirage-mugraphs"


def mqa(batch: int) -> Graph:
    """Mirage's MQA benchmark: Q(b, 1024, 64), K(b, 64, 4096), V(b, 4096, 64)."""
    g = GraphBuilder(f"mqa:b={batch}")
    q, k, v = g.input("Q", (batch, 1024, 64)), g.input("K", (batch, 64, 4096)), \
        g.input("V", (batch, 4096, 64))
    return g.build(softmax_attention(g, q, k, v, 0))


def reordered(spec: str, order: tuple[str, ...]) -> Graph:
    """A workload with its inputs declared in another order (Mirage's nTrans takes H first)."""
    graph = get_workload(spec)
    return Graph.build(graph.name, {n: graph.inputs[n] for n in order}, graph.nodes,
                       graph.outputs, graph.weights)


# checkpoint -> the reference program at the file's shapes, inputs in Mirage's order
REFERENCES = {
    "rmsnorm_bs1": lambda: get_workload("rmsnorm_matmul:b=1"),
    "rmsnorm_bs8": lambda: get_workload("rmsnorm_matmul:b=8"),
    "gated_mlp": lambda: get_workload("gated_mlp"),
    "single_gated_mlp": lambda: get_workload("gated_mlp"),
    "lora": lambda: get_workload("lora"),
    "single_lora": lambda: get_workload("lora"),
    "ntrans_bs1": lambda: reordered("ntrans:b=1", ("H", "X", "alpha")),
    "ntrans_bs8": lambda: reordered("ntrans:b=8", ("H", "X", "alpha")),
    "gqa_bs1": lambda: get_workload("gqa:b=1"),
    "gqa_bs8": lambda: get_workload("gqa:b=8"),
    "mha_bs1": lambda: get_workload("gqa:b=16,q=16"),
    "mha_bs8": lambda: get_workload("gqa:b=128,q=16"),
    "mqa_bs1": lambda: mqa(1),
    "single_mqa_bs1": lambda: mqa(1),
    "mqa_bs8": lambda: get_workload("gqa:b=4,q=1024"),
}


def row(label, kind, verdict, expect):
    return {"candidate": label, "kind": kind, "equivalent": verdict.equivalent,
            "expected": expect, "stage": verdict.stage, "max_error": verdict.max_error,
            "trials": verdict.trials, "seconds": verdict.seconds}


def fixture_rows():
    rows = []
    for name in list_fixtures():
        reference = get_workload(fixture_workload(name))
        (verdict,) = verify_many([load_fixture(name)], reference)
        rows.append(row(name, "fixture", verdict, True))
    for name in list_wrong_fixtures():
        reference = get_workload(fixture_workload(name))
        (verdict,) = verify_many([load_wrong_fixture(name)], reference)
        rows.append(row(name, "wrong fixture", verdict, False))
    return rows


def mirage_rows(console):
    rows = []
    for stem, make_reference in REFERENCES.items():
        path = MIRAGE_DIR / f"{stem}.json"
        if not path.is_file():
            continue
        reference = make_reference()
        graphs, failures = import_mirage_checkpoint(path, tuple(reference.inputs))
        for index, error in failures.items():
            rows.append({"candidate": f"{stem}#{index}", "kind": "mirage", "equivalent": False,
                         "expected": True, "stage": "import", "max_error": None,
                         "trials": 0, "seconds": 0.0, "error": str(error)})
        start = time.perf_counter()
        verdicts = verify_many(list(graphs.values()), reference)
        rows += [row(f"{stem}#{i}", "mirage", v, True) for i, v in zip(graphs, verdicts)]
        console.print(f"{stem}: {sum(v.equivalent for v in verdicts)}/{len(verdicts)} "
                      f"equivalent ({time.perf_counter() - start:.1f} s)")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/mugraph_verify.json"))
    parser.add_argument("--skip-mirage", action="store_true")
    args = parser.parse_args()
    console = Console(width=120)
    rows = fixture_rows()
    table = Table(title=f"Hand-written µGraphs ({DEFAULT_TRIALS} field trials + float64 check)")
    for col in ("fixture", "expected", "verdict", "decided by", "max error", "seconds"):
        table.add_column(col, justify="left" if col == "fixture" else "right")
    for r in rows:
        table.add_row(r["candidate"] + (" (wrong)" if r["kind"] == "wrong fixture" else ""),
                      "equivalent" if r["expected"] else "wrong",
                      "equivalent" if r["equivalent"] else "REJECTED", r["stage"],
                      f"{r['max_error']:.2e}", f"{r['seconds']:.2f}")
    console.print(table)
    if not args.skip_mirage and MIRAGE_DIR.is_dir():
        mirage = mirage_rows(console)
        rows += mirage
        summary = Table(title="Mirage checkpoints, every candidate at full size")
        for col in ("file", "candidates", "equivalent", "mean s / candidate", "max rel error"):
            summary.add_column(col, justify="left" if col == "file" else "right")
        for stem in REFERENCES:
            mine = [r for r in mirage if r["candidate"].split("#")[0] == stem]
            if mine:
                errors = [r["max_error"] for r in mine if r["max_error"] is not None]
                summary.add_row(stem, str(len(mine)), str(sum(r["equivalent"] for r in mine)),
                                f"{sum(r['seconds'] for r in mine) / len(mine):.2f}",
                                f"{max(errors):.1e}" if errors else "-")
        console.print(summary)
    wrong = [r for r in rows if r["equivalent"] != r["expected"]]
    console.print(f"{len(rows)} verdicts, {len(wrong)} unexpected: "
                  + ", ".join(r["candidate"] for r in wrong))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "mugraph_verify", "trials": DEFAULT_TRIALS,
                                    "rows": rows}, indent=1) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
