"""One rank of `mlc train`: its stage's module, the plan's schedule, point-to-point transfers.

Forward F<i> receives micro-batch i's values from every predecessor stage (blocking recv, in a
fixed value order), runs the stage module and posts `isend`s to every successor. Backward B<i>
receives one gradient per (value, consumer stage), sums them per value, back-propagates from the
stage outputs (and the loss, on the loss stage) and sends the input gradients back. Tags name
(micro-batch, value, direction), so the order sends complete in never matters.

A data-parallel stage (d devices) runs d replicas; replica r takes rows [r*b/d, (r+1)*b/d) of
each micro-batch of b rows. Each producer replica sends each consumer replica the rows their
slices share (gradients go back the same way); pieces are received in replica order and joined.
Weight gradients are summed over the stage's replicas (one process group per stage) before the
optimizer step; each replica's loss is its share of the whole-batch mean.

Under torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the environment):
    torchrun --nproc-per-node 4 -m mlc.runtime.pipeline.worker DIR --steps 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mlc.compiler.errors import EXIT_VERDICT, MlcError
from mlc.runtime.torch_executor import TorchGraphModule
from mlc.runtime.torch_ops import torch_dtype

from .plan import PipelinePlan, load_plan
from .stages import StageSpec, runnable_specs, transfer_values
from .training import (
    TrainConfig,
    as_tensors,
    batch_of,
    compare,
    load_data,
    make_optimizer,
    micro_loss,
    reference_step,
)

FAIL_ENV = "MLC_TRAIN_FAIL_RANK"  # test hook: this rank raises at its first step
_STAGE_OF_THIS_PROCESS: list[int] = []  # for the failure record, once the plan is read


class StageRunner:
    """Runs one stage's F<i>/B<i> tasks for one iteration."""

    def __init__(self, spec: StageSpec, plan: PipelinePlan, value_ids: dict[str, int],
                 module: TorchGraphModule, device):
        self.spec, self.plan, self.module, self.device = spec, plan, module, device
        self.value_ids = value_ids
        self.rows = {stage.id: (len(stage.devices), plan.micro_batch // len(stage.devices))
                     for stage in plan.stages}
        replica = plan.stages[spec.id].devices.index(dist.get_rank())
        self.lo = replica * self.rows[spec.id][1]
        self.hi = self.lo + self.rows[spec.id][1]
        self.pending: list = []
        self.saved: dict[int, tuple] = {}
        self.loss = 0.0

    def _tag(self, micro: int, value: str, backward: bool) -> int:
        return (micro * len(self.value_ids) + self.value_ids[value]) * 2 + int(backward)

    def _buffer(self, value: str, rows: int) -> torch.Tensor:
        t = self.spec.graph.types[value]
        return torch.empty((rows,) + t.shape[1:], dtype=torch_dtype(t.dtype), device=self.device)

    def _pieces(self, other: int):
        """(rank, lo, hi) of each replica of stage `other` whose rows overlap ours: the global
        micro-batch rows [lo, hi) we exchange with it, in replica order."""
        count, rows = self.rows[other]
        for j, rank in enumerate(self.plan.stages[other].devices):
            lo, hi = max(self.lo, j * rows), min(self.hi, (j + 1) * rows)
            if lo < hi:
                yield rank, lo, hi

    def _send(self, tensor: torch.Tensor, other: int, micro: int, value: str, backward: bool):
        for rank, lo, hi in self._pieces(other):
            piece = tensor[lo - self.lo:hi - self.lo].detach().contiguous()
            self.pending.append((piece, dist.isend(piece, dst=rank,
                                                   tag=self._tag(micro, value, backward))))

    def _recv(self, other: int, micro: int, value: str, backward: bool) -> torch.Tensor:
        pieces = []
        for rank, lo, hi in self._pieces(other):
            buffer = self._buffer(value, hi - lo)
            dist.recv(buffer, src=rank, tag=self._tag(micro, value, backward))
            pieces.append(buffer)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def forward(self, micro: int, batch: dict[str, torch.Tensor]) -> None:
        batch = {name: value[self.lo:self.hi] for name, value in batch.items()}
        inputs = {name: batch[name] for name in self.spec.data_inputs}
        received = {}
        for value, producer in self.spec.receives:
            buffer = self._recv(producer, micro, value, False)
            if self.spec.differentiable(value):
                buffer.requires_grad_(True)
            received[value] = inputs[value] = buffer
        outputs = self.module(**inputs)
        for value, consumer in self.spec.sends:
            self._send(outputs[value], consumer, micro, value, False)
        loss = None
        if self.spec.loss_output:
            loss = micro_loss(outputs[self.spec.loss_output], batch, self.plan.batch)
            self.loss += float(loss.detach())
        self.saved[micro] = (received, outputs, loss)

    def backward(self, micro: int) -> None:
        received, outputs, loss = self.saved.pop(micro)
        tensors, grads = ([loss], [None]) if loss is not None else ([], [])
        summed: dict[str, torch.Tensor] = {}
        for value, consumer in self.spec.sends:
            if not self.spec.differentiable(value):
                continue
            buffer = self._recv(consumer, micro, value, True)
            summed[value] = summed[value] + buffer if value in summed else buffer
        for value, grad in summed.items():
            if outputs[value].requires_grad:
                tensors.append(outputs[value])
                grads.append(grad)
        if tensors:
            torch.autograd.backward(tensors, grads)
        for value, producer in self.spec.receives:
            if not self.spec.differentiable(value):
                continue
            grad = received[value].grad
            grad = torch.zeros_like(received[value]) if grad is None else grad
            self._send(grad, producer, micro, value, True)

    def run(self, order, micro_batches: list[dict[str, torch.Tensor]]) -> float:
        """Run the schedule; returns this stage's share of the loss (0 off the loss stage)."""
        self.loss = 0.0
        for task in order:
            index = int(task[1:])
            self.forward(index, micro_batches[index]) if task[0] == "F" else self.backward(index)
        for _, work in self.pending:
            work.wait()
        self.pending.clear()
        return self.loss


def run_rank(rank: int, world_size: int, config: TrainConfig) -> dict | None:
    """Train on this rank; returns the report on rank 0 (None elsewhere)."""
    torch.set_num_threads(1)
    graph, plan = load_plan(Path(config.directory))
    stage = plan.stage_of_rank(rank)
    _STAGE_OF_THIS_PROCESS.append(stage.id)
    if plan.world_size != world_size:
        raise RuntimeError(f"the plan needs {plan.world_size} processes, got {world_size}")
    spec = runnable_specs(graph, plan)[stage.id]
    use_cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))  # torchrun sets it on every node
    device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}" if use_cuda
                          else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=config.timeout_s))
    # one group per data-parallel stage, created in the same order on every rank
    groups = {s.id: dist.new_group(list(s.devices)) for s in plan.stages if len(s.devices) > 1}
    torch.manual_seed(config.seed)
    module = TorchGraphModule(spec.graph).to(device)
    value_ids = {v: i for i, v in enumerate(sorted({v for v, _, _ in
                                                   transfer_values(graph, plan)}))}
    runner = StageRunner(spec, plan, value_ids, module, device)
    optimizer = make_optimizer(config.optimizer, module.parameters(), config.lr)
    data = load_data(graph, plan.batch, config.data, config.seed)
    losses, step_times, grads = [], [], {}
    for step in range(config.steps):
        if os.environ.get(FAIL_ENV) == str(rank):
            raise RuntimeError(f"injected failure ({FAIL_ENV}={rank})")
        tensors = as_tensors(graph, batch_of(data, plan.batch, step), device)
        micro = [{name: value[i * plan.micro_batch:(i + 1) * plan.micro_batch]
                  for name, value in tensors.items()} for i in range(plan.num_micro_batches)]
        dist.barrier()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        losses.append(runner.run(stage.order, micro))
        if len(stage.devices) > 1:  # data-parallel stage: sum the replicas' weight gradients
            for weight in module.parameters():
                if weight.grad is not None:
                    dist.all_reduce(weight.grad, group=groups[stage.id])
        check_finite(losses[-1], module, step, config.lr)
        if step == 0 and config.check:
            grads = {name: w.grad.detach().cpu().numpy() if w.grad is not None
                     else np.zeros(tuple(w.shape))
                     for name, w in module.weight_tensors().items() if w.requires_grad}
        optimizer.step()
        dist.barrier()
        step_times.append(time.perf_counter() - start)
    gathered = [None] * world_size if rank == 0 else None
    dist.gather_object({"stage": stage.id, "losses": losses, "grads": grads}, gathered, dst=0)
    dist.destroy_process_group()
    if rank != 0:
        return None
    return _report(graph, plan, config, gathered, step_times)


def check_finite(loss: float, module: TorchGraphModule, step: int, lr: float) -> None:
    """A loss or gradient that is NaN or infinite ends training with an error: a diverged run
    is not a result (every later step would be NaN too)."""
    what = None
    if not math.isfinite(loss):
        what = f"the loss is {loss}"
    else:
        for name, weight in module.weight_tensors().items():
            if weight.grad is not None and not bool(torch.isfinite(weight.grad).all()):
                what = f"the gradient of weight {name!r} is not finite"
                break
    if what:
        raise MlcError(f"training diverged at step {step + 1}: {what}; lower --lr (now {lr:g}) "
                       "or check the data")


def _report(graph, plan: PipelinePlan, config: TrainConfig, gathered, step_times) -> dict:
    losses = [sum(step) for step in zip(*(part["losses"] for part in gathered))]
    later = step_times[1:] or step_times
    median = float(np.median(later))
    report = {"directory": config.directory, "planner": plan.planner, "steps": config.steps,
              "processes": plan.world_size, "stages": len(plan.stages), "batch": plan.batch,
              "micro_batch": plan.micro_batch, "losses": losses,
              "step_seconds": step_times, "median_step_seconds": median,
              "samples_per_second": plan.batch / median if median > 0 else None}
    if config.check:
        grads = {k: v for part in gathered for k, v in part["grads"].items()}
        ref_loss, ref_grads = reference_step(graph, batch_of(
            load_data(graph, plan.batch, config.data, config.seed), plan.batch, 0))
        report["check"] = compare(losses[0], grads, ref_loss, ref_grads)
    return report


def write_failure(config: TrainConfig, rank: int, err: BaseException) -> None:
    """Record a rank's failure (time-stamped) so the launcher can name the first to fail."""
    if not config.error_dir:
        return
    stage = _STAGE_OF_THIS_PROCESS[0] if _STAGE_OF_THIS_PROCESS else None
    user = isinstance(err, MlcError)  # bad input: its message speaks for itself
    text = str(err) if user else f"{type(err).__name__}: {err}"
    doc = {"rank": rank, "stage": stage, "time": time.time(), "user": user,
           "error": (text.splitlines() or [""])[0][:500]}
    Path(config.error_dir, f"rank{rank}.json").write_text(json.dumps(doc))


def main(argv=None) -> None:
    """torchrun entry: the launcher reads RANK/WORLD_SIZE/MASTER_* from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--data")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig(args.directory, args.steps, args.data, args.lr, args.optimizer,
                             check=args.check)
        report = run_rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), config)
    except MlcError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    if report is not None:
        print(json.dumps(report, indent=1))
        if config.check and not report["check"]["ok"]:
            raise SystemExit(EXIT_VERDICT)


if __name__ == "__main__":
    main()
