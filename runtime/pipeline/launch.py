"""Spawn one local process per rank of a plan (torch.multiprocessing, a free port) and collect
rank 0's report. A rank that fails stops the others: the error names the first rank to fail and
its stage, and no worker process is left running.

    report = train(TrainConfig("build/partition_demo/graph_pipeline", steps=5, check=True))
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

import torch.multiprocessing as mp

from mlc.compiler.errors import MlcError

from .plan import load_plan
from .stages import runnable_specs
from .training import TrainConfig, load_data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_runnable(directory: str):
    """Validate the plan in the launcher (fast, clear errors before any process starts)."""
    graph, plan = load_plan(Path(directory))
    runnable_specs(graph, plan)
    return graph, plan


def _entry(rank: int, world_size: int, config: TrainConfig, environ: dict) -> None:
    from .worker import run_rank, write_failure
    os.environ.clear()  # the launcher's environment now, not the fork server's from its start
    os.environ.update(environ)
    os.environ["MASTER_ADDR"] = config.master_addr  # what torchrun would set
    os.environ["MASTER_PORT"] = str(config.master_port)
    try:
        report = run_rank(rank, world_size, config)
    except BaseException as err:
        write_failure(config, rank, err)
        raise
    if report is not None:
        Path(config.result_path).write_text(json.dumps(report))


def train(config: TrainConfig) -> dict:
    """Run the plan in DIR with one local process per rank; rank 0's report."""
    graph, plan = check_runnable(config.directory)
    load_data(graph, plan.batch, config.data, config.seed)  # data errors before any process
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # we say it
    # Workers fork from a clean server process that imported torch and mlc once (a fresh
    # interpreter each would re-import them; forking this process could inherit OpenMP state).
    multiprocessing.set_forkserver_preload(["mlc.runtime.pipeline.worker"])
    with tempfile.TemporaryDirectory(prefix="mlc-train-") as tmp:
        config = replace(config, master_port=free_port(), result_path=str(Path(tmp, "out.json")),
                         error_dir=tmp)
        context = mp.start_processes(_entry, args=(plan.world_size, config, dict(os.environ)),
                                     nprocs=plan.world_size, join=False,
                                     start_method="forkserver")
        try:
            while not context.join():
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
            raise MlcError(_failure_message(tmp, err)) from None
        finally:
            _stop(context.processes)
        return json.loads(Path(config.result_path).read_text())


def _failure_message(error_dir: str, err: Exception) -> str:
    failures = [json.loads(p.read_text()) for p in Path(error_dir).glob("rank*.json")]
    if failures:
        first = min(failures, key=lambda f: f["time"])
        where = f"rank {first['rank']}" + (f" (stage {first['stage']})"
                                             if first["stage"] is not None else "")
        return (f"{where} failed: {first['error']}; the other workers were stopped")
    rank = getattr(err, "error_index", "?")
    return f"rank {rank} died ({str(err).strip().splitlines()[-1]}); the others were stopped"


def _stop(processes) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
