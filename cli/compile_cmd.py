"""`mlc compile`: a µGraph into Triton and CUDA kernels, with a cost estimate for a target GPU."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click

from mlc.compiler.artifact import REPORT_FORMAT_VERSION, atomic_directory
from mlc.compiler.errors import MlcError

from .common import emit, force_option, json_option


def load_mugraph_spec(spec: str):
    """A µGraph JSON path or `fixture:NAME` (the hand-written µGraphs shipped in specs/)."""
    from mlc.compiler.superopt.mugraph import MuGraphError, load_mugraph
    from mlc.compiler.superopt.mugraph.fixtures import list_fixtures, load_fixture
    try:
        if spec.startswith("fixture:"):
            name = spec[len("fixture:"):]
            if name not in list_fixtures():
                raise MlcError(f"unknown fixture {name!r}; known: {', '.join(list_fixtures())}")
            return load_fixture(name)
        if not Path(spec).is_file():
            raise MlcError(f"{spec}: no such file")
        return load_mugraph(spec)
    except MuGraphError as err:
        raise MlcError(str(err)) from None


def _nvcc_check(source: str, arch: str) -> dict:
    from mlc.kernels.cuda import CudaCompileError, compile_cuda
    if shutil.which("nvcc") is None:
        return {"arch": arch, "status": "skipped", "detail": "nvcc not found"}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            compile_cuda(source, arch=arch, workdir=tmp)
        except CudaCompileError as err:
            return {"arch": arch, "status": "failed", "detail": str(err)[:2000]}
    return {"arch": arch, "status": "ok"}


@click.command("compile")
@click.argument("mugraph")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Artifact directory to write (replaced atomically).")
@click.option("--target", default="h100", show_default=True,
              help="GPU spec from specs/hardware (h100, h200, a100-80gb, l40s, ...) or a JSON.")
@click.option("--nvcc/--no-nvcc", default=True, show_default=True,
              help="Compile-check the CUDA source with nvcc for the target's arch.")
@force_option
@json_option
def compile_cmd(mugraph: str, out: Path, target: str, nvcc: bool, as_json: bool,
                force: bool = False) -> None:
    """Render MUGRAPH (a µGraph JSON or fixture:NAME) to Triton and CUDA, estimate its time on
    the target, and write an artifact directory that `mlc run DIR` executes.

    \b
    Example:
      mlc compile fixture:rmsnorm_matmul_small --out build/rms --target h100
      mlc run build/rms --random
    """
    from mlc.compiler.superopt.cost import estimate, load_gpu
    from mlc.compiler.superopt.mugraph import MuGraphError, mugraph_to_json, validate
    from mlc.kernels.cuda import HELPERS_HEADER, render_cuda
    from mlc.kernels.triton import render_triton

    graph = load_mugraph_spec(mugraph)
    gpu = load_gpu(target)
    try:
        validate(graph, smem_limit_bytes=gpu.smem_per_block)
        triton_source = render_triton(graph)
        cuda_source = render_cuda(graph)
        cost = estimate(graph, gpu)
    except MuGraphError as err:
        raise MlcError(f"{mugraph}: {err}") from None
    nvcc_result = _nvcc_check(cuda_source, gpu.arch) if nvcc else {"status": "not run"}
    kernels = [{"name": k.name, "kind": k.kind, "flops": k.flops, "dram_bytes": k.dram_bytes,
                "blocks": k.blocks, "est_time_us": round(k.est_time_us, 3), "bound": k.bound}
               for k in cost.kernels]
    report = {"format_version": REPORT_FORMAT_VERSION, "command": "compile", "source": mugraph,
              "target": gpu.name, "time_source": cost.source,
              "est_time_us": round(cost.est_time_us, 3), "flops": cost.flops,
              "dram_bytes": cost.dram_bytes, "kernels": kernels, "nvcc": nvcc_result}
    lines = [f"# mlc compile: {graph.name}", "", f"Target {gpu.full_name}; times are "
             f"{cost.source}.", "", "| kernel | kind | blocks | MFLOP | DRAM MB | est µs | bound |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {k['name']} | {k['kind']} | {k['blocks']} | {k['flops'] / 1e6:.2f} | "
              f"{k['dram_bytes'] / 1e6:.2f} | {k['est_time_us']:.2f} | {k['bound']} |"
              for k in kernels]
    lines += ["", f"nvcc ({gpu.arch}): {nvcc_result['status']}", ""]
    with atomic_directory(out, force=force, inputs=[mugraph]) as tmp:
        (tmp / "kernels").mkdir()
        (tmp / "kernels" / "mugraph.json").write_text(
            json.dumps(mugraph_to_json(graph), indent=1) + "\n")
        (tmp / "kernels" / "mugraph.py").write_text(triton_source)
        (tmp / "kernels" / "mugraph.cu").write_text(cuda_source)
        shutil.copy(HELPERS_HEADER, tmp / "kernels" / Path(HELPERS_HEADER).name)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "report.md").write_text("\n".join(lines))
    text = (f"{graph.name}: {len(graph.ops)} kernel(s), estimated {cost.est_time_us:.2f} µs on "
            f"{gpu.name}; nvcc {nvcc_result['status']}\nwrote {out}/ (kernels/mugraph.py, "
            "kernels/mugraph.cu, report.json, report.md)")
    emit(as_json, report, text)
