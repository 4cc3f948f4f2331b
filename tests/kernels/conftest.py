"""Kernel tests run generated Triton on CPU tensors through Triton's interpreter unless a run
asks otherwise (TRITON_INTERPRET=0 with a GPU); the variable must be set before triton loads."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
