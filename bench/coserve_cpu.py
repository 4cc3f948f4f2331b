"""FlexLLM co-serving, measured on this CPU with a tiny Llama: inference latency with and
without co-served LoRA finetuning, finetuning tokens/s, and the loss going down.

The same request trace (examples/requests.jsonl: 24 requests arriving at ~12/s) runs three
ways under the hybrid token scheduler (budget 64 tokens, TPOT SLO 45 ms): inference only,
co-serving with finetuning on examples/finetune.jsonl, and finetuning alone (an empty trace
window is not possible, so "alone" finetunes the same data with no requests). Each is repeated
and the median taken, since the machine is shared.

    .venv/bin/python bench/coserve_cpu.py --out build/bench/coserve_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from mlc.runtime.serve.session import ServeSettings, run_session

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("tpot_mean_ms", "tpot_p99_ms", "ttft_mean_ms", "slo_attainment",
        "output_tokens_per_second", "finetune_tokens_per_second", "loss_first", "loss_last",
        "seconds")


def run(mode: str, settings: ServeSettings, requests: Path, finetune: Path, empty: Path) -> dict:
    trace = empty if mode == "finetune only" else requests
    data = None if mode == "inference only" else finetune
    return run_session(settings, trace, data)["report"]


def median_report(reports: list[dict]) -> dict:
    out = {}
    for key in KEYS:
        values = [r[key] for r in reports if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=Path, default=ROOT / "examples" / "requests.jsonl")
    parser.add_argument("--finetune", type=Path, default=ROOT / "examples" / "finetune.jsonl")
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--slo-ms", type=float, default=45.0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("build/bench/coserve_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = ServeSettings(args.model, args.budget, args.slo_ms / 1e3, lora_rank=8,
                             epochs=args.epochs)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp, "one.jsonl")  # finetuning alone: one 1-token request as a clock
        empty.write_text(json.dumps({"id": "idle", "prompt": [1], "max_new_tokens": 1}) + "\n")
        for mode in ("inference only", "co-serving", "finetune only"):
            reports = [run(mode, settings, args.requests, args.finetune, empty)
                       for _ in range(args.repeats)]
            rows[mode] = median_report(reports)
    table = Table(title=f"{args.model} on this CPU (1 thread), budget {args.budget}, "
                        f"SLO {args.slo_ms:g} ms, median of {args.repeats}")
    for col in ("run", "TPOT mean ms", "TPOT p99 ms", "TTFT ms", "SLO met", "output tok/s",
                "finetune tok/s", "loss first -> last", "seconds"):
        table.add_column(col, justify="right")

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)
    for mode, r in rows.items():
        loss = ("-" if r["loss_first"] is None
                else f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}")
        table.add_row(mode, fmt(r["tpot_mean_ms"], ".2f"), fmt(r["tpot_p99_ms"], ".2f"),
                      fmt(r["ttft_mean_ms"], ".1f"), fmt(r["slo_attainment"], ".0%"),
                      fmt(r["output_tokens_per_second"], ".0f"),
                      fmt(r["finetune_tokens_per_second"], ".0f"), loss, fmt(r["seconds"], ".2f"))
    Console(width=150).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out),
                                                              "requests": str(args.requests),
                                                              "finetune": str(args.finetune)},
                                    "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
