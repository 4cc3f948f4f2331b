"""Spawn one local process per rank of a plan (torch.multiprocessing, a free port) and collect
rank 0's report. A rank that fails stops the others: the error names the first rank to fail and
its stage, and no worker process is left running.

Every way the launcher can end stops the workers and removes the run's temp folders: normal
exit, an error, Ctrl-C (the workers ignore SIGINT; the launcher stops them), SIGTERM (raised
here as `Terminated`), and kill -9 (the workers watch the launcher; see lifeline.py).

    report = train(TrainConfig("build/partition_demo/graph_pipeline", steps=5, check=True))
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import socket
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch.multiprocessing as mp

from mlc.compiler.errors import MlcError

from .lifeline import (
    RUN_PREFIX,
    die_with_parent,
    record_owner,
    start_time,
    sweep_stale_runs,
    watch_launcher,
)
from .plan import load_plan
from .stages import runnable_specs
from .training import TrainConfig, load_data

FORKSERVER_PRELOAD = "mlc.runtime.pipeline.forkserver"


class Terminated(BaseException):
    """The launcher got SIGTERM; the workers are stopped and the temp folders removed by the
    time this reaches the caller. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way swallows it."""


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
    """A worker: tie its life to the launcher's, then run its rank. A failure is recorded for
    the launcher (which names the first rank to fail) and ends the process with status 1,
    without a traceback on the terminal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the launcher stops us itself
    die_with_parent(signal.SIGKILL)  # if the fork server goes, so do we
    if config.launcher_pid is not None:
        watch_launcher(config.launcher_pid, config.launcher_start, config.temp_paths)
    from .worker import run_rank, write_failure
    os.environ.clear()  # the launcher's environment now, not the fork server's from its start
    os.environ.update(environ)
    os.environ["MASTER_ADDR"] = config.master_addr  # what torchrun would set
    os.environ["MASTER_PORT"] = str(config.master_port)
    try:
        report = run_rank(rank, world_size, config)
    except BaseException as err:
        write_failure(config, rank, err)
        sys.exit(1)
    if report is not None:
        Path(config.result_path).write_text(json.dumps(report))


def train(config: TrainConfig) -> dict:
    """Run the plan in DIR with one local process per rank; rank 0's report."""
    graph, plan = check_runnable(config.directory)
    load_data(graph, plan.batch, config.data, config.seed)  # data errors before any process
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # we say it
    # Workers fork from a clean server process that imported torch and mlc once (a fresh
    # interpreter each would re-import them; forking this process could inherit OpenMP state).
    multiprocessing.set_forkserver_preload([FORKSERVER_PRELOAD])
    sweep_stale_runs()
    with _sigterm_raises(), tempfile.TemporaryDirectory(prefix=RUN_PREFIX) as tmp:
        # the fork server's socket lives in multiprocessing's own temp folder: a worker that
        # outlives a killed launcher removes it with ours
        temp_paths = (tmp, multiprocessing.util.get_temp_dir())
        record_owner(tmp, temp_paths[1:])
        config = replace(config, master_port=free_port(), result_path=str(Path(tmp, "out.json")),
                         error_dir=tmp, launcher_pid=os.getpid(),
                         launcher_start=start_time(os.getpid()), temp_paths=temp_paths)
        return _run_workers(plan.world_size, config, tmp)


def _run_workers(world_size: int, config: TrainConfig, tmp: str) -> dict:
    """Start the ranks, wait for all of them, stop every one that is left on any way out."""
    context = None
    try:
        context = mp.start_processes(_entry, args=(world_size, config, dict(os.environ)),
                                     nprocs=world_size, join=False, start_method="forkserver")
        while not context.join():
            pass
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
        message, bad_input = _failure_message(tmp, err)
        if bad_input:
            raise MlcError(message) from None
        raise WorkerFailure(message) from None  # a bug in a worker: exit 70, not "bad input"
    finally:
        if context is not None:
            _stop(context.processes)
    return json.loads(Path(config.result_path).read_text())


@contextmanager
def _sigterm_raises():
    """While training, SIGTERM raises `Terminated` in the main thread, so the `finally` blocks
    stop the workers and remove the temp folders (the default action would skip them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class WorkerFailure(RuntimeError):
    """A rank failed on something other than bad input (an mlc bug, or a rank killed from
    outside); the CLI reports it as an internal error (exit 70)."""


def _failure_message(error_dir: str, err: Exception) -> tuple[str, bool]:
    """The first rank's failure as one line, and whether it was bad input (an MlcError)."""
    failures = []
    for path in Path(error_dir).glob("rank*.json"):
        try:
            failures.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a rank killed while writing its record
    if failures:
        first = min(failures, key=lambda f: f["time"])
        stage = first["stage"] is not None
        if first.get("user"):  # a problem with the input (an MlcError): its message first
            where = f"rank {first['rank']}" + (f", stage {first['stage']}" if stage else "")
            return f"{first['error']} ({where}; the other workers were stopped)", True
        where = f"rank {first['rank']}" + (f" (stage {first['stage']})" if stage else "")
        return f"{where} failed: {first['error']}; the other workers were stopped", False
    rank = getattr(err, "error_index", "?")
    return (f"rank {rank} died ({str(err).strip().splitlines()[-1]}); the others were stopped",
            False)


def _stop(processes) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
