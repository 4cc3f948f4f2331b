"""FlexLLM co-serving, simulated: finetuning throughput and SLO attainment of co-serving against
separate inference/finetuning clusters and temporal sharing, beside the paper's ratios.

Setup as in FlexLLM's evaluation (research notes A2): Llama-3.1-8B on one node of 4 A100-80GB
(TP 1, so 4 replicas), TPOT SLO 45 ms, TTFT SLO 5 s, LoRA rank 16 on 1024-token sequences,
light load 4 req/s and heavy load 20 req/s, Poisson and bursty (Gamma, CV 2) arrivals with
ShareGPT-like lengths. Separate clusters appear twice: the paper's fixed 75% inference / 25%
finetuning split, and the smallest inference share reaching 90% SLO attainment. The full run
adds Qwen2.5-14B (TP 2, 8 GPUs) and Qwen2.5-32B (TP 4, 16 GPUs) at a 75 ms SLO: 4 replicas
each, so the 75/25 split is 3 inference replicas and 1 finetuning replica as for the 8B.
"ft kept" is co-serving's finetuning throughput as a share of what the same GPUs finetune with
no inference (the paper reports > 76% at peak demand). Everything runs on the analytical roofline of
compiler/plan/coserve/latency.py, not on GPUs.

    .venv/bin/python bench/coserve.py --out build/bench/coserve.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlc.compiler.plan.coserve.compare import compare, run_group, separate_clusters
from mlc.compiler.plan.coserve.latency import FinetuneShape
from mlc.compiler.plan.coserve.planner import Workload, build_setup, choose_replica
from mlc.compiler.plan.coserve.traces import generate_trace

PAPER = {4.0: "2.5-6.8x", 20.0: "1.9-4.8x"}  # finetuning throughput, co-serving / separate
DEPLOYMENTS = [("llama-3.1-8b", 4, 1, 0.045), ("qwen2.5-14b", 8, 2, 0.075),
               ("qwen2.5-32b", 16, 4, 0.075)]  # model, GPUs, TP (the paper's), TPOT SLO
PAPER_SPLIT = 0.75


def scenario(model: str, gpus: int, tp: int, slo: float, rate: float, kind: str,
             duration: float, seed: int) -> dict:
    """One deployment at one load: the three strategies plus the paper's fixed split."""
    trace = generate_trace(rate, duration, kind, seed)
    finetune = FinetuneShape()
    workload = Workload.of(trace, duration)
    replica, memory = choose_replica(model, "a100-80gb", gpus, tp, finetune,
                                     workload.max_sequence)
    setup, _ = build_setup(replica, memory, workload, gpus, slo, finetune)
    start = time.perf_counter()
    report = compare(setup, trace, gpus, duration)
    replicas = gpus // replica.tp
    report["separate_75_25"] = separate_clusters(setup, trace, replicas, duration, PAPER_SPLIT)
    idle = run_group(setup, [], replicas, "coserve", duration).finetune_tokens / duration
    coserve = report["coserve"]["finetune_tokens_per_s"]
    return {"model": model, "gpus": gpus, "tp": replica.tp, "slo_tpot_ms": slo * 1e3,
            "rate": rate, "trace": kind, "requests": len(trace), "token_budget": setup.budget,
            "strategies": report, "idle_finetune_tokens_per_s": idle,
            "finetune_kept": coserve / idle,
            "ratios": {name: coserve / report[name]["finetune_tokens_per_s"]
                       if report[name]["finetune_tokens_per_s"] else None
                       for name in ("separate_75_25", "separate", "temporal")},
            "paper_ratio": PAPER.get(rate, "-"),
            "simulate_seconds": time.perf_counter() - start}


def _ratio(value) -> str:
    return "inf" if value is None else f"{value:.2f}x"


def show(console: Console, rows: list[dict]) -> None:
    table = Table(title="Co-serving vs separate clusters vs temporal sharing (simulated A100-80GB;"
                  " finetuning tokens/s, SLO attainment)")
    for column in ("model / GPUs", "req/s", "trace", "budget", "coserve", "sep 75/25",
                   "sep min-k", "temporal", "x 75/25", "x min-k", "x temporal", "paper x",
                   "ft kept", "sim s"):
        table.add_column(column, justify="right")
    for row in rows:
        cells = []
        for name in ("coserve", "separate_75_25", "separate", "temporal"):
            entry = row["strategies"][name]
            cells.append(f"{entry['finetune_tokens_per_s']:,.0f} "
                         f"({entry['slo_attainment']:.0%})")
        ratios = row["ratios"]
        table.add_row(f"{row['model']} / {row['gpus']}", f"{row['rate']:g}", row["trace"],
                      str(row["token_budget"]), *cells, _ratio(ratios["separate_75_25"]),
                      _ratio(ratios["separate"]), _ratio(ratios["temporal"]),
                      row["paper_ratio"], f"{row['finetune_kept']:.0%}",
                      f"{row['simulate_seconds']:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench/coserve.json")
    parser.add_argument("--quick", action="store_true",
                        help="Llama-3.1-8B only, Poisson arrivals, a 20-second window.")
    parser.add_argument("--duration", type=float, default=60.0, help="Simulated seconds.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    duration = 20.0 if args.quick else args.duration
    deployments = DEPLOYMENTS[:1] if args.quick else DEPLOYMENTS
    kinds = ("poisson",) if args.quick else ("poisson", "bursty")
    console = Console(stderr=True)
    rows = []
    for model, gpus, tp, slo in deployments:
        for kind in kinds:
            for rate in (4.0, 20.0):
                console.print(f"simulating {model} on {gpus} GPUs, {rate:g} req/s {kind}")
                rows.append(scenario(model, gpus, tp, slo, rate, kind, duration, args.seed))
    show(Console(width=200), rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"duration_s": duration, "rows": rows}, indent=1) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
