"""Triton backend: render a µGraph to one Python module of `@triton.jit` kernels plus a host
launcher, and load such a module (Triton compiles from real source files, so it is written to
disk first)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from .render import render_triton

__all__ = ["load_triton_module", "render_triton"]


def load_triton_module(source: str, directory: str | Path | None = None) -> ModuleType:
    """Import rendered source as a module (cached by content hash under `directory`, default a
    folder in the system temp dir).

    >>> module = load_triton_module(render_triton(graph))  # doctest: +SKIP
    >>> outputs = module.run(*torch_inputs)                 # doctest: +SKIP
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"mlc_triton_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = Path(directory or Path(tempfile.gettempdir()) / "mlc_triton")
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
