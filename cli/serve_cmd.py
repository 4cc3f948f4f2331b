"""`mlc serve DIR`: run a co-serving plan on this machine's CPU with a tiny Llama-style model:
inference requests from a trace, LoRA finetuning in each iteration's leftover token budget."""

from __future__ import annotations

import math
import re
from pathlib import Path

import click

from mlc.compiler.artifact import atomic_directory, check_output_directory
from mlc.compiler.errors import MlcError
from mlc.compiler.plan.models import load_model_config
from mlc.compiler.safe_io import check_number, dump_json, read_json

from .common import FiniteFloat, emit, force_option, json_option

CPU_PARAM_LIMIT = 50_000_000   # larger configs are not runnable on a CPU in reasonable time
DEFAULTS = {"token_budget": 64, "slo_tpot_ms": 50.0, "lora_rank": 8}
MAX_SLO_SECONDS = 60.0
MAX_BUDGET = 8192  # tokens per iteration; profiling a larger one on a CPU takes minutes
MAX_LORA_RANK = 4096
# plan.json fields `mlc serve` reads: (exclusive least, most, whole number)
PLAN_FIELDS = {"token_budget": (0, MAX_BUDGET, True),
               "slo_tpot_ms": (0, MAX_SLO_SECONDS * 1e3, False),
               "lora_rank": (0, MAX_LORA_RANK, True)}


def parse_duration(text: str, option: str = "--slo-tpot") -> float:
    """'45ms' / '0.045s' / '45us' / '45' (milliseconds) -> seconds.

    MlcError naming `option` for anything else: garbage, NaN, infinity (1e999), zero,
    negative, or more than a minute per token (surely a unit slip)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s|us)?\s*",
                         str(text))
    seconds = math.nan
    if match is not None:
        scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6, None: 1e-3}[match.group(2)]
        seconds = float(match.group(1)) * scale
    if not 0 < seconds <= MAX_SLO_SECONDS:  # NaN fails this too
        raise MlcError(f"{option} {text!r}: expected a positive time like 45ms or 0.045s "
                       f"(at most {MAX_SLO_SECONDS:g}s)")
    return seconds


def _read_plan(directory: Path) -> dict:
    """The co-serving plan's settings (model, token_budget, slo_tpot_ms, lora_rank), each
    checked; {} when the folder has no plan.json."""
    path = directory / "plan.json"
    if not path.is_file():
        return {}
    plan = read_json(path, "co-serving plan (plan.json)")
    if not isinstance(plan, dict):
        raise MlcError(f"{path}: expected a JSON object from `mlc plan coserve`")
    if "model" in plan and not isinstance(plan["model"], str):
        raise MlcError(f"{path}: model must be a model name, got {plan['model']!r}")
    for key, (low, high, integer) in PLAN_FIELDS.items():
        if key in plan:
            plan[key] = check_number(plan[key], f"{path}: {key}", low=low, high=high,
                                     low_open=True, integer=integer)
    return plan


def _resolve_model(plan: dict, model: str | None, directory: Path):
    name = model or plan.get("model")
    if not name:
        raise MlcError(f"{directory} has no plan.json naming a model; pass --model tiny-llama")
    config = load_model_config(name)
    if config.params > CPU_PARAM_LIMIT:
        raise MlcError(f"{config.name} ({config.params / 1e9:.1f}B parameters) is too large to "
                       "run on CPU; pass --model tiny-llama to run the plan with a tiny model")
    return config


def _status_printer(live):
    """on_iteration callback that refreshes one status line (at most ~10 times a second)."""
    from rich.text import Text

    state = {"shown": 0.0}

    def show(result, engine, outcome):
        now = engine.clock()
        if now - state["shown"] < 0.1:
            return
        state["shown"] = now
        totals, seconds = outcome.totals(), max(now - outcome.started_at, 1e-9)
        inference = totals["decode_tokens"] + totals["prefill_tokens"]
        job = engine.finetune
        loss = f"{job.steps[-1]['loss']:.3f}" if job and job.steps else "-"
        live.update(Text(
            f"iter {totals['iterations']}  running {len(engine.active)}  finished "
            f"{len(engine.finished)}  infer {inference / seconds:.0f} tok/s  finetune "
            f"{totals['finetune_tokens'] / seconds:.0f} tok/s  loss {loss}"))

    return show


@click.command("serve")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--requests", "requests_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False), metavar="TRACE.jsonl",
              help='One request a line: {"id", "prompt": [ids] | "text", "max_new_tokens", '
                   '"arrival": seconds}.')
@click.option("--finetune", "finetune_file", type=click.Path(path_type=Path, dir_okay=False),
              metavar="DATA.jsonl", help='Finetuning sequences: {"tokens": [ids]} | {"text"}.')
@click.option("--model", help="Model config to run (default: the plan's, if it fits a CPU).")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE.safetensors", help="Base weights (HF Llama names); default random.")
@click.option("--budget", type=click.IntRange(1, MAX_BUDGET),
              help="Tokens per iteration (plan's).")
@click.option("--slo-tpot", help="TPOT SLO, e.g. 45ms (default: plan's slo_tpot_ms).")
@click.option("--lora-rank", type=click.IntRange(1, MAX_LORA_RANK), help="LoRA rank (plan's).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True, max=10), default=1e-3,
              show_default=True, help="Adam learning rate.")
@click.option("--accumulation", type=click.IntRange(1, 1 << 20), default=1, show_default=True,
              help="Finetuning sequences per optimizer step.")
@click.option("--epochs", type=click.IntRange(1, 1 << 20), default=1, show_default=True,
              help="Passes over the finetuning data.")
@click.option("--steps", type=click.IntRange(min=1), help="Stop after this many iterations.")
@click.option("--max-seconds", type=FiniteFloat(min=0, min_open=True),
              help="Stop after this many seconds.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of random weights.")
@click.option("--threads", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="torch CPU threads (tiny models run fastest on one).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output directory (default DIR/serve).")
@force_option
@json_option
def serve_command(directory, requests_file, finetune_file, model, weights, budget, slo_tpot,
                  lora_rank, lr, accumulation, epochs, steps, max_seconds, seed, threads,
                  out, as_json, force: bool = False) -> None:
    """Serve a request trace on CPU while LoRA-finetuning in each iteration's spare token
    budget (FlexLLM co-serving); writes latencies.json, finetune.json and report.json.

    \b
    Example:
      mlc plan coserve ... --out build/coserve
      mlc serve build/coserve --model tiny-llama --requests trace.jsonl \\
          --finetune data.jsonl --slo-tpot 45ms
    """
    import torch
    from rich.console import Console
    from rich.live import Live

    from mlc.runtime.serve.session import ServeSettings, run_session

    out = out or directory / "serve"
    inputs = [directory, requests_file, finetune_file, weights]
    check_output_directory(out, force=force, inputs=inputs)  # refuse before the long run
    plan = _read_plan(directory)
    config = _resolve_model(plan, model, directory)
    settings = ServeSettings(
        model=config.name, budget=budget or int(plan.get("token_budget",
                                                          DEFAULTS["token_budget"])),
        slo_tpot=(parse_duration(slo_tpot) if slo_tpot is not None
                  else float(plan.get("slo_tpot_ms", DEFAULTS["slo_tpot_ms"])) / 1e3),
        lora_rank=lora_rank or int(plan.get("lora_rank", DEFAULTS["lora_rank"])),
        lr=lr, accumulation=accumulation, epochs=epochs, steps=steps, max_seconds=max_seconds,
        seed=seed, weights=weights)
    click.echo(f"mlc: serving {requests_file} on {config.name} (budget {settings.budget} "
               f"tokens, TPOT SLO {settings.slo_tpot * 1e3:g} ms)", err=True)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with Live(console=Console(stderr=True), transient=True) as live:
            docs = run_session(settings, requests_file, finetune_file, _status_printer(live))
    finally:
        torch.set_num_threads(saved_threads)
    with atomic_directory(out, force=force, inputs=inputs) as tmp:
        for name, doc in docs.items():  # dump_json: NaN or infinity is an error, not written
            (tmp / f"{name}.json").write_text(dump_json(doc, indent=1) + "\n")
    report = docs["report"]
    emit(as_json, report, _summary_text(report, out))


def _summary_text(report: dict, out: Path) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.2f} ms"

    attained = report["slo_attainment"]
    lines = [f"{report['finished']}/{report['requests']} requests in {report['seconds']:.2f} s "
             f"({report['iterations']} iterations, stopped by {report['stopped_by']})",
             f"TPOT mean {ms(report['tpot_mean_ms'])}, p50 {ms(report['tpot_p50_ms'])}, p99 "
             f"{ms(report['tpot_p99_ms'])}; SLO {report['slo_tpot_ms']:g} ms attained by "
             + ("-" if attained is None else f"{attained:.0%}"),
             f"throughput: inference {report['inference_tokens_per_second']:.0f} tokens/s, "
             f"finetuning {report['finetune_tokens_per_second']:.0f} tokens/s"]
    if report["loss_first"] is not None:
        lines.append(f"finetuning loss {report['loss_first']:.4f} -> {report['loss_last']:.4f}")
    lines.append(f"wrote {out}/latencies.json, finetune.json, report.json")
    return "\n".join(lines)
