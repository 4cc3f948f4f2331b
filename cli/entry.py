"""The `mlc` console script. Kept tiny so that a Ctrl-C during the (seconds-long) imports of the
command modules still ends with one line and exit 130, never a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .main import main as run_cli
    except KeyboardInterrupt:
        sys.stderr.write("mlc: interrupted (nothing was written)\n")
        sys.exit(130)
    run_cli()
