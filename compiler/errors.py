"""User-facing errors: each one is a single actionable line, printed without a traceback."""

from __future__ import annotations


class MlcError(Exception):
    """A problem with the user's input (file, model, option). The CLI prints it and exits 1."""


class UnsupportedOpsError(MlcError):
    """The model uses ops the IR does not know; lists every one with its node names."""

    def __init__(self, source: str, unsupported: dict[str, list[str]]):
        self.unsupported = unsupported
        parts = [f"{op} (nodes: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                 for op, names in sorted(unsupported.items())]
        super().__init__(
            f"{source}: {len(unsupported)} unsupported op type(s): {'; '.join(parts)}. "
            "mlc cannot import this model; see `mlc ops` for the supported list.")
