"""`mlc optimize` on the real-model suite (specs/real_models.py): per model and search mode,
regions (distinct / in all), verified kernels, coverage of the model's FLOPs and bytes, search
seconds, estimated fused vs unfused time of the regions, and the optimized artifact's max error
(`mlc run`) against onnxruntime (.onnx) or torch eager (.pt2). Prints a table, writes JSON.

    .venv/bin/python bench/real_models.py --out build/bench/real_models.json
    .venv/bin/python bench/real_models.py --models gpt2:dynamo llama:pt2 --budget 30

Times are roofline estimates on the target's GPU spec (no GPU is used). The fused / unfused
times cover the regions only (the ops outside every region run as they are either way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRITON_INTERPRET", "1")
warnings.filterwarnings("ignore")

MODES = ("symbolic", "concrete")


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (the suite's 1e-4 criterion)."""
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - want).max() / scale)


def optimize_row(built, mode: str, budget: float, folder: Path) -> dict:
    """One `mlc optimize` + `mlc run` of a built suite model; its bench row."""
    from mlc.cli.testing import run_cli
    out = folder / f"{built.path.stem}_{mode}"
    start = time.perf_counter()
    done = run_cli("optimize", built.path, "--out", out, "--budget", budget, "--search", mode,
                   "--no-cache", "--force")
    row = {"model": built.name, "search": mode, "exit_code": done.returncode,
           "wall_seconds": round(time.perf_counter() - start, 2),
           "reference": built.reference_source}
    if done.returncode != 0:
        row["error"] = (done.stderr.strip().splitlines() or ["?"])[-1]
        return row
    report = json.loads((out / "report.json").read_text())
    kernels = report["kernels"]
    row.update(regions_distinct=len(kernels),
               regions_all=sum(k["instances"] for k in kernels),
               verified_distinct=sum(k["verified"] for k in kernels),
               verified_all=sum(k["instances"] for k in kernels if k["verified"]),
               coverage=report["coverage"], search_seconds=report["search_seconds"],
               fused_est_us=round(sum(k["est_time_us"] * k["instances"] for k in kernels), 3),
               unfused_est_us=round(sum(k["baseline_est_time_us"] * k["instances"]
                                        for k in kernels), 3),
               candidates_failed=sum(k["candidates_failed"] for k in kernels),
               **fused_blocks(out, kernels))
    row["max_rel_error"], problem = artifact_error(built, out, folder)
    if problem:
        row["run_error"] = problem
    return row


ATTENTION_OPS = {"softmax"}
MLP_OPS = {"gelu", "gelu_tanh", "silu"}


def fused_blocks(artifact: Path, kernels: list[dict]) -> dict:
    """How many region instances run as verified fused kernels holding a softmax (attention)
    or an activation (an MLP), read from the kernels' µGraph JSON."""
    counts = {"attention_kernels": 0, "mlp_kernels": 0}
    for kernel in kernels:
        if not kernel["verified"]:
            continue
        doc = json.loads((artifact / "kernels" / f"{kernel['kernel']}.json").read_text())
        ops = {op["op"] for k in doc["kernels"] for op in (k.get("block") or {}).get("ops", [])}
        counts["attention_kernels"] += kernel["instances"] * bool(ops & ATTENTION_OPS)
        counts["mlp_kernels"] += kernel["instances"] * bool(ops & MLP_OPS)
    return counts


def artifact_error(built, artifact: Path, folder: Path) -> tuple[float | None, str | None]:
    """`mlc run ARTIFACT` on the model's feeds: its max relative error against the reference,
    or (None, the run's last stderr line) when the run failed."""
    from mlc.cli.testing import run_cli
    inputs, outputs = folder / f"{artifact.name}_in.npz", folder / f"{artifact.name}_out.npz"
    np.savez(inputs, **built.feeds)
    done = run_cli("run", artifact, "--inputs", inputs, "--output", outputs)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["?"])[-1]
    with np.load(outputs) as got:
        return relative_error(got[got.files[0]], built.reference), None


def print_table(rows: list[dict], budget: float) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"mlc optimize on real models (--budget {budget:g} s, estimated µs)")
    columns = ("model", "search", "regions", "verified", "attn", "mlp", "FLOPs cov", "bytes cov",
               "ops fused",
               "search s", "fused µs", "unfused µs", "speedup", "max rel err")
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "search") else "right")
    for r in rows:
        if r["exit_code"] != 0:
            table.add_row(r["model"], r["search"], f"exit {r['exit_code']}: {r['error']}")
            continue
        cov, fused, unfused = r["coverage"], r["fused_est_us"], r["unfused_est_us"]
        err = r["max_rel_error"]
        table.add_row(r["model"], r["search"], f"{r['regions_distinct']}/{r['regions_all']}",
                      f"{r['verified_distinct']}/{r['verified_all']}",
                      str(r["attention_kernels"]), str(r["mlp_kernels"]),
                      f"{cov['flops_fraction']:.0%}", f"{cov['bytes_fraction']:.0%}",
                      f"{cov['ops_fused']}/{cov['ops_total']}", f"{r['search_seconds']:.1f}",
                      f"{fused:.1f}", f"{unfused:.1f}",
                      f"{unfused / fused:.2f}x" if fused else "-",
                      "run failed" if err is None else f"{err:.1e}")
    Console(width=160).print(table)


def main():
    from mlc.specs.real_models import UNSUPPORTED, build, suite
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/real_models.json"))
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per optimize")
    parser.add_argument("--models", nargs="*", default=None,
                        help=f"suite names (default: all): {' '.join(suite())}")
    parser.add_argument("--search", nargs="*", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models or suite():
            built = build(name, Path(tmp))
            for mode in args.search:
                rows.append(optimize_row(built, mode, args.budget, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    print_table(rows, args.budget)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "real_models", "budget_s": args.budget,
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
           "unsupported": UNSUPPORTED, "rows": rows}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
