"""The serving model against independent references: Hugging Face's LlamaForCausalLM on the same
safetensors weights, and a full causal forward for KV-cache decode and chunked prefill."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mlc.compiler.errors import MlcError
from mlc.runtime.serve.model import LlamaModel, Segment
from mlc.runtime.serve.weights import hf_tensors, load_weights, save_weights

TOKENS = [5, 17, 200, 3, 99, 42, 7, 7, 128, 64, 1, 250, 33]


def full_logits(model: LlamaModel, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_segments([Segment("full", tokens)], {"full": model.new_cache()})


@pytest.fixture(scope="module")
def model() -> LlamaModel:
    return LlamaModel.from_config("tiny-llama", seed=3)


def test_matches_hugging_face_llama(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False, max_position_embeddings=128)
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(config).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              str(tmp_path / "hf.safetensors"))
    ours = load_weights(LlamaModel.from_config("tiny-llama"), tmp_path / "hf.safetensors")
    with torch.no_grad():
        expected = reference(torch.tensor([TOKENS])).logits[0]
    torch.testing.assert_close(full_logits(ours, TOKENS), expected, atol=1e-5, rtol=1e-5)


def test_kv_cache_decode_equals_full_causal_forward(model):
    expected = full_logits(model, TOKENS)
    cache = {"s": model.new_cache()}
    with torch.no_grad():
        rows = [model.forward_segments([Segment("s", [token])], cache) for token in TOKENS]
    torch.testing.assert_close(torch.cat(rows), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunks", [[4, 4, 5], [1, 7, 5], [12, 1]])
def test_chunked_prefill_equals_one_shot(model, chunks):
    expected = full_logits(model, TOKENS)
    cache, start, rows = {"s": model.new_cache()}, 0, []
    with torch.no_grad():
        for size in chunks:
            rows.append(model.forward_segments([Segment("s", TOKENS[start:start + size])], cache))
            start += size
    torch.testing.assert_close(torch.cat(rows), expected, atol=1e-5, rtol=0)


def test_packed_segments_equal_separate_sequences(model):
    other = [9, 8, 7, 6, 5]
    caches = {"a": model.new_cache(), "b": model.new_cache()}
    with torch.no_grad():
        model.forward_segments([Segment("a", TOKENS[:6])], caches)
        packed = model.forward_segments([Segment("b", other), Segment("a", TOKENS[6:8])], caches)
    torch.testing.assert_close(packed[:5], full_logits(model, other), atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[5:], full_logits(model, TOKENS[:8])[6:], atol=1e-5, rtol=0)


def test_safetensors_round_trip(tmp_path, model):
    save_weights(model, tmp_path / "w.safetensors")
    loaded = load_weights(LlamaModel.from_config("tiny-llama", seed=99), tmp_path / "w.safetensors")
    assert torch.equal(full_logits(loaded, TOKENS), full_logits(model, TOKENS))


def test_missing_or_misshaped_tensor_is_a_clear_error(tmp_path, model):
    tensors = {k: v.detach().clone() for k, v in hf_tensors(model).items()}
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(tmp_path / "missing.safetensors"))
    with pytest.raises(MlcError, match=r"missing tensor\(s\) model\.layers\.1\.mlp\.up_proj"):
        load_weights(LlamaModel.from_config("tiny-llama"), tmp_path / "missing.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(tmp_path / "shape.safetensors"))
    with pytest.raises(MlcError, match=r"up_proj.weight has shape \(3, 3\)"):
        load_weights(LlamaModel.from_config("tiny-llama"), tmp_path / "shape.safetensors")


def test_lora_adapter_starts_as_identity_and_only_adapters_train(model):
    assert all(not p.requires_grad for p in model.base_parameters())
    assert all(p.requires_grad for p in model.lora_parameters())
    with torch.no_grad():
        with_lora = model.forward_segments([Segment("s", TOKENS)], {"s": model.new_cache()},
                                           lora=True)
    assert torch.equal(with_lora, full_logits(model, TOKENS))
