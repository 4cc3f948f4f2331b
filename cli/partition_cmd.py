"""`mlc partition`: split a model's operator DAG into a DAG of pipeline stages (GraphPipe),
with a sequential-pipeline baseline, simulated throughput, memory and Gantt charts."""

from __future__ import annotations

import re
from pathlib import Path

import click

from mlc.compiler.artifact import (
    REPORT_FORMAT_VERSION,
    atomic_directory,
    check_output_directory,
)
from mlc.compiler.errors import MlcError
from mlc.compiler.safe_io import dump_json

from .common import emit, force_option, json_option

_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10,
          "mib": 2**20, "gib": 2**30}


MAX_DEVICE_MEMORY = 2**50  # a pebibyte per device: anything larger is a typo


def parse_bytes(text: str) -> int:
    """'16GB' -> 16e9, '16GiB' -> 16 * 2**30, '1000' -> 1000; positive and finite."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise MlcError(f"--device-memory {text[:40]!r}: expected a size like 16GB or 32GiB")
    size = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 1 <= size <= MAX_DEVICE_MEMORY:
        raise MlcError(f"--device-memory {text[:40]!r}: must be between 1 byte and 1 PiB per "
                       "device")
    return int(size)


def _load_model(source: str):
    from mlc.compiler.frontends import load_model

    return load_model(source)


def _summary(name: str, planned) -> dict:
    plan, sim = planned.plan, planned.simulation
    return {"throughput": sim.throughput, "iteration_seconds": sim.iteration_seconds,
            "peak_memory_bytes": max(sim.peak_memory),
            "peak_memory_per_stage": sim.peak_memory,
            "search_seconds": planned.result.search_seconds,
            "micro_batch": plan["micro_batch"], "num_stages": len(plan["stages"]),
            "stages": [{"id": s["id"], "num_ops": len(s["ops"]), "devices": s["devices"],
                        "in_flight": s["in_flight"], "first": s["ops"][0],
                        "last": s["ops"][-1]} for s in plan["stages"]]}


@click.command("partition")
@click.argument("model")
@click.option("--devices", required=True, type=click.IntRange(1, 2**20),
              help="Number of devices (ranks).")
@click.option("--device-memory", default="16GB", show_default=True,
              help="Memory per device, e.g. 16GB.")
@click.option("--batch", required=True, type=click.IntRange(1, 2**31 - 1),
              help="Global (mini-)batch size in samples.")
@click.option("--stages", "max_stages", type=click.IntRange(1, 2**20),
              help="At most this many stages.")
@click.option("--micro-batch", type=click.IntRange(1, 2**31 - 1),
              help="Fix the micro-batch size (a power of two).")
@click.option("--gpu", default="v100", show_default=True, help="GPU spec in specs/hardware.")
@click.option("--profile", is_flag=True,
              help="Time each op with torch on this machine instead of estimating from --gpu.")
@click.option("--out", type=click.Path(file_okay=False), help="Directory to write.")
@force_option
@json_option
def partition_cmd(model, devices, device_memory, batch, max_stages, micro_batch, gpu, profile,
                  out, as_json, force: bool = False) -> None:
    """Partition MODEL into a graph of pipeline stages, plus a sequential baseline.

    \b
    Writes OUT/graph.json, OUT/plan.json (graph pipeline), OUT/sequential/plan.json,
    OUT/report.json, OUT/report.md and OUT/gantt_*.svg.
    Example:
      mlc partition workload:multibranch_small --devices 3 --batch 8 --out build/part
      mlc partition workload:mmt --devices 16 --device-memory 16GB --batch 512
      mlc partition model.onnx --devices 4 --batch 32 --profile   # times ops here
    """
    from mlc.compiler.ir.serialize import save_graph
    from mlc.compiler.partition.cost import Machine
    from mlc.compiler.partition.driver import partition
    from mlc.compiler.partition.plan_io import report_markdown
    from mlc.compiler.partition.schedule import gantt_svg
    from mlc.compiler.superopt.cost.hardware import load_gpu

    memory_bytes = parse_bytes(device_memory)
    if out:  # a refused --out fails now, not after the search
        check_output_directory(Path(out), force=force, inputs=[model])
    graph = _load_model(model)
    machine = Machine.from_gpu(load_gpu(gpu), memory_bytes)
    measured = None
    if profile:
        from mlc.runtime.profile_ops import profile_ops

        measured = profile_ops(graph)
    results = partition(graph, model, devices, batch, machine, micro_batch, max_stages,
                        measured)
    report = {"format_version": REPORT_FORMAT_VERSION, "kind": "partition-report",
              "model": model, "devices": devices, "batch": batch, "gpu": gpu,
              "op_times": "profiled on this machine (torch)" if profile else
              f"estimated (roofline, {gpu})",
              "device_memory_bytes": machine.memory_bytes,
              **{name: _summary(name, planned) for name, planned in results.items()}}
    report["speedup"] = (report["graph_pipeline"]["throughput"]
                         / report["sequential_pipeline"]["throughput"])
    if out:
        with atomic_directory(Path(out), force=force, inputs=[model]) as tmp:
            save_graph(graph, tmp)
            (tmp / "sequential").mkdir()
            save_graph(graph, tmp / "sequential")  # so `mlc train OUT/sequential` runs as is
            for name, folder in (("graph_pipeline", tmp), ("sequential_pipeline",
                                                           tmp / "sequential")):
                planned = results[name]
                (folder / "plan.json").write_text(dump_json(planned.plan, indent=1) + "\n")
                (tmp / f"gantt_{name}.svg").write_text(
                    gantt_svg(planned.simulation, f"{name}: {model}, {devices} devices"))
            (tmp / "report.json").write_text(dump_json(report, indent=1) + "\n")
            (tmp / "report.md").write_text(report_markdown(report))
    lines = [f"{name}: {r['num_stages']} stages, micro-batch {r['micro_batch']}, "
             f"{r['throughput']:.1f} samples/s, peak {r['peak_memory_bytes'] / 1e9:.2f} GB, "
             f"searched in {r['search_seconds']:.2f} s"
             for name, r in ((n, report[n]) for n in ("graph_pipeline", "sequential_pipeline"))]
    lines.append(f"graph pipeline speedup: {report['speedup']:.2f}x")
    if out:
        lines.append(f"wrote {out}/plan.json, sequential/plan.json, report.json, report.md")
    emit(as_json, report, "\n".join(lines))
