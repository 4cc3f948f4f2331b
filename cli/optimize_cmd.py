"""`mlc optimize`: find fused, verified kernels for a model's hot regions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from mlc.compiler.artifact import (
    REPORT_FORMAT_VERSION,
    atomic_directory,
    check_output_directory,
)
from mlc.compiler.errors import MlcError
from mlc.compiler.frontends import load_model
from mlc.compiler.ir.serialize import save_graph
from mlc.compiler.superopt.optimize import MAX_BLOCK_OPS, MAX_BUDGET_S, MAX_KERNEL_OPS, MAX_SEED

from .common import FiniteFloat, emit, force_option, json_option, parse_shapes, shape_option


def _write_kernels(folder: Path, index: int, graph, target: str) -> None:
    """region_N.json (the µGraph, what `mlc run` regenerates kernels from), .svg, and the
    target's sources: .cpp for the CPU target, Triton .py and CUDA .cu for a GPU."""
    from mlc.compiler.superopt.mugraph import mugraph_to_json
    from mlc.compiler.superopt.mugraph.draw import mugraph_svg
    from mlc.kernels.cpu import render_c
    from mlc.kernels.cuda import render_cuda
    from mlc.kernels.triton import render_triton
    stem = folder / f"region_{index}"
    stem.with_suffix(".json").write_text(json.dumps(mugraph_to_json(graph), indent=1) + "\n")
    if target == "cpu":
        stem.with_suffix(".cpp").write_text(render_c(graph))
    else:
        stem.with_suffix(".py").write_text(render_triton(graph))
        stem.with_suffix(".cu").write_text(render_cuda(graph))
    stem.with_suffix(".svg").write_text(mugraph_svg(graph))


def _report_md(model: str, target: str, rows: list[dict], notes: list[str], seconds: float,
               coverage: dict):
    from mlc.compiler.superopt.coverage import coverage_line
    lines = [f"# mlc optimize: {model}", "", coverage_line(coverage) + ".", "",
             f"Target {target}; times are roofline estimates; search took {seconds:.1f} s.", "",
             "| kernel | region (first node .. last) | × | search | verified | est µs | "
             "baseline µs | speedup | enumerated | pruned | verified cands | search s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["candidates"]
        lines.append(f"| {r['kernel']} | {r['region'][0]} .. {r['region'][-1]} | "
                     f"{r['instances']} | {r['search']} | "
                     f"{r['verification'] if r['verified'] else 'baseline'} | "
                     f"{r['est_time_us']:.2f} | {r['baseline_est_time_us']:.2f} | "
                     f"{r['speedup']:.2f}× | {c['enumerated']} | {c['pruned']} | "
                     f"{c['verified']} | {r['search_seconds']:.1f} |")
    lines.append("")
    for r in rows:
        lines += [f"## {r['kernel']}", "", f"![{r['kernel']}](kernels/{r['kernel']}.svg)", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _measured(row: dict) -> str:
    """The summary's measured times, when the kernels were timed (CPU target)."""
    if row["measured_us"] is None:
        return ""
    return (f"; measured {row['measured_us']:.1f} µs vs {row['baseline_measured_us']:.1f} µs "
            "unfused")


def _failed(row: dict) -> str:
    """The summary's mention of dropped candidates (the first error is in the notes)."""
    count = row["candidates_failed"]
    return f", {count} candidate(s) failed: see report notes" if count else ""


def default_cache_dir() -> Path:
    """$MLC_CACHE_DIR, else ~/.cache/mlc/search."""
    env = os.environ.get("MLC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mlc" / "search"


def resolve_cache_dir(cache_dir: Path | None, no_cache: bool) -> tuple[str | None, str | None]:
    """The cache folder to use (None: no cache) and a warning to show. A folder the user
    named (--cache-dir, $MLC_CACHE_DIR) that cannot be used is an error; the built-in default
    only costs the cache, with a warning."""
    if no_cache:
        return None, None
    if cache_dir is not None:
        named = "--cache-dir"
    elif os.environ.get("MLC_CACHE_DIR"):
        named = "$MLC_CACHE_DIR"
    else:
        named = None
    path = cache_dir if cache_dir is not None else default_cache_dir()
    problem = _cache_problem(path)
    if problem is None:
        return str(path), None
    if named is None:
        warning = f"search cache {path} {problem}; running without a cache"
        click.echo(f"warning: {warning}", err=True)
        return None, warning
    raise MlcError(f"{named} {path}: {problem}; give a writable folder, or pass --no-cache")


def _cache_problem(path: Path) -> str | None:
    """Why `path` cannot hold the search cache (None: it can; it is created if missing)."""
    if path.exists() and not path.is_dir():
        return "is not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot be created ({err.strerror or err})"
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return "is not writable"
    return None


class _progress_bar:
    """A rich progress bar on stderr fed by the search's progress(message, done=, total=)."""

    def __enter__(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        self._bar = Progress(TextColumn("searching"), BarColumn(), TextColumn("{task.description}"),
                             TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task("", total=None)
        return self

    def __call__(self, message: str = "", done: int | None = None, total: int | None = None, **_):
        self._bar.update(self._task, description=message, completed=done, total=total)

    def __exit__(self, *exc):
        return self._bar.__exit__(*exc)


@click.command("optimize")
@click.argument("model")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR")
@click.option("--target", default="h100", show_default=True,
              help="GPU spec for the cost model, or cpu: this host (C++ kernels, candidates "
                   "ranked by timing them here).")
@click.option("--budget", type=FiniteFloat(min=0, min_open=True, max=MAX_BUDGET_S),
              default=60.0, show_default=True, metavar="SECONDS",
              help="Search time for the whole model (at most a week); the best found so far "
                   "is kept.")
@click.option("--max-kernel-ops", type=click.IntRange(1, MAX_KERNEL_OPS), default=1,
              show_default=True, help="Kernels per fused region.")
@click.option("--max-block-ops", type=click.IntRange(1, MAX_BLOCK_OPS), default=7,
              show_default=True, help="Tile ops per graph-defined kernel.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the verifier's random trials (a non-negative integer).")
@click.option("--search", "search_mode", type=click.Choice(["symbolic", "concrete"]),
              default="symbolic", show_default=True,
              help="symbolic: one sGraph search per region structure, instantiated per shape "
                   "(Prism); concrete: one search per region shape (Mirage).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Search-result cache (default: $MLC_CACHE_DIR or ~/.cache/mlc/search).")
@click.option("--no-cache", is_flag=True, help="Search again even when a result is cached.")
@shape_option
@force_option
@json_option
def optimize_cmd(model, out, target, budget, max_kernel_ops, max_block_ops, seed, search_mode,
                 cache_dir, no_cache, shapes, as_json, force: bool = False) -> None:
    """Superoptimize MODEL: fuse its matmul / elementwise / reduction / softmax regions into
    verified µGraph kernels (Triton + CUDA) and write an artifact that `mlc run DIR` executes.

    \b
    Example:
      mlc optimize examples/block.onnx --out build/block --budget 60
      mlc optimize workload:rmsnorm_matmul --out build/rms --json
      mlc optimize workload:prism_swiglu --out build/swiglu --search concrete
    """
    from mlc.compiler.superopt.cost import load_gpu
    from mlc.compiler.superopt.coverage import coverage_line, coverage_of
    from mlc.compiler.superopt.optimize import OptimizeOptions, optimize_graph

    check_output_directory(out, force=force, inputs=[model])  # refuse before the search
    gpu = load_gpu(target)
    cache, warning = resolve_cache_dir(cache_dir, no_cache)
    graph = load_model(model, parse_shapes(shapes))
    options = OptimizeOptions(target=gpu.name, budget_s=budget, max_kernel_ops=max_kernel_ops,
                              max_block_ops=max_block_ops, seed=seed, search=search_mode,
                              cache_dir=cache)
    with _progress_bar() as progress:
        result = optimize_graph(graph, options, progress)
    if warning:
        result.notes.insert(0, warning)
    rows = [r.row(i) for i, r in enumerate(result.results)]
    coverage = coverage_of(result)
    report = {"format_version": REPORT_FORMAT_VERSION, "command": "optimize", "source": model,
              "target": gpu.name,
              "time_source": "measured" if any(r["measured_us"] is not None for r in rows)
              else "estimated",
              "search_seconds": round(result.search_seconds, 3), "coverage": coverage,
              "kernels": rows,
              "notes": result.notes}
    with atomic_directory(out, force=force, inputs=[model]) as tmp:
        save_graph(result.graph, tmp)
        (tmp / "kernels").mkdir()
        for index, region_result in enumerate(result.results):
            _write_kernels(tmp / "kernels", index, region_result.best, gpu.name)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "report.md").write_text(_report_md(model, gpu.name, rows, result.notes,
                                                  result.search_seconds, coverage))
    total = sum(r["est_time_us"] * r["instances"] for r in rows)
    base = sum(r["baseline_est_time_us"] * r["instances"] for r in rows)
    text = [f"{len(rows)} distinct region(s), {sum(r['instances'] for r in rows)} in all; "
            f"search {result.search_seconds:.1f} s"]
    text += [f"  {r['kernel']} ×{r['instances']}: {r['est_time_us']:.2f} µs vs "
             f"{r['baseline_est_time_us']:.2f} µs unfused "
             f"({r['verification'] + ' verified' if r['verified'] else 'baseline kept'}, "
             f"{r['search']} search{', cached' if r['cached'] else ''}{_failed(r)})"
             + _measured(r) for r in rows]
    if rows:
        text.append(f"fused regions: {total:.1f} µs vs {base:.1f} µs unfused (estimated, "
                    f"{gpu.name})")
    if all(r["measured_us"] is not None for r in rows) and rows:
        fused = sum(r["measured_us"] * r["instances"] for r in rows)
        unfused = sum(r["baseline_measured_us"] * r["instances"] for r in rows)
        text.append(f"fused regions: {fused:.1f} µs vs {unfused:.1f} µs unfused (measured "
                    "here, compiled kernels)")
    text.append(coverage_line(coverage))
    text.append(f"wrote {out}/ (graph.json, kernels/, report.json, report.md)")
    emit(as_json, report, "\n".join(text))
