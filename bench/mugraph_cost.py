"""Roofline cost of Mirage's workloads as µGraphs: the unfused baseline (one library kernel per IR
op), the hand-written µGraph, and Mirage's best saved candidate, on one GPU spec. Every time is
an estimate (no GPU is used). Prints a table and writes JSON.

    .venv/bin/python bench/mugraph_cost.py --gpu h100 --out build/bench/mugraph_cost.json

Columns that need a module or data not present (the fixtures, the Mirage checkpoints in
../shared/data/mirage-mugraphs) are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlc.compiler.errors import MlcError
from mlc.compiler.superopt.cost import CostReport, estimate, load_gpu, roofline
from mlc.specs.workloads import get_workload

# Workload -> Mirage checkpoint at the workload's default shapes (None: none was saved).
MIRAGE_FILES = {"rmsnorm_matmul": "rmsnorm_bs1.json", "gated_mlp": "gated_mlp.json",
                "lora": "lora.json", "gqa": "gqa_bs1.json", "qknorm": None,
                "ntrans": "ntrans_bs1.json"}
DEFAULT_MIRAGE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirage-mugraphs"
DTYPE_BYTES = 2  # fp16, as Mirage's kernels


def summary(report: CostReport) -> dict:
    return {"kernels": len(report.kernels), "time_us": report.time_us,
            "source": report.source, "dram_bytes": report.dram_bytes, "flops": report.flops,
            "per_kernel": report.to_json()["kernels"]}


def baseline(name, gpu, notes):
    try:
        from mlc.compiler.superopt.verify.lowering import lower_to_mugraph
    except ImportError:
        notes.add("baseline skipped: compiler/superopt/verify/lowering.py is not present")
        return None
    return summary(estimate(lower_to_mugraph(get_workload(name)), gpu, DTYPE_BYTES))


def hand_written(name, gpu, notes):
    try:
        from mlc.compiler.superopt.mugraph.fixtures import load_fixture
    except ImportError:
        notes.add("hand-written skipped: compiler/superopt/mugraph/fixtures.py is not present")
        return None
    try:
        graph = load_fixture(name)
    except (KeyError, ValueError, OSError) as err:  # MuGraphError and MlcError included
        notes.add(f"hand-written {name}: {type(err).__name__}: {err}")
        return None
    return summary(estimate(graph, gpu, DTYPE_BYTES))


def mirage_best(name, gpu, mirage_dir: Path, notes):
    """The cheapest (by the estimate) of a checkpoint's importable candidates."""
    file = MIRAGE_FILES.get(name)
    if file is None:
        notes.add(f"mirage {name}: no saved checkpoint at the default shapes")
        return None
    try:
        from mlc.compiler.superopt.mugraph.mirage_import import import_mirage_checkpoint
    except ImportError:
        notes.add("mirage skipped: compiler/superopt/mugraph/mirage_import.py is not present")
        return None
    if not (mirage_dir / file).is_file():
        notes.add(f"mirage skipped: {mirage_dir / file} not found")
        return None
    graphs, failures = import_mirage_checkpoint(mirage_dir / file)
    want = sorted(get_workload(name).inputs[n].shape for n in get_workload(name).inputs)
    times, reports = {}, {}
    for index, graph in graphs.items():
        if sorted(graph.inputs.values()) != want:
            failures[index] = f"input shapes {sorted(graph.inputs.values())} != {want}"
            continue
        try:
            reports[index] = estimate(graph, gpu, DTYPE_BYTES)
        except ValueError as err:  # MuGraphError: does not fit this GPU
            failures[index] = err
            continue
        times[index] = reports[index].time_us
    if failures:
        notes.add(f"mirage {name}: {len(failures)} of {len(graphs) + len(failures)} candidates "
                  f"skipped, e.g. #{min(failures)}: {failures[min(failures)]}")
    if not times:
        return None
    best = min(times, key=times.get)
    return {**summary(reports[best]), "file": file, "candidate": best,
            "candidates": len(graphs), "candidate_times_us": times}


def print_table(rows, gpu):
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"µGraph cost on {gpu.full_name} (estimated, fp16; µs / MB / MFLOP)")
    table.add_column("workload")
    for variant in ("baseline", "hand", "mirage best"):
        for col in ("k", "µs", "MB", "MFLOP"):
            table.add_column(f"{variant} {col}" if col == "µs" else col, justify="right")
    table.add_column("base/hand", justify="right")
    table.add_column("base/mirage", justify="right")
    for row in rows:
        cells = [row["workload"]]
        for key in ("baseline", "hand", "mirage"):
            s = row[key]
            cells += (["-"] * 4 if s is None else
                      [str(s["kernels"]), f"{s['time_us']:.1f}", f"{s['dram_bytes'] / 1e6:.2f}",
                       f"{s['flops'] / 1e6:.1f}"])
        for key in ("hand", "mirage"):
            base, other = row["baseline"], row[key]
            cells.append(f"{base['time_us'] / other['time_us']:.2f}x" if base and other else "-")
        table.add_row(*cells)
    Console(width=160).print(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="h100", help="GPU spec name or JSON path (default h100)")
    parser.add_argument("--out", type=Path, default=Path("build/bench/mugraph_cost.json"))
    parser.add_argument("--mirage-dir", type=Path, default=DEFAULT_MIRAGE_DIR)
    parser.add_argument("--workloads", default=",".join(MIRAGE_FILES),
                        help="comma-separated workload names")
    args = parser.parse_args()
    try:
        gpu = load_gpu(args.gpu)
    except MlcError as err:
        raise SystemExit(f"error: {err}") from None
    notes: set[str] = set()
    rows = [{"workload": name, "baseline": baseline(name, gpu, notes),
             "hand": hand_written(name, gpu, notes),
             "mirage": mirage_best(name, gpu, args.mirage_dir, notes)}
            for name in args.workloads.split(",")]
    print_table(rows, gpu)
    for note in sorted(notes):
        print(f"note: {note}")
    model = {name: getattr(roofline, name) for name in
             ("LAUNCH_OVERHEAD_US", "DRAM_EFFICIENCY", "MATMUL_EFFICIENCY", "VECTOR_EFFICIENCY",
              "PIPELINE_STAGES")}
    doc = {"benchmark": "mugraph_cost", "source": "estimated", "gpu": gpu.name,
           "gpu_source": gpu.source, "dtype_bytes": DTYPE_BYTES, "model": model,
           "rows": rows, "notes": sorted(notes)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
