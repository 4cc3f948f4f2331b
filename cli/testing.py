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


def refusal_line(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one line a refused command ends with; asserts the exit-code scheme's promises.

    Exit `code`; no traceback and no "internal error" anywhere; for bad input (1) or a verdict
    (3) exactly one `error:` line on stderr; for a usage error (2) click's `Error:` line after
    its usage hint. Returns that line, for the caller to match what it names.

    >>> line = refusal_line(run_cli("inspect", "missing.onnx"))  # doctest: +SKIP
    """
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines = result.stderr.strip().splitlines()
    if code == 2:
        assert lines and lines[-1].startswith("Error: "), result.stderr
        return lines[-1]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]
