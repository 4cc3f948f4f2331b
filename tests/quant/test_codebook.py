"""Packed codebook weights: the bitstream, PackedWeight, and CodebookDequantize everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.ir import Graph, IRError, interpret, load_graph, save_graph
from mlc.compiler.ir.analysis import graph_stats
from mlc.compiler.quant.codebook import PackedWeight, pack_indices, unpack_indices
from mlc.runtime import run

BITS = list(range(1, 9))


# ---- the bitstream -----------------------------------------------------------------------------

@pytest.mark.parametrize("bits", BITS)
def test_pack_unpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    for count in [0, 1, 2, 3, 7, 9, 64, *rng.integers(1, 500, 6)]:
        indices = rng.integers(0, 2 ** bits, count)
        packed = pack_indices(indices, bits)
        assert packed.dtype == np.uint8 and packed.ndim == 1
        assert packed.size == -(-count * bits // 8)  # ceil, also when count*bits % 8 != 0
        unpacked = unpack_indices(packed, bits, count)
        assert unpacked.dtype == np.int64
        np.testing.assert_array_equal(unpacked, indices)


def test_bit_layout_is_little_endian_across_bytes():
    # 3-bit 5, 3, 7 -> stream value 5 | 3 << 3 | 7 << 6 = 0x1DD; the 7 straddles bytes 0 and 1
    np.testing.assert_array_equal(pack_indices(np.array([5, 3, 7]), 3), [0xDD, 0x01])
    np.testing.assert_array_equal(pack_indices(np.array([0, 1, 2, 3]), 2), [0b11100100])
    np.testing.assert_array_equal(pack_indices(np.array([1, 0, 0, 0, 0, 0, 0, 0, 1]), 1),
                                  [1, 1])
    np.testing.assert_array_equal(pack_indices(np.arange(4).reshape(2, 2), 8), [0, 1, 2, 3])


@pytest.mark.parametrize("bits", [0, 9, -1, 2.0])
def test_bad_bits_raise(bits):
    with pytest.raises(ValueError, match="bits"):
        pack_indices(np.zeros(4, np.int64), bits)
    if isinstance(bits, int):
        with pytest.raises(ValueError, match="bits"):
            unpack_indices(np.zeros(4, np.uint8), bits, 4)


def test_indices_that_do_not_fit_raise():
    with pytest.raises(ValueError, match="index 8 does not fit in 3 bits"):
        pack_indices(np.array([1, 8, 2]), 3)
    with pytest.raises(ValueError, match="index -1"):
        pack_indices(np.array([0, -1]), 4)
    with pytest.raises(ValueError, match="integers"):
        pack_indices(np.array([0.5]), 4)
    with pytest.raises(ValueError, match="fewer than 6 indices"):
        unpack_indices(np.zeros(2, np.uint8), 3, 6)


# ---- PackedWeight ------------------------------------------------------------------------------

def random_weight(shape, bits, axis=None, entries=None, seed=0) -> PackedWeight:
    rng = np.random.default_rng(seed)
    entries = entries or 2 ** bits
    rows = () if axis is None else (shape[axis],)
    codebook = rng.standard_normal(rows + (entries,)).astype(np.float32)
    return PackedWeight.from_indices(rng.integers(0, entries, shape), codebook, bits, axis)


def test_packed_weight_dequantizes_shared_and_per_channel():
    shared = random_weight((5, 7), 3)
    np.testing.assert_array_equal(shared.dequantize(), shared.codebook[shared.indices()])
    for axis in (0, 1, -1):
        weight = random_weight((4, 6, 5), 2, axis=axis, seed=1)
        index = weight.indices()
        channel = np.indices(index.shape)[axis % 3]
        dense = weight.dequantize()
        assert dense.dtype == np.float32 and dense.shape == (4, 6, 5)
        np.testing.assert_array_equal(dense, weight.codebook[channel, index])


def test_packed_weight_sizes():
    weight = random_weight((64, 33), 3)
    assert weight.packed.size == -(-64 * 33 * 3 // 8)
    assert weight.nbytes() == weight.packed.size + 8 * 4
    assert weight.compression_ratio() == pytest.approx(64 * 33 * 4 / weight.nbytes())
    per_channel = random_weight((64, 33), 4, axis=0)
    assert per_channel.nbytes() == 64 * 33 // 2 + 64 * 16 * 4


def test_packed_weight_rejects_inconsistent_parts():
    codebook = np.arange(4, dtype=np.float32)
    with pytest.raises(ValueError, match="past the codebook's 4 entries"):
        PackedWeight.from_indices(np.array([0, 4]), codebook, 3)
    with pytest.raises(ValueError, match="needs 3"):
        PackedWeight(np.zeros(2, np.uint8), codebook, 2, (3, 4))
    with pytest.raises(ValueError, match="should be"):
        PackedWeight.from_indices(np.zeros((3, 2), np.int64), codebook, 2, axis=0)
    with pytest.raises(ValueError, match="5 entries"):
        PackedWeight.from_indices(np.zeros(3, np.int64), np.zeros(5), 2)


# ---- CodebookDequantize in graphs ---------------------------------------------------------------

def quantized_matmul(weight: PackedWeight, batch: int = 3) -> tuple[Graph, str]:
    b = GraphBuilder("quantized_matmul")
    x = b.input("x", (batch, weight.shape[0]))
    y = b.op("MatMul", x, weight.add_to_graph(b, "w"))
    return b.build(y), y


CASES = [(bits, axis) for bits in (1, 2, 3, 4, 5, 8) for axis in (None, 0, 1)]


def _case(bits, axis):
    # 7 x 5 = 35 indices: 35 * bits is not a multiple of 8 for odd bits
    weight = random_weight((7, 5), bits, axis, seed=bits)
    graph, y = quantized_matmul(weight)
    x = np.random.default_rng(10 + bits).standard_normal((3, 7)).astype(np.float32)
    return graph, y, x, x @ weight.dequantize()


@pytest.mark.parametrize(("bits", "axis"), CASES)
def test_reference_and_torch_match_dense_matmul(bits, axis):
    graph, y, x, expected = _case(bits, axis)
    assert graph.types["w"].shape == (7, 5) and graph.types["w"].dtype == "float32"
    reference = interpret(graph, {"x": x}, check_types=True)[y]
    np.testing.assert_allclose(reference, expected, rtol=1e-6, atol=1e-6)
    torch_out = run(graph, {"x": x}, executor="torch")[y]
    np.testing.assert_allclose(torch_out, expected, rtol=1e-5, atol=1e-5)
    float64 = run(graph, {"x": x}, executor="torch", float64=True)[y]
    assert float64.dtype == np.float64
    np.testing.assert_allclose(float64, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("bits", "axis"), CASES)
def test_onnxruntime_matches_dense_matmul(bits, axis):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from mlc.compiler.onnx_export import to_onnx

    graph, y, x, expected = _case(bits, axis)
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    assert "CodebookDequantize" not in {node.op_type for node in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_onnx_dequantizes_rank_3_per_channel_exactly():
    ort = pytest.importorskip("onnxruntime")
    from mlc.compiler.onnx_export import to_onnx

    weight = random_weight((3, 4, 5), 3, axis=1, entries=6, seed=4)
    b = GraphBuilder("dequant")
    w = weight.add_to_graph(b, "w")
    graph = b.build(w)
    session = ort.InferenceSession(to_onnx(graph).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {})
    np.testing.assert_array_equal(got, weight.dequantize())


def test_torch_gradients_reach_the_codebook():
    torch = pytest.importorskip("torch")
    from mlc.runtime.torch_executor import TorchGraphModule

    weight = random_weight((6, 4), 2, seed=2)
    graph, y = quantized_matmul(weight)
    module = TorchGraphModule(graph)
    x = np.random.default_rng(3).standard_normal((3, 6)).astype(np.float32)
    module(x=torch.from_numpy(x))[y].sum().backward()
    codebook = module.weight_tensors()["w.codebook"]
    # d sum(x @ W) / d W[i, j] = sum_b x[b, i]; each entry collects the W[i, j] that use it
    per_element = np.broadcast_to(x.sum(0)[:, None], (6, 4))
    expected = np.bincount(weight.indices().ravel(), per_element.ravel(), minlength=4)
    np.testing.assert_allclose(codebook.grad.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_graph_round_trips_through_json_and_safetensors(tmp_path):
    weight = random_weight((7, 5), 3, axis=1)
    graph, y = quantized_matmul(weight)
    save_graph(graph, tmp_path)
    again = load_graph(tmp_path / "graph.json")
    assert (tmp_path / "weights.safetensors").is_file()
    assert again.weights["w.packed"].dtype == np.uint8
    assert again.nodes[0].attrs == graph.nodes[0].attrs
    x = np.ones((3, 7), np.float32)
    np.testing.assert_array_equal(interpret(again, {"x": x})[y], interpret(graph, {"x": x})[y])


def test_stats_count_packed_bytes_and_no_flops():
    weight = random_weight((64, 32), 4)
    graph, _ = quantized_matmul(weight)
    stats = graph_stats(graph)
    assert stats["weight_bytes"] == weight.nbytes()
    assert stats["flops"] == 2 * 3 * 64 * 32  # the MatMul's only


# ---- shape inference errors --------------------------------------------------------------------

def _dequant_graph(packed, codebook, **attrs):
    b = GraphBuilder("bad")
    node = b.op("CodebookDequantize", b.weight("packed", packed), b.weight("codebook", codebook),
                name="fc1.dequant", **attrs)
    return b.build(node)


def test_wrong_packed_length_names_the_node_and_the_sizes():
    with pytest.raises(IRError, match=r"node 'fc1\.dequant' \(CodebookDequantize\): packed has "
                                      r"4 bytes, but 12 indices of 3 bits .* need "
                                      r"ceil\(12\*3/8\) = 5"):
        _dequant_graph(_bytes(4), _codebook(8), bits=3, shape=[3, 4])


def _bytes(n):
    return np.zeros(n, np.uint8)


def _codebook(*shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize(("packed", "codebook", "attrs", "message"), [
    (np.zeros(5), _codebook(8), {"bits": 3, "shape": [3, 4]}, "must be uint8"),
    (_bytes(5), np.zeros(8, np.int32), {"bits": 3, "shape": [3, 4]}, "float"),
    (_bytes(5), _codebook(9), {"bits": 3, "shape": [3, 4]}, "9 entries"),
    (_bytes(6), _codebook(8), {"bits": 4, "shape": [3, 4], "axis": 0}, r"\[3, K\]"),
    (_bytes(6), _codebook(4, 8), {"bits": 4, "shape": [3, 4], "axis": 0}, r"\[3, K\]"),
    (_bytes(6), _codebook(3, 8), {"bits": 4, "shape": [3, 4]}, "rank 1"),
    (_bytes(6), _codebook(8), {"bits": 9, "shape": [3, 4]}, "1..8"),
    (_bytes(6), _codebook(3, 8), {"bits": 4, "shape": [3, 4], "axis": 2}, "axis 2"),
])
def test_shape_rule_rejects_bad_operands(packed, codebook, attrs, message):
    with pytest.raises(IRError, match=message):
        _dequant_graph(packed, codebook, **attrs)


def test_missing_attributes_are_reported():
    with pytest.raises(IRError, match="needs attribute 'shape'"):
        _dequant_graph(_bytes(2), _codebook(4), bits=2)
