"""Layer selection (what gets quantized, at which bits, along which channel axis) and the
training-data loader's checks."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.errors import MlcError
from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.quant.data import batch_arrays, load_data
from mlc.compiler.quant.select import select_layers


def small_model():
    """x -> Gather-free MLP with a bias and a norm scale: two matmul weights, one Gemm."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input("x", (4, 8))
    w1 = b.weight("fc1.weight", rng.standard_normal((8, 16)).astype(np.float32))
    bias = b.weight("fc1.bias", rng.standard_normal(16).astype(np.float32))
    w2 = b.weight("fc2.weight", rng.standard_normal((3, 16)).astype(np.float32))
    table = b.weight("embed", rng.standard_normal((10, 8)).astype(np.float32))
    h = b.op("Relu", b.op("Add", b.op("MatMul", x, w1, name="fc1"), bias))
    y = b.op("Gemm", h, w2, transB=1, name="fc2")
    ids = b.input("ids", (4,), "int64")
    e = b.op("Gather", table, ids, axis=0)
    return b.build(y, b.op("ReduceSum", e, axes=(1,), keepdims=0))


def test_only_matmul_gemm_conv_weights_are_selected_with_their_channel_axis():
    layers = select_layers(small_model(), 4)
    assert [(l.weight, l.op, l.axis, l.bits) for l in layers] == [
        ("fc1.weight", "MatMul", 1, 4), ("fc2.weight", "Gemm", 0, 4)]


def test_skip_and_layer_bits_match_weight_or_node_names():
    layers = select_layers(small_model(), 4, skip=("fc1",), layer_bits={"fc2*": 2})
    assert [(l.weight, l.bits) for l in layers] == [("fc2.weight", 2)]


@pytest.mark.parametrize("bits", [0, 9])
def test_bits_outside_1_to_8_are_refused(bits):
    with pytest.raises(MlcError, match="between 1 and 8"):
        select_layers(small_model(), bits)


def test_nothing_to_quantize_is_a_clear_error():
    with pytest.raises(MlcError, match="nothing to quantize"):
        select_layers(small_model(), 4, skip=("*",))


def test_npz_data_is_checked_against_the_model_inputs(tmp_path):
    graph = small_model()
    good = {"x": np.zeros((10, 8), np.float32), "ids": np.zeros(10, np.int64),
            "labels": np.arange(10) % 3}  # the model has 3 classes
    np.savez(tmp_path / "good.npz", **good)
    data = load_data(str(tmp_path / "good.npz"), graph)
    assert data.labels and data.counts == [4, 4, 2] and data.samples == 10
    assert all(batch["x"].shape == (4, 8) for batch in data.batches)
    np.testing.assert_array_equal(data.batches[2]["labels"][:2], [2, 0])
    np.savez(tmp_path / "bad.npz", **{**good, "x": np.zeros((10, 7), np.float32)})
    with pytest.raises(MlcError, match="input 'x' has per-sample shape \\(7,\\)"):
        load_data(str(tmp_path / "bad.npz"), graph)
    np.savez(tmp_path / "short.npz", x=good["x"])
    with pytest.raises(MlcError, match="no array for model input"):
        load_data(str(tmp_path / "short.npz"), graph)
    np.savez(tmp_path / "ragged.npz", **{**good, "labels": np.arange(9)})
    with pytest.raises(MlcError, match="disagree on the number of samples"):
        load_data(str(tmp_path / "ragged.npz"), graph)


def test_batches_pad_the_last_one_by_repetition():
    graph = small_model()
    data = batch_arrays({"x": np.arange(6 * 8, dtype=np.float32).reshape(6, 8),
                         "ids": np.arange(6)}, None, graph)
    assert data.counts == [4, 2] and not data.labels
    np.testing.assert_array_equal(data.batches[1]["ids"], [4, 5, 4, 5])


def test_weights_reached_through_a_transpose_are_selected_with_the_stored_axis():
    # torch.export spells Linear on 3-D inputs as MatMul(x, Transpose(W)), W = [out, in]
    b = GraphBuilder("linear")
    x = b.input("x", (2, 3, 8))
    w = b.weight("proj.weight", np.ones((5, 8), np.float32))
    y = b.op("MatMul", x, b.op("Transpose", w, perm=(1, 0)), name="proj")
    (layer,) = select_layers(b.build(y), 3)
    assert (layer.weight, layer.op, layer.axis, layer.nodes) == ("proj.weight", "MatMul", 0,
                                                                 ("proj",))
