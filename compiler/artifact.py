"""The artifact directory: the one output format of every mlc command.

Written into a temporary sibling directory and renamed into place, so a failed run never leaves
a half-written artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import MlcError
from .ir.graph import Graph
from .ir.serialize import save_graph

REPORT_FORMAT_VERSION = 1


@contextmanager
def atomic_directory(out: Path):
    """Yield a temp directory; on success it replaces `out`, on error it is removed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MlcError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        out.rename(old / out.name)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_artifact(out: Path, graph: Graph, report: dict, report_md: str) -> Path:
    """graph.json + weights + report.json + report.md, atomically."""
    with atomic_directory(out) as tmp:
        save_graph(graph, tmp)
        doc = {"format_version": REPORT_FORMAT_VERSION, **report}
        (tmp / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "report.md").write_text(report_md)
    return Path(out)


@contextmanager
def atomic_file(path: Path):
    """Yield a temp file path beside `path`; renamed onto it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
