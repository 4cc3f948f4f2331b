"""Triton backend: render a µGraph to one Python module of `@triton.jit` kernels plus a host
launcher, and load such a module (Triton compiles from real source files, so it is written to
disk first)."""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from .render import render_triton

__all__ = ["load_triton_module", "render_triton"]

_private_folder: Path | None = None


def _default_folder() -> Path:
    """A folder only this process writes (mode 0700, removed at exit): a shared, predictable
    temp folder would let another local user swap the file between our write and its import."""
    global _private_folder
    if _private_folder is None:
        _private_folder = Path(tempfile.mkdtemp(prefix="mlc_triton_"))
        atexit.register(shutil.rmtree, _private_folder, ignore_errors=True)
    return _private_folder


def load_triton_module(source: str, directory: str | Path | None = None) -> ModuleType:
    """Import source that mlc rendered itself (never a file read from an artifact) as a module,
    cached by content hash under `directory` (default: a private folder of this process).

    >>> module = load_triton_module(render_triton(graph))  # doctest: +SKIP
    >>> outputs = module.run(*torch_inputs)                 # doctest: +SKIP
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"mlc_triton_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = Path(directory) if directory else _default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(source)
        partial.replace(path)  # atomic: a concurrent reader never sees half a file
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
