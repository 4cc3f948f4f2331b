"""`mlc optimize` over every shape of every Mirage / Prism workload sweep, in both search
modes: exit code, kernels written, verified regions, wall seconds. Prints a table, writes JSON.
With --target cpu --check (and, e.g., --specs of CPU-sized shapes), each artifact also runs
its compiled CPU kernels (MLC_FUSED=cpu) and is compared with the reference interpreter.

    python bench/workload_sweep.py --budget 5 --out build/bench/workload_sweep.json
    python bench/workload_sweep.py --target cpu --check --specs rmsnorm_matmul:small gqa:small
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlc.specs.workloads import list_workloads, sweep_workloads

MODES = ("concrete", "symbolic")


def run_one(spec: str, mode: str, budget: float, folder: Path, target: str = "h100",
            check: bool = False) -> dict:
    out = folder / f"{spec.replace(':', '_').replace(',', '_')}_{mode}"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mlc.cli.main", "optimize", f"workload:{spec}",
                           "--out", str(out), "--budget", str(budget), "--search", mode,
                           "--target", target, "--no-cache", "--json"], capture_output=True,
                          text=True)
    row = {"workload": spec, "search": mode, "exit_code": done.returncode,
           "wall_seconds": round(time.perf_counter() - start, 2)}
    if done.returncode == 0:
        report = json.loads((out / "report.json").read_text())
        row["kernels_written"] = len(list((out / "kernels").glob("region_*.json")))
        row["verified"] = sum(k["verified"] for k in report["kernels"])
        row["regions"] = len(report["kernels"])
        if check:
            row["max_rel_error"], row["path"] = check_artifact(spec, out)
    else:
        row["error"] = done.stderr.strip().splitlines()[-1:] or [""]
    return row


def check_artifact(spec: str, artifact: Path) -> tuple[float, str]:
    """(max relative error against the float64 reference interpreter, the fused path taken)
    of the artifact run with its compiled CPU kernels."""
    import os

    import numpy as np

    from mlc.compiler.ir import interpret
    from mlc.compiler.ir.serialize import load_graph
    from mlc.runtime import fused, random_inputs, run
    from mlc.specs.workloads import get_workload
    reference = get_workload(spec)
    graph = load_graph(artifact / "graph.json")
    feeds = random_inputs(reference, seed=0)
    os.environ["MLC_FUSED"] = "cpu"
    fused.reset_paths()
    got = run(graph, feeds)
    want = interpret(reference, feeds, float64=True)
    error = max(float(np.abs(got[k] - want[k]).max() / max(np.abs(want[k]).max(), 1e-30))
                for k in want)
    return error, "+".join(sorted(fused.PATHS)) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("build/bench/workload_sweep.json"))
    parser.add_argument("--target", default="h100")
    parser.add_argument("--check", action="store_true",
                        help="run each artifact's compiled CPU kernels against the reference")
    parser.add_argument("--specs", nargs="*", default=None,
                        help="workload specs (default: every shape of every paper sweep)")
    parser.add_argument("--search", nargs="*", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    specs = args.specs or [spec for name in list_workloads() for spec in sweep_workloads(name)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            for mode in args.search:
                rows.append(run_one(spec, mode, args.budget, Path(tmp), args.target,
                                    args.check))
                r = rows[-1]
                checked = (f"  err {r['max_rel_error']:.1e} via {r['path']}"
                           if "max_rel_error" in r else "")
                print(f"{r['workload']:<40} {mode:<9} exit {r['exit_code']:>3} "
                      f"kernels {r.get('kernels_written', '-'):>2} verified "
                      f"{r.get('verified', '-'):>2}/{r.get('regions', '-'):<2} "
                      f"{r['wall_seconds']:7.1f} s{checked}", flush=True)
    ok = sum(r["exit_code"] == 0 and r.get("kernels_written", 0) > 0 for r in rows)
    print(f"{ok}/{len(rows)} runs exit 0 and write kernels; max wall "
          f"{max(r['wall_seconds'] for r in rows):.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"budget_s": args.budget, "target": args.target,
                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
