"""The `mlc` command line. This module is the table of contents: one line per command group.

    mlc inspect MODEL            ops, params, FLOPs, shapes
    mlc run MODEL ...            execute a model on .npz or random inputs
    mlc import MODEL --out DIR   write an artifact directory
    mlc ops                      the IR op table and the ONNX ops that import
    mlc optimize MODEL --out DIR   search fused, verified kernels for a model's regions
    mlc compile MUGRAPH --out DIR  a µGraph into Triton + CUDA kernels with a cost estimate
    mlc verify CANDIDATE --against MODEL   finite-field + float equivalence check
    mlc quantize MODEL --gmm --bits B --out DIR   DGMS low-bit weights, with baselines
    mlc plan serve --demand FILE --out DIR   many LLMs on heterogeneous GPUs at least cost
    mlc partition MODEL --devices N --batch B   a DAG of pipeline stages (GraphPipe)
    mlc train DIR --steps N [--check]   run a partition plan's pipeline on torch.distributed
    mlc serve DIR --requests FILE [--finetune FILE]   co-serve inference and LoRA finetuning
"""

from __future__ import annotations

import logging
import sys

import click

from .common import handle_errors
from .compile_cmd import compile_cmd
from .import_cmd import import_cmd
from .inspect_cmd import inspect_cmd
from .ops_cmd import ops_cmd
from .optimize_cmd import optimize_cmd
from .partition_cmd import partition_cmd
from .plan_cmd import plan_group
from .quantize_cmd import quantize_cmd
from .run_cmd import run_cmd
from .serve_cmd import serve_command
from .train_cmd import train_cmd
from .verify_cmd import verify_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """mlc: a staged compiler for deep-learning programs.

    \b
    Example:
      mlc inspect model.onnx --shape input_ids=2x16

    \b
    Exit codes:
      0 ok, 1 bad input or refused request (one line: what, where, what to do),
      2 usage, 3 a negative verdict (not equivalent, --check failed),
      70 internal error (please report it), 130 interrupted (Ctrl-C)
    """
    ctx.obj = {"debug": debug}
    logging.basicConfig(format="mlc: %(message)s", level=logging.WARNING, stream=sys.stderr,
                        force=True)


cli.add_command(inspect_cmd)
cli.add_command(run_cmd)
cli.add_command(import_cmd)
cli.add_command(ops_cmd)
cli.add_command(compile_cmd)
cli.add_command(verify_cmd)
cli.add_command(optimize_cmd)
cli.add_command(quantize_cmd)
cli.add_command(plan_group)
cli.add_command(partition_cmd)
cli.add_command(train_cmd)
cli.add_command(serve_command)


def main() -> None:
    handle_errors(cli)


if __name__ == "__main__":
    main()
