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


MANIFEST = ".mlc-artifact.json"


@contextmanager
def atomic_directory(out: Path, *, force: bool = False, inputs=()):
    """Yield a temp directory; on success it replaces `out`, on error it is removed.

    Requires: `out` is not the working directory or one of its parents, contains none of
    `inputs` (paths the command reads), and is absent, empty, or an artifact mlc wrote whose
    files are all listed in its manifest -- unless `force`, which allows replacing a folder
    with other files in it.
    Ensures: `out` holds exactly the new artifact (with its manifest) or is left as it was;
    nothing is ever half-written, and nothing is deleted that mlc did not write (unless
    `force`)."""
    out = Path(out)
    check_output_directory(out, force=force, inputs=inputs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as err:
        raise MlcError(f"{out}: cannot create the output folder here "
                       f"({err.strerror or err}); choose another --out") from None
    try:
        yield tmp
        _write_manifest(tmp)
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


def check_output_directory(out: Path, *, force: bool = False, inputs=()) -> None:
    """Refuse an --out that replacing could lose a user's files with (see atomic_directory)."""
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
        raise MlcError(f"{out}: is the current folder, one of its parents or your home; "
                       "mlc replaces --out as a whole, so give it a new folder, e.g. "
                       f"--out {out / 'mlc-out'}")
    for source in inputs:
        if source is None:
            continue
        source_path = Path(str(source))
        if source_path.exists() and source_path.resolve() == resolved:
            raise MlcError(f"{out}: is the command's input; writing the output there would "
                           "replace it. Choose another --out")
        if source_path.exists() and resolved in source_path.resolve().parents:
            raise MlcError(f"{out}: holds the input {source}; writing the output there would "
                           "replace it. Choose another --out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise MlcError(f"{out}: exists and is not a folder; choose another --out")
    if not out.exists() or force:
        return
    foreign = _files_not_written_by_mlc(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise MlcError(f"{out}: exists and holds {len(foreign)} file(s) mlc did not write "
                       f"({shown}); choose another --out, or pass --force to replace the "
                       "folder and everything in it")


def _listed_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if not p.is_dir() or p.is_symlink())


def _write_manifest(folder: Path) -> None:
    files = _listed_files(folder)
    (folder / MANIFEST).write_text(json.dumps({"format_version": REPORT_FORMAT_VERSION,
                                               "files": files}, indent=1) + "\n")


def _files_not_written_by_mlc(folder: Path) -> list[str]:
    """Files in `folder` that no manifest lists: its own, or that of an artifact nested in it
    (e.g. `mlc serve PLAN` writes PLAN/serve/, which a new plan may replace)."""
    listed = {Path(name) for name in _manifest_files(folder)}
    nested = {path.parent: {Path(name) for name in _manifest_files(path.parent)}
              for path in folder.rglob(MANIFEST) if path.parent != folder}
    foreign = []
    for name in _listed_files(folder):
        relative = Path(name)
        if relative.name == MANIFEST or relative in listed:
            continue
        owners = [d for d in nested if d in (folder / relative).parents]
        owner = max(owners, key=lambda d: len(d.parts), default=None)
        if owner is None or (folder / relative).relative_to(owner) not in nested[owner]:
            foreign.append(name)
    return foreign


def _manifest_files(folder: Path) -> list[str]:
    """The files an artifact's manifest lists ([] when it has none or it does not parse)."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [name for name in files if isinstance(name, str)] if isinstance(files, list) else []


def write_artifact(out: Path, graph: Graph, report: dict, report_md: str, *,
                   force: bool = False, inputs=()) -> Path:
    """graph.json + weights + report.json + report.md, atomically (see atomic_directory)."""
    with atomic_directory(out, force=force, inputs=inputs) as tmp:
        save_graph(graph, tmp)
        doc = {"format_version": REPORT_FORMAT_VERSION, **report}
        (tmp / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "report.md").write_text(report_md)
    return Path(out)


@contextmanager
def atomic_file(path: Path):
    """Yield a temp file path beside `path`; renamed onto it only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise MlcError(f"{path}: is a folder; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix,
                                   dir=path.parent)
    except OSError as err:
        raise MlcError(f"{path}: cannot write here ({err.strerror or err}); choose another "
                       "path") from None
    os.close(fd)
    try:
        yield Path(tmp)
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
