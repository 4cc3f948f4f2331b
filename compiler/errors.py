"""User-facing errors: each one is a single actionable line, printed without a traceback.

Each class carries the process exit code the CLI ends with (the scheme is in README.md):
0 ok, 1 bad input or refused request, 2 usage, 3 a negative verdict, 70 an mlc bug, 130 Ctrl-C.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_VERDICT = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class MlcError(Exception):
    """A problem with the user's input (file, model, option). The CLI prints it and exits 1."""

    exit_code = EXIT_BAD_INPUT


class VerdictError(MlcError):
    """A negative verdict on valid input: not equivalent, a `--check` that failed. Exit 3, so a
    script can tell a verdict from bad input (1) and from an mlc bug (70)."""

    exit_code = EXIT_VERDICT


class UnsupportedOpsError(MlcError):
    """The model uses ops the IR does not know; lists every one with its node names."""

    def __init__(self, source: str, unsupported: dict[str, list[str]]):
        self.unsupported = unsupported
        parts = [f"{op} (nodes: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                 for op, names in sorted(unsupported.items())]
        super().__init__(
            f"{source}: {len(unsupported)} unsupported op type(s): {'; '.join(parts)}. "
            "mlc cannot import this model; see `mlc ops` for the supported list.")
