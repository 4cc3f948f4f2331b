"""Generated kernels per hand-written µGraph fixture: the Triton module of each `_small`
fixture run under the Triton interpreter (CPU) against the float64 µGraph interpreter, and the
CUDA source of every fixture compiled with nvcc for sm_80 and sm_90. Prints a table, writes JSON.

    .venv/bin/python bench/mugraph_kernels.py --out build/bench/mugraph_kernels.json
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: CPU execution

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mlc.compiler.superopt.mugraph import FloatArith, run_mugraph  # noqa: E402
from mlc.compiler.superopt.mugraph.fixtures import list_fixtures, load_fixture  # noqa: E402
from mlc.kernels.cuda import CudaCompileError, compile_cuda, render_cuda  # noqa: E402
from mlc.kernels.triton import load_triton_module, render_triton  # noqa: E402

ARCHS = ("sm_80", "sm_90")


def triton_check(graph) -> dict:
    import torch
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal(s) for n, s in graph.inputs.items()}
    want = run_mugraph(graph, inputs, FloatArith(np.float64))
    module = load_triton_module(render_triton(graph))
    tensors = [torch.tensor(inputs[n], dtype=torch.float32) for n in graph.inputs]
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        got = module.run(*tensors)
    seconds = time.perf_counter() - start
    got = (got,) if isinstance(got, torch.Tensor) else got
    err = max(float(np.abs(g.numpy() - want[n]).max() / np.abs(want[n]).max())
              for g, n in zip(got, graph.outputs))
    return {"rel_err": err, "seconds": seconds}


def nvcc_check(graph, arch) -> dict:
    if shutil.which("nvcc") is None:
        return {"status": "skipped (no nvcc)", "seconds": 0.0}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            compile_cuda(render_cuda(graph), arch=arch, workdir=tmp)
            status = "ok"
        except CudaCompileError as err:
            status = f"failed: {str(err)[:200]}"
    return {"status": status, "seconds": time.perf_counter() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/mugraph_kernels.json"))
    args = parser.parse_args()
    rows = []
    for name in list_fixtures():
        graph = load_fixture(name)
        row = {"fixture": name, "kernels": len(graph.ops)}
        if name.endswith("_small"):
            row["triton_interpreter"] = triton_check(graph)
        for arch in ARCHS:
            row[f"nvcc_{arch}"] = nvcc_check(graph, arch)
        rows.append(row)
    table = Table(title="Generated kernels: Triton interpreter (small fixtures) and nvcc")
    for col in ("fixture", "kernels", "triton rel err", "triton s", "nvcc sm_80", "nvcc sm_90"):
        table.add_column(col, justify="left" if col == "fixture" else "right")
    for r in rows:
        tri = r.get("triton_interpreter")
        table.add_row(r["fixture"], str(r["kernels"]), f"{tri['rel_err']:.1e}" if tri else "-",
                      f"{tri['seconds']:.2f}" if tri else "-",
                      f"{r['nvcc_sm_80']['status']} ({r['nvcc_sm_80']['seconds']:.1f} s)",
                      f"{r['nvcc_sm_90']['status']} ({r['nvcc_sm_90']['seconds']:.1f} s)")
    Console(width=130).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "mugraph_kernels", "rows": rows}, indent=1)
                        + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
