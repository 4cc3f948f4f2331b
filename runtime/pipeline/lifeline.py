"""Tie `mlc train`'s worker processes to the launcher that started them.

Workers fork from multiprocessing's fork server, so the launcher is not their parent, and the
fork server and the resource tracker live as long as any worker holds their pipes. If the
launcher is killed (kill -9, OOM, a closed terminal), the workers would train on to the end
and keep those helpers and the run's temp folders alive. So each worker watches the launcher
(a pidfd on Linux, polling elsewhere): when it ends, the worker removes the run's temp folders
and exits at once; the fork server and the tracker then see their pipes close and exit too.
A run that dies before any worker noticed is swept by the next run (`sweep_stale_runs`).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

RUN_PREFIX = "mlc-train-"
OWNER_FILE = "launcher.json"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a pid that was
    reused from the process we knew; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_alive(pid: int, started: int | None) -> bool:
    """Whether process `pid`, started at `started` (see `start_time`), still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = start_time(pid)
    return started is None or now is None or now == started


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when the thread that forked it ends (a no-op
    where prctl does not exist; the launcher watch still covers it)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _wait_for_exit(pid: int, started: int | None) -> None:
    """Block until process `pid` ends: a pidfd where the kernel has one, else polling."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None and is_alive(pid, started):  # the pid was still ours when opened
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll()
        return
    while is_alive(pid, started):
        time.sleep(0.5)


def watch_launcher(pid: int, started: int | None, temp_paths=()) -> threading.Thread:
    """Start a daemon thread that, once the launcher `pid` has ended, removes `temp_paths` and
    ends this process (exit status 1, no output: nobody is left to read it)."""
    def watch() -> None:
        _wait_for_exit(pid, started)
        for path in temp_paths:
            shutil.rmtree(path, ignore_errors=True)
        os._exit(1)

    thread = threading.Thread(target=watch, name="mlc-launcher-watch", daemon=True)
    thread.start()
    return thread


def record_owner(run_dir: str, other_paths=()) -> None:
    """Write who owns the run folder (pid, start time) and the other temp folders of the run,
    so that a later run can remove them if this launcher is killed before its workers start."""
    pid = os.getpid()
    doc = {"pid": pid, "start_time": start_time(pid), "paths": [str(p) for p in other_paths]}
    Path(run_dir, OWNER_FILE).write_text(json.dumps(doc))


def sweep_stale_runs(temp_dir: str | None = None) -> list[str]:
    """Remove run folders (and the folders they list) of launchers that no longer run; returns
    the folders removed. Only folders this user owns, named like ours, with an owner record."""
    temp_dir = Path(temp_dir or tempfile.gettempdir())
    removed = []
    for run_dir in temp_dir.glob(f"{RUN_PREFIX}*"):
        owner = _read_owner(run_dir)
        if owner is None or is_alive(owner["pid"], owner["start_time"]):
            continue
        for path in [Path(p) for p in owner["paths"]] + [run_dir]:
            # only our own kind of folder, directly in the temp folder
            if path.parent == temp_dir and path.name.startswith(("pymp-", RUN_PREFIX)) \
                    and _owned_folder(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
    return removed


def _owned_folder(path: Path) -> bool:
    """A real folder (not a link) this user owns: the only kind a sweep may remove."""
    try:
        return not path.is_symlink() and path.is_dir() and path.stat().st_uid == os.getuid()
    except OSError:
        return False


def _read_owner(run_dir: Path) -> dict | None:
    """The owner record of a run folder, or None when it is not one of ours to judge."""
    try:
        if run_dir.is_symlink() or run_dir.stat().st_uid != os.getuid():
            return None
        doc = json.loads((run_dir / OWNER_FILE).read_text())
        pid, started, paths = doc["pid"], doc["start_time"], doc["paths"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(pid, int) and pid > 0 and isinstance(paths, list)
            and all(isinstance(p, str) for p in paths)
            and (started is None or isinstance(started, int))):
        return None
    return {"pid": pid, "start_time": started, "paths": paths}
