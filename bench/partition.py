"""GraphPipe vs sequential pipeline planning: MMT, DLRM and CANDLE-Uno on 4, 8, 16 and 32
V100-16GB devices, on one cost model. Reports estimated (simulated) throughput, the speedup of
the graph pipeline, and the search seconds of both planners. Weak scaling: the mini-batch is
a fixed number of samples per device.

    .venv/bin/python bench/partition.py --out build/bench/partition.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlc.compiler.partition.cost import Machine
from mlc.compiler.partition.driver import partition
from mlc.compiler.superopt.cost.hardware import load_gpu
from mlc.specs.workloads import get_workload

MODELS = {"mmt": 8, "dlrm": 32, "candle_uno": 32}  # samples per device in the mini-batch
DEVICES = (4, 8, 16, 32)


def run(models, devices, memory_gb: float) -> list[dict]:
    machine = Machine.from_gpu(load_gpu("v100"), int(memory_gb * 1e9))
    rows = []
    for name in models:
        graph = get_workload(name)
        for count in devices:
            batch = MODELS[name] * count
            start = time.perf_counter()
            results = partition(graph, f"workload:{name}", count, batch, machine)
            row = {"model": name, "devices": count, "batch": batch,
                   "wall_seconds": time.perf_counter() - start}
            for key, planned in results.items():
                row[key] = {"throughput": planned.simulation.throughput,
                            "search_seconds": planned.result.search_seconds,
                            "stages": len(planned.plan["stages"]),
                            "micro_batch": planned.plan["micro_batch"],
                            "peak_memory_bytes": max(planned.simulation.peak_memory)}
            row["speedup"] = (row["graph_pipeline"]["throughput"]
                              / row["sequential_pipeline"]["throughput"])
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("model", "devices", "speedup")}), flush=True)
    return rows


def table(rows: list[dict]) -> Table:
    out = Table(title="GraphPipe vs sequential pipeline (V100-16GB, estimated)")
    for col in ("model", "devices", "batch", "GP samples/s", "GP stages/b", "seq samples/s",
                "seq stages/b", "speedup", "GP search s", "seq search s"):
        out.add_column(col, justify="right")
    for r in rows:
        gp, seq = r["graph_pipeline"], r["sequential_pipeline"]
        out.add_row(r["model"], str(r["devices"]), str(r["batch"]), f"{gp['throughput']:.0f}",
                    f"{gp['stages']}/{gp['micro_batch']}", f"{seq['throughput']:.0f}",
                    f"{seq['stages']}/{seq['micro_batch']}", f"{r['speedup']:.2f}x",
                    f"{gp['search_seconds']:.2f}", f"{seq['search_seconds']:.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--devices", nargs="+", type=int, default=list(DEVICES))
    parser.add_argument("--memory-gb", type=float, default=16.0)
    parser.add_argument("--out", default="build/bench/partition.json")
    args = parser.parse_args()
    rows = run(args.models, args.devices, args.memory_gb)
    Console().print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
