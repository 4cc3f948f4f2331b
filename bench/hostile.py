"""The bad-input battery (tests/cli/hostile_battery.py) as a table: per command, cases tried,
clear errors and bad endings (exit 0 on nonsense, internal errors, tracebacks, hangs, lost
files), plus every bad case with its reason.

    .venv/bin/python bench/hostile.py --out build/bench/hostile.json [--only COMMAND]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cli"))
from hostile_battery import build_fixtures, cases, run_case  # noqa: E402

from mlc.cli.testing import run_cli  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/hostile.json"))
    parser.add_argument("--only", help="run only the cases of this command")
    args = parser.parse_args()
    battery = [c for c in cases() if args.only in (None, c.command)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlc-hostile-") as root:
        root = Path(root)
        build_fixtures(root / "fixtures", run_cli)
        for index, case in enumerate(battery):
            started = time.perf_counter()
            outcome = run_case(case, root / f"case{index}", run_cli)
            rows.append({"command": case.command, "case": case.description,
                         "seconds": round(time.perf_counter() - started, 3), **outcome})
            mark = "." if outcome["verdict"] == "clear" else "X"
            print(mark, end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)
    tried, clear = Counter(r["command"] for r in rows), Counter()
    for r in rows:
        clear[r["command"]] += r["verdict"] == "clear"
    table = Table(title="bad inputs and faults by command")
    for column in ("command", "tried", "clear error", "bad"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for command in sorted(tried):
        table.add_row(command, str(tried[command]), str(clear[command]),
                      str(tried[command] - clear[command]))
    table.add_row("all", str(len(rows)), str(sum(clear.values())),
                  str(len(rows) - sum(clear.values())))
    console = Console()
    console.print(table)
    for r in rows:
        if r["verdict"] == "bad":
            console.print(f"BAD {r['command']}: {r['case']}: {r['why']} :: {r['stderr']}",
                          markup=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cases": rows, "tried": len(rows),
                                    "clear": sum(clear.values())}, indent=1) + "\n")


if __name__ == "__main__":
    main()
