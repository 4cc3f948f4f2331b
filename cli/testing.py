"""Run `mlc ARGS...` inside this Python process, as a subprocess would run it: same exit codes,
captured stdout and stderr. Saves the interpreter start and imports (seconds) per call, which
matters for test suites and notebooks; commands that need a process of their own (signals,
spawned workers) should still use a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import traceback
from contextlib import redirect_stderr, redirect_stdout


def run_cli(*args, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`mlc *args` in-process; returns a CompletedProcess (returncode, stdout, stderr).

    Ensures: the working directory and environment are restored afterwards."""
    from .common import handle_errors
    from .main import cli

    argv = [str(a) for a in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                handle_errors(cli, argv)
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None
                                                                    else 1)
            except Exception:  # --debug re-raises: the interpreter would print it and exit 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
    return subprocess.CompletedProcess(["mlc", *argv], code, stdout.getvalue(), stderr.getvalue())
