"""`mlc ops`: the IR's op table and which ONNX ops import onto it."""

from __future__ import annotations

import click

from mlc.compiler.frontends.onnx_ops import CONVERTERS
from mlc.compiler.ir.ops import OPS, REQUIRED

from .common import emit, json_option


@click.command("ops")
@json_option
def ops_cmd(as_json: bool) -> None:
    """List the IR ops (kind, arity, attributes) and the ONNX op types mlc imports.

    \b
    Example:
      mlc ops --json
    """
    rows = []
    for op in OPS.values():
        low, high = op.arity
        attrs = {k: ("required" if v is REQUIRED else v) for k, v in op.attrs.items()}
        rows.append({"name": op.name, "kind": op.kind,
                     "inputs": f"{low}" if low == high else f"{low}..{high or 'n'}",
                     "attrs": attrs})
    doc = {"ir_ops": rows, "onnx_ops": sorted(CONVERTERS)}
    lines = [f"{len(rows)} IR ops:"]
    lines += [f"  {r['name']:<20} {r['kind']:<12} inputs {r['inputs']:<6} "
              + ", ".join(f"{k}={v}" for k, v in r["attrs"].items()) for r in rows]
    lines.append(f"{len(CONVERTERS)} ONNX op types import: " + ", ".join(sorted(CONVERTERS)))
    emit(as_json, doc, "\n".join(lines))
