"""Pieces shared by the aten rule modules."""

from __future__ import annotations


class Unsupported(Exception):
    """This use of an op (its argument values) has no IR mapping."""


def pairs(value, n):
    """A per-dimension list from torch's one-or-n-values convention."""
    return list(value) * n if len(value) == 1 else list(value)


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]
