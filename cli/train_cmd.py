"""`mlc train DIR`: run a partition plan's pipeline stages as local processes on
torch.distributed, optionally checking one step against single-process training."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlc.compiler.errors import EXIT_VERDICT

from .common import FiniteFloat, emit, json_option

MAX_TIMEOUT_S = 7 * 24 * 3600.0  # as runtime.pipeline.training (imported late: it loads torch)
EXIT_TERMINATED = 128 + 15  # SIGTERM, as a shell reports it


@click.command("train")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--steps", type=click.IntRange(min=1, max=10**9), default=1, show_default=True,
              help="Training iterations (one optimizer step each).")
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE.npz",
              help="Model inputs by name plus `labels` (cross-entropy) or `targets` (MSE); "
                   "default: deterministic random inputs and MSE targets.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=0.01, show_default=True,
              help="Learning rate (> 0). A run whose loss becomes NaN or infinite stops with "
                   "an error.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd",
              show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed for random data.")
@click.option("--check", is_flag=True,
              help="Compare step 1's loss and gradients with single-process training "
                   "(1e-5 relative); exit 3 on FAIL.")
@click.option("--timeout", "timeout_s", type=FiniteFloat(min=0, min_open=True, max=MAX_TIMEOUT_S),
              default=120.0, show_default=True,
              help="Seconds a rank waits on a peer before giving up.")
@json_option
def train_cmd(directory, steps, data, lr, optimizer, seed, check, timeout_s, as_json) -> None:
    """Train the model in DIR (graph.json + plan.json from `mlc partition`) with one process
    per device of the plan: gloo on CPU, nccl on GPU.

    \b
    Example:
      mlc train build/mmt-plan --steps 10 --check
      torchrun --nproc-per-node 4 -m mlc.runtime.pipeline.worker build/mmt-plan --steps 10
    """
    from mlc.runtime.pipeline import TrainConfig, train  # torch: only when training
    from mlc.runtime.pipeline.launch import Terminated

    config = TrainConfig(str(directory), steps, str(data) if data else None, lr, optimizer,
                         seed, check, timeout_s)
    click.echo(f"mlc: training {directory} for {steps} step(s)", err=True)
    try:
        report = train(config)
    except Terminated:
        click.echo("mlc: terminated (workers stopped, nothing was written)", err=True)
        sys.exit(EXIT_TERMINATED)
    lines = [f"{report['planner']}: {report['stages']} stages on {report['processes']} "
             f"processes, batch {report['batch']} in micro-batches of {report['micro_batch']}",
             f"loss: {' -> '.join(f'{x:.6g}' for x in report['losses'])}",
             f"step time (median after the first): {report['median_step_seconds'] * 1e3:.2f} ms"
             f" ({report['samples_per_second']:.1f} samples/s)"]
    failed = False
    if "check" in report:
        result = report["check"]
        failed = not result["ok"]
        lines.append(f"check: {'PASS' if result['ok'] else 'FAIL'} (loss rel. error "
                     f"{result['loss_rel_error']:.2e}, max gradient rel. error "
                     f"{result['max_grad_rel_error']:.2e}, tolerance {result['tolerance']:g})")
    emit(as_json, report, "\n".join(lines))
    if failed:
        sys.exit(EXIT_VERDICT)
