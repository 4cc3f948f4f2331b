"""ONNX backend node test cases (shipped with the `onnx` package) through mlc's ONNX frontend and
reference interpreter: pass counts per claimed op. Prints a table and writes JSON.

    .venv/bin/python bench/onnx_conformance.py --out build/bench/onnx_conformance.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlc.compiler.frontends.onnx_conformance import run_all


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/onnx_conformance.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    result = run_all()
    seconds = time.perf_counter() - start
    table = Table(title=f"ONNX backend node cases for claimed ops: {result['passed']}/"
                        f"{result['total']} pass ({100 * result['passed'] / result['total']:.1f}%)")
    for col in ("op", "passed", "total", "op", "passed", "total", "op", "passed", "total"):
        table.add_column(col, justify="left" if col == "op" else "right")
    items = list(result["per_op"].items())
    third = -(-len(items) // 3)
    for i in range(third):
        cells = []
        for op, counts in items[i::third]:
            cells += [op, str(counts["passed"]), str(counts["total"])]
        table.add_row(*(cells + [""] * (9 - len(cells))))
    console = Console(width=120)
    console.print(table)
    console.print("failures:")
    for failure in result["failures"]:
        console.print(f"  {failure['case']}: {failure['reason'][:110]}", highlight=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "onnx_conformance", "seconds": seconds,
                                    **result}, indent=1) + "\n")
    console.print(f"wrote {args.out} ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
