"""Measured CPU latency, in one process, of the Mirage / Prism workloads (each at its "small"
preset and one CPU-sized shape) and of real models: torch eager, torch.compile (Inductor, CPU),
onnxruntime, mlc unfused (`mlc.runtime.run` of the imported graph) and mlc optimized (the graph
`optimize_graph` returns, run the same way). Contenders are timed round-robin (every round
calls each once) and reported as medians with the ratio to onnxruntime; also optimize seconds
vs Inductor's first-call compile seconds, the cost model's estimate of the fused regions, and
each contender's max relative error against the reference. Prints a table, writes JSON.

    .venv/bin/python bench/cpu_kernels.py --budget 10 --out build/bench/cpu_kernels.json
    .venv/bin/python bench/cpu_kernels.py --workloads gqa lora --shapes cpu --models

A contender is one (name, builder) row of CONTENDERS: the builder gets a Case and returns the
call to time (or raises Unavailable with the reason the column is n/a for that case).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Contenders alternate call by call and bring their own thread pools (torch's OpenMP, the
# OpenMP of Inductor's generated C++, onnxruntime's): a pool that spin-waits after its call
# steals the 2 cores from the next contender (measured: torch eager 0.1 ms alone, ~40 ms right
# after onnxruntime). Pools sleep when idle instead; set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
warnings.filterwarnings("ignore")

THREADS = 2
# One CPU-sized shape per workload: big enough that kernels, not Python, dominate; small
# enough that a search and a few hundred calls fit the benchmark's time on 2 cores.
CPU_SHAPES = {
    "rmsnorm_matmul": "b=4,d=1024,n=1024",
    "gated_mlp": "m=8,d=1024",
    "lora": "m=16,d=256,n=1024,r=16",
    "gqa": "b=1,q=64,kv=512,d=64",
    "qknorm": "b=1,q=64,kv=512,d=64",
    "ntrans": "b=4,d=1024",
    "prism_rms_norm": "n=8,d=1024",
    "prism_rmsnorm_mlp": "n=8,d=1024",
    "prism_swiglu": "n=8,d=1024",
    "prism_attention": "b=2,h=8,q=1,kv=256,d=64",
    "prism_qk_norm_attention": "b=2,h=8,q=1,kv=256,d=64",
}
MODELS = ("minilm:torchscript18", "gpt2:torchscript18", "llama:dynamo")


class Unavailable(Exception):
    """A contender cannot run this case; the message says why (shown as n/a)."""


@dataclass
class Case:
    """One benchmarked program and everything the contenders need to run it."""

    name: str
    graph: object  # the imported, unoptimized mlc Graph
    feeds: dict[str, np.ndarray]
    reference: np.ndarray  # numpy interpreter (float64) or the suite's reference output
    onnx_path: Path
    module: object = None  # the model's own torch module (real models only)
    optimized: object = None  # the graph optimize_graph returned (set by optimize_case)
    facts: dict = field(default_factory=dict)  # compile / optimize seconds, estimates


# ---- contenders: each builder returns the call to time ---------------------------------------

def torch_eager(case: Case) -> Callable[[], object]:
    """The model's torch module, or for a workload its IR graph as a prebuilt torch module
    (the formula op by op in torch, without mlc.runtime.run's per-call setup)."""
    import torch
    module = case.module if case.module is not None else _graph_module(case.graph)
    args = _torch_args(case)

    def call():
        with torch.inference_mode():
            return module(*args)
    return call


def inductor(case: Case) -> Callable[[], object]:
    """torch.compile (Inductor, CPU) of what torch_eager runs; the first call compiles."""
    import torch
    module = case.module if case.module is not None else _graph_module(case.graph)
    # Every workload's module shares TorchGraphModule.forward's code object: without a reset,
    # dynamo would count each case as a recompile of one frame and, past its recompile limit,
    # silently run eager (seen: "hit config.recompile_limit").
    torch._dynamo.reset()
    compiled = torch.compile(module)
    args = _torch_args(case)

    def call():
        with torch.inference_mode():
            return compiled(*args)
    start = time.perf_counter()
    try:
        call()
    except Exception as err:  # an Inductor failure makes the column n/a, not the run
        raise Unavailable(f"torch.compile failed: {type(err).__name__}: {err}"[:200]) from None
    case.facts["inductor_compile_s"] = round(time.perf_counter() - start, 2)
    return call


def onnxruntime_session(case: Case) -> Callable[[], object]:
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see top
    session = onnxruntime.InferenceSession(str(case.onnx_path), options,
                                           providers=["CPUExecutionProvider"])
    return lambda: session.run(None, case.feeds)


def mlc_unfused(case: Case) -> Callable[[], object]:
    """The unoptimized graph on mlc's torch executor, prepared once (what `mlc run --repeat`
    times)."""
    from mlc.runtime import prepare
    call = prepare(case.graph, executor="torch")
    return lambda: call(case.feeds)


def mlc_optimized(case: Case) -> Callable[[], object]:
    """optimize_graph within the budget, then the result run like mlc_unfused: its fused
    regions as compiled CPU kernels (runtime/fused.py)."""
    from mlc.runtime import prepare
    if case.optimized is None:
        raise Unavailable("not optimized")
    call = prepare(case.optimized, executor="torch")
    return lambda: call(case.feeds)


CONTENDERS: list[tuple[str, Callable[[Case], Callable[[], object]]]] = [
    ("torch eager", torch_eager),
    ("inductor", inductor),
    ("onnxruntime", onnxruntime_session),
    ("mlc unfused", mlc_unfused),
    ("mlc optimized", mlc_optimized),
]
BASELINE = "onnxruntime"


def _graph_module(graph):
    from mlc.runtime.torch_executor import TorchGraphModule
    return TorchGraphModule(graph).eval()


def _torch_args(case: Case) -> list:
    import torch
    return [torch.from_numpy(case.feeds[name]) for name in case.graph.inputs]


def to_array(result) -> np.ndarray:
    """The one output of any contender's result (dict, list, tensor or array) as numpy."""
    if isinstance(result, dict):
        result = next(iter(result.values()))
    elif isinstance(result, (list, tuple)):
        result = result[0]
    if hasattr(result, "detach"):
        result = result.detach().numpy()
    return np.asarray(result)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|."""
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - want).max() / scale)


# ---- cases ------------------------------------------------------------------------------------

def workload_case(spec: str, folder: Path) -> Case:
    """A workload spec ("gqa:small"): random inputs, float64 numpy reference, ONNX export."""
    from mlc.compiler.ir.interpreter import interpret
    from mlc.compiler.onnx_export import save_onnx
    from mlc.runtime import random_inputs
    from mlc.specs.workloads import get_workload
    graph = get_workload(spec)
    feeds = random_inputs(graph, 0)
    reference = next(iter(interpret(graph, feeds, float64=True).values()))
    path = save_onnx(graph, folder / f"{spec.replace(':', '_').replace(',', '_')}.onnx")
    return Case(spec, graph, feeds, reference, path)


def model_case(name: str, folder: Path) -> Case:
    """A real-model suite entry: its exported ONNX, imported by mlc; its own torch module."""
    from mlc.compiler.frontends import load_model
    from mlc.specs.real_models import ARCHITECTURES, build
    built = build(name, folder)
    module, _ = ARCHITECTURES[name.split(":")[0]]()  # seeded: the weights that were exported
    shapes = {key: tuple(value.shape) for key, value in built.feeds.items()}
    graph = load_model(built.path, shape_hints=shapes)
    return Case(name, graph, built.feeds, built.reference, built.path, module=module)


def optimize_case(case: Case, budget: float, target: str) -> None:
    """Run the superoptimizer on the case's graph; record its seconds and cost estimates."""
    from mlc.compiler.superopt.optimize import OptimizeOptions, optimize_graph
    start = time.perf_counter()
    result = optimize_graph(case.graph, OptimizeOptions(target=target, budget_s=budget))
    fused = [r for r in result.results if r.verified]
    case.optimized = result.graph
    case.facts.update(
        optimize_s=round(time.perf_counter() - start, 2),
        fused_kernels=sum(len(r.regions) for r in fused),
        est_fused_us=round(sum(r.est_time_us * len(r.regions) for r in result.results), 2),
        est_unfused_us=round(sum(r.baseline_est_time_us * len(r.regions)
                                 for r in result.results), 2))


def measure(case: Case, repeat: int, max_seconds: float) -> dict:
    """Build every contender, check its output once, time them interleaved; the case's row."""
    from mlc.runtime.timing import summarize, time_interleaved
    calls, row = {}, {"case": case.name, "contenders": {}}
    for name, builder in CONTENDERS:
        try:
            call = builder(case)
            error = relative_error(to_array(call()), case.reference)
        except Unavailable as why:
            row["contenders"][name] = {"n/a": str(why)}
            continue
        except Exception as err:  # a contender that crashes is reported, the others still run
            row["contenders"][name] = {"n/a": f"failed: {type(err).__name__}: {err}"[:300]}
            continue
        calls[name] = call
        row["contenders"][name] = {"max_rel_error": error}
    times = time_interleaved(calls, repeat, warmup=2, max_seconds=max_seconds)
    for name, seconds in times.items():
        latency = summarize(seconds)
        row["contenders"][name].update(median_ms=latency.median, min_ms=latency.min,
                                       p90_ms=latency.p90, repeats=len(seconds))
    base = row["contenders"].get(BASELINE, {}).get("median_ms")
    for entry in row["contenders"].values():
        if base and "median_ms" in entry:
            entry["vs_onnxruntime"] = entry["median_ms"] / base
    row.update(case.facts)
    return row


def bench_case(name: str, make, folder: Path, args, target: str) -> dict:
    """One case's row; a case that fails to build or optimize is a row naming the error."""
    try:
        case = make(name, folder)
        optimize_case(case, args.budget, target)
    except Exception as err:  # report and go on: one broken case must not hide the others
        return {"case": name, "contenders": {}, "error": f"{type(err).__name__}: {err}"[:300]}
    return measure(case, args.repeat, args.seconds)


# ---- output -----------------------------------------------------------------------------------

def print_table(rows: list[dict], budget: float, target: str) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"CPU latency, median ms (x = / onnxruntime); {THREADS} threads; "
                        f"optimize --budget {budget:g} --target {target}")
    names = [name for name, _ in CONTENDERS]
    for column in ("case", *names, "fused", "est µs fused/unfused", "opt s", "ind. s",
                   "opt err"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in rows:
        if "error" in row:
            table.add_row(row["case"], f"failed: {row['error'][:100]}")
            continue
        cells = [_cell(row["contenders"].get(name, {})) for name in names]
        optimized = row["contenders"].get("mlc optimized", {})
        table.add_row(row["case"], *cells, str(row.get("fused_kernels", "-")),
                      f"{row.get('est_fused_us', 0):.1f}/{row.get('est_unfused_us', 0):.1f}",
                      f"{row.get('optimize_s', 0):.1f}", f"{row.get('inductor_compile_s', 0):.1f}",
                      f"{optimized['max_rel_error']:.0e}" if "max_rel_error" in optimized
                      else "-")
    Console(width=200).print(table)


def _cell(entry: dict) -> str:
    if "median_ms" not in entry:
        return "n/a"
    ratio = entry.get("vs_onnxruntime")
    return f"{entry['median_ms']:.3f} ({ratio:.2f}x)" if ratio else f"{entry['median_ms']:.3f}"


def default_target() -> str:
    """The host CPU's spec when mlc has one, else the GPU spec optimize defaults to."""
    from mlc.compiler.errors import MlcError
    from mlc.compiler.superopt.cost.hardware import load_gpu
    try:
        load_gpu("cpu")
        return "cpu"
    except MlcError:
        return "h100"


def main() -> None:
    from mlc.specs.workloads import list_workloads
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/cpu_kernels.json"))
    parser.add_argument("--budget", type=float, default=10.0, help="optimize seconds per case")
    parser.add_argument("--target", default=None, help="optimize target (default: cpu if known)")
    parser.add_argument("--workloads", nargs="*", default=None,
                        help=f"default: all of {' '.join(list_workloads())}")
    parser.add_argument("--shapes", nargs="*", choices=("small", "cpu"),
                        default=["small", "cpu"])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--repeat", type=int, default=100, help="timed rounds at most")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="stop timing a case after this long (at least 3 rounds)")
    args = parser.parse_args()
    target = args.target or default_target()
    import torch
    torch.set_num_threads(THREADS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # A fresh Inductor cache: compile seconds are cold compiles, as mlc's are uncached.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        specs = [f"{name}:{'small' if shape == 'small' else CPU_SHAPES[name]}"
                 for name in (args.workloads or list_workloads()) for shape in args.shapes]
        cases = [(spec, workload_case) for spec in specs]
        cases += [(name, model_case) for name in args.models]
        for name, make in cases:
            rows.append(bench_case(name, make, Path(tmp), args, target))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, args.budget, target)
    summary = summarize_rows(rows)
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "cpu_kernels", "budget_s": args.budget, "target": target,
           "threads": THREADS, "torch": torch.__version__,
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
           "summary": summary, "rows": rows}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


def summarize_rows(rows: list[dict]) -> dict:
    """Counts the issue asks for: where optimized beats unfused / eager, median ratios."""
    def median_of(name, other):
        ratios = [r["contenders"][name]["median_ms"] / r["contenders"][other]["median_ms"]
                  for r in rows if "median_ms" in r["contenders"].get(name, {})
                  and "median_ms" in r["contenders"].get(other, {})]
        return round(statistics.median(ratios), 3) if ratios else None

    fused = [r for r in rows if r.get("fused_kernels")]
    faster = {other: sum(r["contenders"].get("mlc optimized", {}).get("median_ms", float("inf"))
                         < r["contenders"].get(other, {}).get("median_ms", 0) for r in fused)
              for other in ("mlc unfused", "torch eager")}
    return {"cases": len(rows), "cases_with_fused_kernels": len(fused),
            "optimized_faster_than": faster,
            "median_ratio_optimized_to": {other: median_of("mlc optimized", other)
                                          for other in ("onnxruntime", "inductor",
                                                        "mlc unfused", "torch eager")}}


if __name__ == "__main__":
    main()
