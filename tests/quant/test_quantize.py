"""The quantize passes: packing is exact, every method runs end to end, co-tuning lowers its
loss, and a `module:callable` data source drives the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import interpret
from mlc.compiler.quant.codebook import PackedWeight
from mlc.compiler.quant.cotune import TuneOptions, with_weights
from mlc.compiler.quant.data import batch_arrays, load_data
from mlc.compiler.quant.quantize import QuantizeOptions, apply_packed, quantize_model
from mlc.runtime import run


def classifier(width=16, classes=4, batch=8):
    rng = np.random.default_rng(0)
    b = GraphBuilder("clf")
    x = b.input("x", (batch, width))
    w1 = b.weight("fc1.weight", (rng.standard_normal((width, 32)) / 4).astype(np.float32))
    w2 = b.weight("fc2.weight", (rng.standard_normal((32, classes)) / 6).astype(np.float32))
    return b.build(b.op("MatMul", b.op("Relu", b.op("MatMul", x, w1, name="fc1")), w2,
                        name="fc2"))


def test_apply_packed_is_exactly_the_dequantized_weights():
    graph = classifier()
    rng = np.random.default_rng(1)
    packed = {"fc1.weight": PackedWeight.from_indices(
        rng.integers(0, 8, (16, 32)), rng.standard_normal(8).astype(np.float32), 3)}
    fused = apply_packed(graph, packed)
    assert [n.op for n in fused.nodes][0] == "CodebookDequantize"
    assert "fc1.weight" not in fused.weights and fused.weights["fc1.weight.packed"].size == 192
    dense = with_weights(graph, {"fc1.weight": packed["fc1.weight"].dequantize()})
    feeds = {"x": rng.standard_normal((8, 16)).astype(np.float32)}
    for executor in ("reference", "torch"):
        np.testing.assert_array_equal(run(fused, feeds, executor=executor)[fused.outputs[0]],
                                      run(dense, feeds, executor=executor)[dense.outputs[0]])


@pytest.mark.parametrize("method", ["gmm", "rtn", "kmeans"])
def test_every_method_quantizes_and_8_bits_is_nearly_lossless(method):
    graph = classifier()
    result = quantize_model(graph, QuantizeOptions(method=method, bits=8, baselines=()))
    assert set(result.packed) == {method} and result.fidelity["fp32"]["output_cosine"] == 1.0
    assert result.fidelity[method]["output_cosine"] > 0.999
    ops = [n.op for n in result.graph.nodes]
    assert ops.count("CodebookDequantize") == 2
    for metrics in result.layer_metrics[method].values():
        assert metrics["bits"] == 8 and metrics["weight_rel_err"] < 0.05


def test_dgms_pins_a_zero_component_and_prunes():
    result = quantize_model(classifier(), QuantizeOptions(bits=2, baselines=()))
    for name, item in result.packed["gmm"].items():
        assert item.codebook[0] == 0.0 and len(item.codebook) == 4
        assert result.layer_metrics["gmm"][name]["zero_fraction"] > 0.05


def labelled(graph, n=64, seed=0):
    """Labels from the fp32 model itself, so the task is learnable."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    logits = np.concatenate([interpret(graph, {"x": x[k:k + 8]})[graph.outputs[0]]
                             for k in range(0, n, 8)])
    return batch_arrays({"x": x}, logits.argmax(1), graph)


@pytest.mark.parametrize("distill", [False, True])
def test_cotuning_lowers_the_loss(distill):
    graph = classifier()
    data = labelled(graph)
    options = QuantizeOptions(bits=2, baselines=(), tune=TuneOptions(epochs=6, lr=5e-3,
                                                                     distill=distill))
    result = quantize_model(graph, options, data)
    assert len(result.history) == 6 and result.history[-1] < result.history[0]
    assert 0 <= result.fidelity["gmm"]["accuracy"] <= 1
    assert result.tuned.weights["fc1.weight"].dtype == np.float32
    assert not np.array_equal(result.tuned.weights["fc1.weight"], graph.weights["fc1.weight"])


def test_a_callable_data_source_supplies_the_loss(tmp_path, monkeypatch):
    (tmp_path / "my_task.py").write_text(
        "import numpy as np, torch\n"
        "def make():\n"
        "    rng = np.random.default_rng(0)\n"
        "    batches = [{'x': rng.standard_normal((8, 16)).astype(np.float32),\n"
        "                'target': rng.standard_normal((8, 4)).astype(np.float32)}\n"
        "               for _ in range(3)]\n"
        "    def loss(outputs, batch):\n"
        "        y = next(iter(outputs.values()))\n"
        "        return torch.mean((y - torch.as_tensor(batch['target'])) ** 2)\n"
        "    return loss, batches\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = classifier()
    data = load_data("my_task:make", graph)
    assert data.loss_fn is not None and len(data.batches) == 3
    result = quantize_model(graph, QuantizeOptions(bits=4, baselines=(),
                                                   tune=TuneOptions(epochs=5, lr=5e-3)), data)
    assert result.history[-1] < result.history[0]


def test_soft_weights_feed_the_torch_module_and_train_the_mixture():
    from mlc.compiler.quant.gmm import GMMQuantizer
    from mlc.runtime.torch_executor import TorchGraphModule
    graph = classifier()
    module = TorchGraphModule(graph)
    weight = torch.from_numpy(graph.weights["fc1.weight"])
    quantizer = GMMQuantizer(weight, 3)

    class Soft(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = quantizer

        def forward(self, w):
            return self.q.soft_weight(w)

    module.set_weight_transform("fc1.weight", Soft())
    assert any(p is quantizer.free_means for p in module.parameters())
    out = module(x=torch.ones(8, 16))[graph.outputs[0]]
    out.sum().backward()
    assert quantizer.free_means.grad is not None
