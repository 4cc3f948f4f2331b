"""`mlc optimize` survives what users bring (issue 16, robustness): tiles of different ranks
(a bias or a weight tile beside a batched activation tile) interpret like numpy, one
shared-memory rule decides for validation, instantiation, the cost model and the CUDA renderer,
and a candidate or a region whose search raises is dropped and counted, never fatal."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.superopt.cost import estimate, load_gpu
from mlc.compiler.superopt.mugraph import FloatArith, MuGraphError, run_mugraph, validate
from mlc.compiler.superopt.mugraph.model import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    KernelOp,
    MuGraph,
    kernel_shapes,
    shared_memory_bytes,
)
from mlc.compiler.superopt.verify import FieldArith, random_field_value, random_omega
from mlc.kernels.cuda import render_module
from mlc.kernels.triton import render_triton


def _mixed_rank_block() -> MuGraph:
    """X (8, 2, 32) @ W (32, 96) + b (96,), gridded over both of X's batch dims and W's
    columns: a rank-3 tile times a rank-2 tile plus a rank-1 tile (the linear layer an
    exported TransformerEncoderLayer feeds the search; this once crashed the verifier)."""
    block = BlockGraph(
        grid=(2, 2, 4), forloop_range=1,
        inputs=(BlockInput("x", 0, (0, 1, -1), -1), BlockInput("w", 1, (-1, -1, 1), -1),
                BlockInput("b", 2, (-1, -1, 0), -1)),
        ops=(BlockOp("matmul", ("x", "w"), "xw"), BlockOp("add", ("xw", "b"), "z"),
             BlockOp("accum_sum", ("z",), "y")),
        outputs=(BlockOutput("y", (0, 1, 2)),))
    return MuGraph("linear", {"X": (8, 2, 32), "W": (32, 96), "B": (96,)},
                   (KernelOp("block", ("X", "W", "B"), ("Y",), block=block),), ("Y",))


def test_tiles_of_different_ranks_broadcast_like_numpy():
    graph = _mixed_rank_block()
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s) for s in graph.inputs.values())
    got = run_mugraph(graph, {"X": x, "W": w, "B": b}, FloatArith())["Y"]
    np.testing.assert_allclose(got, x @ w + b, rtol=1e-12)
    field = FieldArith(omega=random_omega(rng))  # the verifier's arithmetic, same alignment
    values = {n: random_field_value(rng, s) for n, s in graph.inputs.items()}
    assert run_mugraph(graph, values, field)["Y"].shape == (8, 2, 96)


def _online_softmax_block(rows: int, cols: int, loop: int) -> MuGraph:
    """Row sums of exp(x - running max): a running max keeps rescale factors beside it."""
    block = BlockGraph(
        grid=(1, 1, 1), forloop_range=loop,
        inputs=(BlockInput("x", 0, (-1, -1, -1), 1),),
        ops=(BlockOp("accum_max_ld", ("x",), "m"), BlockOp("sub", ("x", "m"), "d"),
             BlockOp("exp", ("d",), "e"), BlockOp("accum_sum_ld_rescale", ("e", "m"), "s")),
        outputs=(BlockOutput("s", (-1, -1, -1)),))
    return MuGraph("softmax_sum", {"X": (rows, cols)},
                   (KernelOp("block", ("X",), ("S",), block=block),), ("S",))


@pytest.mark.parametrize("graph", [_mixed_rank_block(), _online_softmax_block(6, 4096, 2)],
                         ids=["mixed_ranks", "running_max"])
def test_one_shared_memory_rule_for_validation_cost_and_renderer(graph):
    op = graph.ops[0]
    need = shared_memory_bytes(op.block, [kernel_shapes(graph)[t] for t in op.inputs])
    assert render_module(graph, smem_limit_bytes=need).kernels[0].smem_bytes == need
    validate(graph, smem_limit_bytes=need)
    spec = dataclasses.replace(load_gpu("h100"), smem_per_block=need)
    estimate(graph, spec)  # the cost model accepts it at exactly its need
    tight = dataclasses.replace(spec, smem_per_block=need - 1)
    for refuse in (lambda: validate(graph, smem_limit_bytes=need - 1),
                   lambda: render_module(graph, smem_limit_bytes=need - 1),
                   lambda: estimate(graph, tight)):
        with pytest.raises(MuGraphError, match="shared memory"):
            refuse()
    render_triton(graph)


@pytest.fixture(scope="module")
def rms_checkpoint():
    """The verified sGraphs of prism_rms_norm's structure (a short symbolic search)."""
    from mlc.compiler.superopt.symbolic.search import symbolic_search
    from mlc.specs.workloads import get_workload

    return symbolic_search(get_workload("prism_rms_norm:small"), budget_s=1.5, workers=1)


def test_instantiation_only_accepts_what_the_renderer_renders(rms_checkpoint):
    from mlc.compiler.superopt.search.generators import dim_labels
    from mlc.compiler.superopt.symbolic.instantiate import instantiate_sgraph
    from mlc.compiler.superopt.symbolic.search import data_sizes, input_symbols
    from mlc.compiler.superopt.verify import lower_to_mugraph
    from mlc.specs.workloads import get_workload

    assert rms_checkpoint.sgraphs
    big = get_workload("prism_rms_norm:d=2048")  # the shape that once failed to render
    symbols = input_symbols(big)
    sizes = data_sizes(big, symbols)
    gpu = load_gpu("h100")
    instances = [i for s in rms_checkpoint.sgraphs for i in instantiate_sgraph(
        s, big, sizes, gpu, dim_labels(lower_to_mugraph(big)))]
    assert instances
    for instance in instances:
        render_module(instance.graph, smem_limit_bytes=gpu.smem_per_block)


def test_an_sgraph_the_small_binding_cannot_tile_is_skipped_with_a_reason(rms_checkpoint,
                                                                          monkeypatch):
    from mlc.compiler.superopt.symbolic import search
    from mlc.specs.workloads import get_workload

    reference = get_workload("prism_rms_norm:small")
    symbols = search.input_symbols(reference)
    split = [s for s in rms_checkpoint.sgraphs if any(k and k.variables for k in s.kernels)]
    assert split
    monkeypatch.setattr(search, "SMALL_BASE", 9)  # odd sizes: no variable 2 divides them
    skipped: list[str] = []
    assert search.verify_small(split, reference, symbols, 0, skipped) == []
    assert len(skipped) == len(split) and all("∤" in why for why in skipped)


def test_a_candidate_that_raises_is_dropped_counted_and_reported(monkeypatch, tmp_path):
    from mlc.compiler.superopt.mugraph import mugraph_to_json
    from mlc.compiler.superopt.verify import probabilistic

    real, bad = probabilistic.verify_many, []

    def flaky(candidates, reference, **kwargs):
        candidates = list(candidates)
        if not bad:
            bad.append(json.dumps(mugraph_to_json(candidates[0]), sort_keys=True))
        if any(json.dumps(mugraph_to_json(c), sort_keys=True) == bad[0] for c in candidates):
            raise ValueError("injected verifier failure")
        return real(candidates, reference, **kwargs)

    monkeypatch.setattr(probabilistic, "verify_many", flaky)
    out = tmp_path / "out"
    result = run_cli("optimize", "workload:prism_rms_norm:small", "--out", out, "--budget", "4",
                     "--search", "concrete", "--no-cache")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    (row,) = report["kernels"]
    assert row["candidates_failed"] == 1
    assert row["verified"]  # the other candidates still verified
    assert any("injected verifier failure" in note for note in report["notes"])


def test_programs_whose_costing_raises_are_dropped_and_counted(monkeypatch, tmp_path):
    from mlc.compiler.superopt.search import driver

    def broken(*args, **kwargs):
        raise RuntimeError("injected costing failure")

    monkeypatch.setattr(driver, "tune", broken)  # the forked workers inherit the patch
    out = tmp_path / "out"
    # a budget a loaded CI machine still reaches the first costed program within
    result = run_cli("optimize", "workload:prism_rms_norm:small", "--out", out, "--budget", "6",
                     "--search", "concrete", "--no-cache")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    (row,) = report["kernels"]
    assert row["candidates_failed"] > 0 and not row["verified"]
    assert any("cost: RuntimeError: injected costing failure" in n for n in report["notes"])


def test_a_region_whose_search_raises_keeps_its_unfused_lowering(monkeypatch, tmp_path):
    from mlc.compiler.superopt.search import driver

    def broken(*args, **kwargs):
        raise RuntimeError("injected search failure")

    monkeypatch.setattr(driver, "search", broken)
    out = tmp_path / "out"
    result = run_cli("optimize", "workload:prism_rms_norm:small", "--out", out, "--budget", "1",
                     "--search", "concrete", "--no-cache")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    (row,) = report["kernels"]
    assert not row["verified"] and row["candidates_failed"] == 1
    assert any("injected search failure" in n and "unfused" in n for n in report["notes"])
    assert (out / "kernels" / "region_0.cu").is_file()
    run = run_cli("run", out, "--random", "--executor", "reference")
    assert run.returncode == 0, run.stderr


# ---- real models and sweep shapes (slow: a search each) -----------------------------------

def _export_encoder_layer(path):
    """torch.nn.TransformerEncoderLayer(d_model=32, nhead=4) through the TorchScript exporter
    (the explicit-softmax attention path: need_weights=True, which that exporter traces)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64,
                                             batch_first=True).eval()

    def self_attention(x, attn_mask, key_padding_mask, is_causal=False):
        out = layer.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                              need_weights=True)[0]
        return layer.dropout1(out)

    layer._sa_block = self_attention
    torch.onnx.export(layer, (torch.randn(2, 8, 32),), str(path), dynamo=False,
                      input_names=["x"])


@pytest.fixture(scope="module")
def encoder_layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tel") / "layer.onnx"
    _export_encoder_layer(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["symbolic", "concrete"])
def test_transformer_encoder_layer_optimizes_and_matches_onnxruntime(encoder_layer, mode,
                                                                     tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "out"
    result = run_cli("optimize", encoder_layer, "--out", out, "--budget", "10", "--search",
                     mode, "--no-cache")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert any(row["verified"] for row in report["kernels"])
    x = np.random.default_rng(1).standard_normal((2, 8, 32)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    run = run_cli("run", out, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
    assert run.returncode == 0, run.stderr
    (got,) = np.load(tmp_path / "o.npz").values()
    session = ort.InferenceSession(str(encoder_layer), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["symbolic", "concrete"])
def test_prism_rms_norm_sweep_shape_renders(mode, tmp_path):
    out = tmp_path / "out"
    result = run_cli("optimize", "workload:prism_rms_norm:d=2048", "--out", out, "--budget",
                     "5", "--search", mode, "--no-cache")
    assert result.returncode == 0, result.stderr
    assert sorted(p.suffix for p in (out / "kernels").iterdir()) == [".cu", ".json", ".py",
                                                                      ".svg"]


def test_a_candidate_too_large_to_interpret_is_refused_not_run(monkeypatch):
    """A candidate whose tiles, held behind grid and loop axes, would exceed the interpreter's
    cap gets a "too large" verdict at once (it used to be interpreted for minutes past the
    search budget); candidates under the cap are still verified."""
    from mlc.compiler.superopt.mugraph.fixtures import fixture_workload, load_fixture
    from mlc.compiler.superopt.verify import probabilistic
    from mlc.specs.workloads import get_workload

    graph = load_fixture("rmsnorm_matmul_small")
    reference = get_workload(fixture_workload("rmsnorm_matmul_small"))
    volume = probabilistic.interpreted_elements(graph)
    assert volume >= max(np.prod(s) for s in graph.inputs.values())
    (ok,) = probabilistic.verify_many([graph], reference)
    assert ok.equivalent
    monkeypatch.setattr(probabilistic, "MAX_VERIFY_ELEMENTS", volume - 1)
    (refused,) = probabilistic.verify_many([graph], reference)
    assert not refused.equivalent and refused.stage == "too large" and refused.trials == 0
