"""`mlc optimize` over every shape of every Mirage / Prism workload sweep, in both search
modes: exit code, kernels written, verified regions, wall seconds. Prints a table, writes JSON.

    python bench/workload_sweep.py --budget 5 --out build/bench/workload_sweep.json
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


def run_one(spec: str, mode: str, budget: float, folder: Path) -> dict:
    out = folder / f"{spec.replace(':', '_').replace(',', '_')}_{mode}"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mlc.cli.main", "optimize", f"workload:{spec}",
                           "--out", str(out), "--budget", str(budget), "--search", mode,
                           "--no-cache", "--json"], capture_output=True, text=True)
    row = {"workload": spec, "search": mode, "exit_code": done.returncode,
           "wall_seconds": round(time.perf_counter() - start, 2)}
    if done.returncode == 0:
        report = json.loads((out / "report.json").read_text())
        row["kernels_written"] = len(list((out / "kernels").glob("region_*.py")))
        row["verified"] = sum(k["verified"] for k in report["kernels"])
        row["regions"] = len(report["kernels"])
    else:
        row["error"] = done.stderr.strip().splitlines()[-1:] or [""]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("build/bench/workload_sweep.json"))
    args = parser.parse_args()
    specs = [spec for name in list_workloads() for spec in sweep_workloads(name)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            for mode in MODES:
                rows.append(run_one(spec, mode, args.budget, Path(tmp)))
                r = rows[-1]
                print(f"{r['workload']:<40} {mode:<9} exit {r['exit_code']:>3} "
                      f"kernels {r.get('kernels_written', '-'):>2} verified "
                      f"{r.get('verified', '-'):>2}/{r.get('regions', '-'):<2} "
                      f"{r['wall_seconds']:7.1f} s", flush=True)
    ok = sum(r["exit_code"] == 0 and r.get("kernels_written", 0) > 0 for r in rows)
    print(f"{ok}/{len(rows)} runs exit 0 and write kernels; max wall "
          f"{max(r['wall_seconds'] for r in rows):.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"budget_s": args.budget, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
