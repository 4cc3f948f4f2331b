"""`mlc plan`: serving plans. `mlc plan serve` places many LLMs on heterogeneous cloud GPUs at
least cost (Coral-style two-stage MILP), with baselines, a simulation and vLLM commands."""

from __future__ import annotations

from pathlib import Path

import click

from mlc.compiler.artifact import atomic_directory, check_output_directory
from mlc.compiler.errors import MlcError
from mlc.compiler.plan.coral.catalog import load_catalog
from mlc.compiler.plan.coral.inputs import load_document, parse_demand
from mlc.compiler.plan.coral.markdown import report_markdown
from mlc.compiler.plan.coral.planner import plan_serve
from mlc.compiler.plan.coserve.planner import plan_coserve
from mlc.compiler.plan.coserve.traces import generate_trace, read_trace
from mlc.compiler.plan.models import list_models
from mlc.compiler.safe_io import dump_json, read_json

from .common import FiniteFloat, emit, force_option, json_option
from .serve_cmd import parse_duration

SEED = click.IntRange(min=0, max=2**32 - 1)
MAX_GPUS, MAX_SECONDS = 64, 3600.0  # a larger simulation takes longer than anyone waits


@click.group("plan")
def plan_group() -> None:
    """Serving plans: which GPUs to rent and how each model's replicas run on them.

    \b
    Example:
      mlc plan serve --demand demand.json --out build/plan
      mlc plan coserve --model llama-3.1-8b --gpus 4 --rate 20 --slo-tpot 45ms --out build/cs
    """


def _read_previous(plan_dir: str) -> tuple[dict, dict]:
    """plan.json and stage1.json of a previous `plan serve`, read whole into memory (so the
    same folder may be the new --out) and checked to be what `plan serve` writes."""
    folder = Path(plan_dir)
    if not (folder / "plan.json").is_file() or not (folder / "stage1.json").is_file():
        raise MlcError(f"--replan {plan_dir}: not a plan directory (needs plan.json and "
                       "stage1.json from `mlc plan serve`)")
    plan = read_json(folder / "plan.json", "serving plan (plan.json)")
    stage1 = read_json(folder / "stage1.json", "stage-1 cache (stage1.json)")
    inputs = plan.get("inputs") if isinstance(plan, dict) else None
    if not isinstance(inputs, dict) or not isinstance(inputs.get("demand"), dict) \
            or not isinstance(inputs.get("gpus", {}), dict):
        raise MlcError(f"{folder / 'plan.json'}: not a plan from `mlc plan serve` (it lacks "
                       "inputs.demand); rerun `mlc plan serve --demand FILE`")
    return plan, stage1


def _write_documents(folder: Path, documents) -> None:
    """Each (name, document) as indented JSON; NaN or infinity is an error, never written."""
    for name, doc in documents:
        (folder / name).write_text(dump_json(doc, indent=1) + "\n")


def _summary_text(plan: dict, report: dict, out: str) -> str:
    lines = [f"{plan['mode']} plan: ${report['cost_per_hour']:.2f}/hour, goodput "
             f"{report['goodput']:.1%}, solved in {report['solve_seconds']:.2f} s"
             + (" (stage 1 reused)" if report["stage1_reused"] else "")]
    for name, base in report["baselines"].items():
        lines.append(f"  baseline {name}: ${base['cost_per_hour']:.2f}/hour, goodput "
                     f"{base['goodput']:.1%}")
    for name, entry in plan["models"].items():
        layout = ", ".join(f"{r['count']}x {r['config']}" for r in entry["replicas"]) or "none"
        lines.append(f"  {name}: {entry['served_requests_per_s']:.2f}/"
                     f"{entry['demand_requests_per_s']:.2f} req/s on {layout}")
    lines += [f"note: {note}" for note in plan["notes"]]
    lines.append(f"wrote {out}/plan.json, report.json, report.md")
    return "\n".join(lines)


@plan_group.command("serve")
@click.option("--demand", "demand_file", type=click.Path(dir_okay=False),
              help="JSON/YAML: model -> {requests_per_s, prompt_tokens, output_tokens}.")
@click.option("--gpus", "gpus_file", type=click.Path(dir_okay=False),
              help="JSON/YAML: GPU type -> {available, price_per_hour} overrides.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Plan directory to write.")
@click.option("--replan", "replan_dir", type=click.Path(file_okay=False),
              help="A previous plan directory: reuse its stage 1, rerun only stage 2. It may "
                   "be --out itself: it is read whole first and replaced atomically.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the simulation.")
@force_option
@json_option
def serve_cmd(demand_file, gpus_file, out, replan_dir, seed, as_json, force: bool = False) -> None:
    """Plan many LLMs over heterogeneous cloud GPUs at least cost.

    \b
    Example:
      echo '{"llama-3.1-8b": {"requests_per_s": 20, "prompt_tokens": 512,
             "output_tokens": 256}}' > demand.json
      mlc plan serve --demand demand.json --gpus gpus.json --out build/plan
      mlc plan serve --gpus scarce.json --replan build/plan --out build/plan2

    `--replan P --out P` updates a plan in place: P must be a plan mlc wrote (else --force);
    plan.json and stage1.json are read whole before planning, and P is replaced only when the
    new plan is complete, so a failed re-plan leaves P as it was.
    """
    out = Path(out)
    inputs = _plan_inputs(demand_file, gpus_file, replan_dir, out)
    check_output_directory(out, force=force, inputs=inputs)  # refuse before the long run
    previous, cache = ({}, None) if replan_dir is None else _read_previous(replan_dir)
    if demand_file is not None:
        demand_doc = load_document(demand_file, "demand")
    elif previous:
        demand_doc = previous["inputs"]["demand"]
    else:
        raise MlcError("--demand FILE is required (or --replan PLAN to reuse a plan's demand)")
    demand = parse_demand(demand_doc, demand_file or f"{replan_dir}/plan.json")
    if gpus_file is not None:
        overrides, where = load_document(gpus_file, "GPU"), str(gpus_file)
    elif previous:
        overrides, where = previous["inputs"].get("gpus", {}), f"{replan_dir}/plan.json"
    else:
        overrides, where = {}, "GPU overrides"
    catalog = load_catalog(overrides, where=where)
    click.echo("planning " + ", ".join(demand) + (" (re-plan)" if cache else ""), err=True)
    result = plan_serve(demand, catalog, cache=cache, seed=seed, overrides=overrides)
    result.report["source"] = str(demand_file or Path(replan_dir) / "plan.json")
    with atomic_directory(out, force=force, inputs=inputs) as tmp:
        _write_documents(tmp, (("plan.json", result.plan), ("report.json", result.report),
                               ("stage1.json", result.stage1)))
        (tmp / "report.md").write_text(report_markdown(result.plan, result.report))
    emit(as_json, result.report, _summary_text(result.plan, result.report, out))


def _plan_inputs(demand_file, gpus_file, replan_dir, out: Path) -> list:
    """The paths --out must not hold. A --replan folder that is --out itself is allowed: it was
    read whole before planning and is replaced atomically (see serve_cmd)."""
    same = replan_dir is not None and Path(replan_dir).resolve() == out.resolve()
    return [demand_file, gpus_file, None if same else replan_dir]


def _coserve_text(plan: dict, report: dict, out: str) -> str:
    lines = [f"{plan['model']} on {plan['gpus']} x {plan['gpu']} (tp {plan['tp']}): token "
             f"budget {plan['token_budget']}, TPOT SLO {plan['slo_tpot_ms']:g} ms, up to "
             f"{plan['finetune']['max_tokens_per_iteration']} finetuning tokens or "
             f"{plan['finetune']['backward_layers_per_iteration']} backward layers per "
             "iteration"]
    for name in ("coserve", "separate", "temporal"):
        entry = report[name]
        lines.append(f"  {name:9s} SLO attainment {entry['slo_attainment']:6.1%}, inference "
                     f"{entry['inference_tokens_per_s']:8.0f} tok/s, finetuning "
                     f"{entry['finetune_tokens_per_s']:8.0f} tok/s")
    lines += [f"note: {note}" for note in plan["notes"]]
    lines.append(f"wrote {out}/plan.json, report.json")
    return "\n".join(lines)


@plan_group.command("coserve")
@click.option("--model", required=True,
              type=click.Choice(list_models(), case_sensitive=False),
              help="Model name from specs/models (llama-3.1-8b, ...).")
@click.option("--gpu", default="a100-80gb", show_default=True,
              help="GPU type (specs/hardware; aliases like a100 work) or a spec JSON file.")
@click.option("--gpus", type=click.IntRange(1, MAX_GPUS), default=1, show_default=True,
              help="GPUs in the deployment.")
@click.option("--tp", type=click.IntRange(1, 8),
              help="Tensor parallelism per replica [default: smallest fit].")
@click.option("--rate", type=FiniteFloat(min=0, min_open=True),
              help="Requests/s of a generated trace.")
@click.option("--slo-tpot", required=True, help="Time-per-output-token SLO, e.g. 45ms.")
@click.option("--lora-rank", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="LoRA rank of the finetuning.")
@click.option("--duration", type=FiniteFloat(min=0, min_open=True, max=MAX_SECONDS),
              default=60.0, show_default=True, help="Simulated seconds.")
@click.option("--trace", "trace", default="poisson", show_default=True,
              help="poisson, bursty, or a JSON-lines trace file.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of a generated trace.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Plan directory to write.")
@force_option
@json_option
def coserve_cmd(model, gpu, gpus, tp, rate, slo_tpot, lora_rank, duration, trace, seed, out,
                as_json, force: bool = False) -> None:
    """Co-serve inference and LoRA finetuning (FlexLLM) and compare with the alternatives.

    Sizes the token budget and finetuning limits under the TPOT SLO, then simulates
    co-serving, separate inference/finetuning GPUs and temporal sharing on the trace.

    \b
    Example:
      mlc plan coserve --model llama-3.1-8b --gpu a100-80gb --gpus 4 --rate 20 \\
          --slo-tpot 45ms --out build/coserve
    """
    generated = trace in ("poisson", "bursty")
    out = Path(out)
    check_output_directory(out, force=force, inputs=[] if generated else [trace])
    slo = parse_duration(slo_tpot, "--slo-tpot")
    if generated:
        if rate is None:
            raise MlcError(f"--rate is required with --trace {trace} (requests/s)")
        requests = generate_trace(rate, duration, trace, seed)
    else:
        requests = read_trace(trace)
    plan, report = plan_coserve(model, gpu, gpus, slo, requests, duration, lora_rank, tp,
                                trace)
    with atomic_directory(out, force=force, inputs=[] if generated else [trace]) as tmp:
        _write_documents(tmp, (("plan.json", plan), ("report.json", report)))
    emit(as_json, report, _coserve_text(plan, report, out))
