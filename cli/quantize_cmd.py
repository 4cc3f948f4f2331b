"""`mlc quantize`: low-bit weights with DGMS (a learned Gaussian mixture per tensor)."""

from __future__ import annotations

from pathlib import Path

import click

from mlc.compiler.artifact import (
    REPORT_FORMAT_VERSION,
    atomic_directory,
    check_output_directory,
)
from mlc.compiler.errors import MlcError
from mlc.compiler.frontends import load_model
from mlc.compiler.ir.serialize import save_graph
from mlc.compiler.safe_io import dump_json

from .common import FiniteFloat, emit, force_option, json_option, parse_shapes, shape_option


def _parse_layer_bits(values) -> dict[str, int]:
    """--layer-bits PATTERN=BITS (repeatable) -> {PATTERN: BITS}, BITS a whole number 1..8."""
    out = {}
    for value in values:
        pattern, sep, bits = value.rpartition("=")
        if not sep or not pattern.strip() or not bits.strip().isdigit():
            raise click.BadParameter(f"{value!r}: expected PATTERN=BITS like '*attention*=8'",
                                     param_hint="--layer-bits")
        if not 1 <= int(bits) <= 8:
            raise click.BadParameter(f"{value!r}: bits must be between 1 and 8",
                                     param_hint="--layer-bits")
        out[pattern] = int(bits)
    return out


def build_report(model: str, options, result) -> dict:
    """report.json: options, model-level fidelity per method, per-layer metrics."""
    layers = []
    for layer in result.layers:
        row = {"weight": layer.weight, "nodes": list(layer.nodes), "op": layer.op,
               "shape": list(layer.shape), "params": layer.size, "bits": layer.bits}
        for method, metrics in result.layer_metrics.items():
            row[method] = {k: round(v, 6) if isinstance(v, float) else v
                           for k, v in metrics[layer.weight].items()}
        layers.append(row)
    return {"format_version": REPORT_FORMAT_VERSION, "command": "quantize", "source": model,
            "method": options.method, "bits": options.bits, "tau": options.tau,
            "epochs": options.tune.epochs if result.history else 0, "lr": options.tune.lr,
            "distill": options.tune.distill, "loss_history": result.history,
            "seconds": round(result.seconds, 3),
            "quantized_params": sum(layer.size for layer in result.layers),
            "fidelity": result.fidelity, "layers": layers}


def report_markdown(report: dict, plots: list[str]) -> str:
    methods = [m for m in report["fidelity"] if m != "fp32"]
    lines = [f"# mlc quantize: {report['source']}", "",
             f"{report['method']} at {report['bits']} bits (τ = {report['tau']}); "
             f"{len(report['layers'])} layers, {report['quantized_params']:,} weights; "
             f"{report['seconds']:.1f} s.", "",
             "| method | accuracy | output cosine | output rel err | compression |",
             "|---|---|---|---|---|"]
    for method in ["fp32"] + methods:
        f = report["fidelity"][method]
        accuracy = f"{f['accuracy']:.4f}" if "accuracy" in f else "-"
        ratio = f"{f['compression_ratio']:.2f}×" if "compression_ratio" in f else "1×"
        lines.append(f"| {method} | {accuracy} | {f['output_cosine']:.5f} | "
                     f"{f['output_rel_err']:.2e} | {ratio} |")
    lines += ["", "Per layer (weight relative error, zero fraction, compression counting "
              "indices and codebooks; RTN's per-channel codebook counted as a scale and a zero "
              "point per channel):", "",
              "| layer | shape | bits | " + " | ".join(f"{m} err / zeros / ×" for m in methods)
              + " |", "|---|---|---|" + "---|" * len(methods)]
    for row in report["layers"]:
        cells = [f"{row[m]['weight_rel_err']:.3f} / {row[m]['zero_fraction']:.2f} / "
                 f"{row[m]['compression_ratio']:.1f}" for m in methods]
        lines.append(f"| {row['weight']} | {'x'.join(map(str, row['shape']))} | {row['bits']} | "
                     + " | ".join(cells) + " |")
    if plots:
        lines += ["", "## Weight histograms with the fitted mixture", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _write_plots(folder: Path, result, limit: int = 12) -> list[str]:
    import numpy as np
    import torch

    from mlc.compiler.quant.plots import histogram_svg
    names = []
    folder.mkdir()
    for k, layer in enumerate(result.layers[:limit]):
        quantizer = result.quantizers[layer.weight]
        with torch.no_grad():
            means = quantizer.means.double().numpy()
            scales = quantizer.scales.double().numpy()
            proportions = quantizer.proportions.double().numpy()
        weight = np.asarray(result.tuned.weights[layer.weight])
        svg = histogram_svg(weight, means, scales, proportions,
                            f"{layer.weight} ({layer.bits}-bit, K={len(means)})")
        path = folder / f"layer_{k}.svg"
        path.write_text(svg)
        names.append(f"plots/{path.name}")
    return names


@click.command("quantize")
@click.argument("model")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR")
@click.option("--gmm", "method", flag_value="gmm", default=True,
              help="DGMS: a learned Gaussian mixture per weight tensor (the default).")
@click.option("--method", "method", type=click.Choice(["gmm", "rtn", "kmeans"]),
              help="gmm (DGMS), rtn (uniform per-channel) or kmeans (weight sharing).")
@click.option("--bits", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Bits per weight, 1-8.")
@click.option("--layer-bits", multiple=True, metavar="PATTERN=BITS",
              help="Bits for weights or nodes matching a glob (repeatable).")
@click.option("--skip", multiple=True, metavar="PATTERN",
              help="Leave weights or nodes matching a glob in float (repeatable).")
@click.option("--data", metavar="FILE.npz|module:callable",
              help="Co-tune with the task loss (labels) or, with --distill, match fp32 outputs.")
@click.option("--eval-data", metavar="FILE.npz", help="Measure fidelity here (default: --data).")
@click.option("--distill", is_flag=True, help="Loss = distance to the fp32 model's outputs.")
@click.option("--epochs", type=click.IntRange(0, 10**6), default=3, show_default=True,
              help="Co-tuning epochs over --data (0: quantize without co-tuning).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=1e-3, show_default=True,
              help="Learning rate of co-tuning (> 0).")
@click.option("--tau", type=FiniteFloat(min=0, min_open=True), default=0.01,
              show_default=True,
              help="Temperature of the soft assignment (> 0; a hyperparameter, not trained).")
@click.option("--no-baselines", is_flag=True, help="Skip the RTN and k-means baselines.")
@click.option("--export-onnx", is_flag=True, help="Also write DIR/model.onnx.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@shape_option
@force_option
@json_option
def quantize_cmd(model, out, method, bits, layer_bits, skip, data, eval_data, distill, epochs,
                 lr, tau, no_baselines, export_onnx, seed, shapes, as_json,
                 force: bool = False) -> None:
    """Quantize MODEL's MatMul / Gemm / Conv weights to BITS-bit packed indices plus a codebook
    and write an artifact that `mlc run DIR` executes; baselines at the same bits in the report.

    \b
    Example:
      mlc quantize model.onnx --gmm --bits 4 --out build/q4
      mlc quantize model.onnx --bits 2 --data train.npz --epochs 5 --out build/q2
      mlc quantize model.onnx --bits 3 --data inputs.npz --distill --export-onnx --out build/q3
    """
    from mlc.compiler.onnx_export import save_onnx
    from mlc.compiler.quant.cotune import TuneOptions
    from mlc.compiler.quant.data import load_data
    from mlc.compiler.quant.quantize import QuantizeOptions, quantize_model
    from mlc.compiler.quant.select import check_patterns, select_layers

    layer_bits = _parse_layer_bits(layer_bits)
    if distill and not data:
        raise MlcError("--distill needs --data with the model's inputs")
    check_output_directory(out, force=force, inputs=[model, data, eval_data])  # fail fast
    graph = load_model(model, parse_shapes(shapes))
    options = QuantizeOptions(
        method=method or "gmm", bits=bits, skip=tuple(skip), layer_bits=layer_bits, tau=tau,
        baselines=() if no_baselines else ("rtn", "kmeans"),
        tune=TuneOptions(epochs=epochs, lr=lr, distill=distill, seed=seed), seed=seed)
    check_patterns(graph, options.skip, options.layer_bits)
    select_layers(graph, bits, skip=options.skip, layer_bits=options.layer_bits)  # fail early
    train = load_data(data, graph) if data else None
    evaluation = load_data(eval_data, graph, "--eval-data") if eval_data else None

    from rich.console import Console
    console = Console(stderr=True)
    with console.status("quantizing", spinner="dots") as status:
        result = quantize_model(graph, options, train if epochs else None, evaluation or train,
                                lambda message: status.update(f"quantizing: {message}"))
    report = build_report(model, options, result)
    with atomic_directory(out, force=force, inputs=[model, data, eval_data]) as tmp:
        save_graph(result.graph, tmp)
        plots = _write_plots(tmp / "plots", result) if result.quantizers else []
        if export_onnx:
            save_onnx(result.graph, tmp / "model.onnx")
        (tmp / "report.json").write_text(dump_json(report, indent=1) + "\n")
        (tmp / "report.md").write_text(report_markdown(report, plots))
    fidelity = report["fidelity"]
    text = [f"{len(result.layers)} layers ({report['quantized_params']:,} weights) at "
            f"{bits} bits, {result.seconds:.1f} s"]
    for name, f in fidelity.items():
        extra = f", accuracy {f['accuracy']:.4f}" if "accuracy" in f else ""
        ratio = f", {f['compression_ratio']:.2f}x smaller" if "compression_ratio" in f else ""
        text.append(f"  {name:7s} output cosine {f['output_cosine']:.5f}{extra}{ratio}")
    text.append(f"wrote {out}/ (graph.json, weights, report.json, report.md"
                + (", model.onnx" if export_onnx else "") + ")")
    emit(as_json, report, "\n".join(text))
