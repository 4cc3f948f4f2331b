"""Chunked, layer-by-layer LoRA finetuning against full-sequence torch autograd."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mlc.runtime.serve.engine import Request, ServingEngine
from mlc.runtime.serve.finetune import FinetuneJob
from mlc.runtime.serve.model import LlamaModel, Segment

SEQUENCE = [3, 141, 59, 26, 53, 58, 97, 93, 23, 84, 62, 64, 33, 83, 27, 95, 2, 88]


def adapted_model(seed: int = 1) -> LlamaModel:
    """A tiny model whose LoRA B matrices are nonzero, so every adapter tensor gets a gradient."""
    model = LlamaModel.from_config("tiny-llama", seed=seed, lora_rank=4)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lora_b"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


def full_sequence_reference(model: LlamaModel, tokens: list[int]):
    """Loss and LoRA gradients from one ordinary autograd pass over the whole sequence."""
    logits = model.forward_segments([Segment("ref", tokens[:-1])], {"ref": model.new_cache()},
                                    lora=True)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(tokens[1:]))
    return loss.item(), torch.autograd.grad(loss, model.lora_parameters())


def plan(decode=(), prefill=(), finetune_tokens=0, backward_layers=0):
    return SimpleNamespace(decode=list(decode), prefill=list(prefill),
                           finetune_tokens=finetune_tokens, backward_layers=backward_layers)


@pytest.mark.parametrize("chunks,layers_per_step", [([5, 1, 7, 4], 1), ([2] * 9, 2), ([17], 1)])
def test_chunked_finetuning_matches_full_sequence_autograd(chunks, layers_per_step):
    model = adapted_model()
    expected_loss, expected_grads = full_sequence_reference(model, SEQUENCE)
    # accumulation 2: one sequence leaves its gradients in place (no optimizer step yet)
    job = FinetuneJob(model, [SEQUENCE], accumulation=2)
    engine = ServingEngine(model, job)
    engine.add_request(Request("r", [10, 20, 30, 40, 50, 60], max_new_tokens=40))
    engine.step(plan(prefill=[("r", 6)], finetune_tokens=chunks[0]))
    for size in chunks[1:]:
        engine.step(plan(decode=["r"], finetune_tokens=size))
    while job.backward_left:
        assert engine.step(plan(decode=["r"], backward_layers=layers_per_step)).backward_layers
    assert job.done and job.steps == []
    assert job.sequence_losses[0] == pytest.approx(expected_loss, abs=1e-5)
    for param, expected in zip(model.lora_parameters(), expected_grads):
        assert torch.allclose(param.grad, expected, atol=1e-5)
    assert all(p.grad is None for p in model.base_parameters())


def test_scheduler_facing_counters_track_the_sequence():
    model = adapted_model()
    job = FinetuneJob(model, [SEQUENCE[:6], SEQUENCE])
    assert (job.remaining_forward, job.context, job.backward_left) == (5, 0, 0)
    assert job.forward_chunk(3) == 3
    assert (job.remaining_forward, job.context) == (2, 3)
    assert job.backward_layers(5) == 0  # forward not over yet: nothing to run backward
    assert job.forward_chunk(100) == 2
    assert (job.remaining_forward, job.backward_left) == (0, 2)
    assert job.forward_chunk(4) == 0
    assert job.backward_layers(5) == 2
    assert (job.remaining_forward, job.context, job.backward_left) == (17, 0, 0)
    assert len(job.steps) == 1 and not job.done


def test_finetuning_lowers_the_loss_on_a_repeated_sequence():
    model = LlamaModel.from_config("tiny-llama", seed=4, lora_rank=8)
    job = FinetuneJob(model, [SEQUENCE, SEQUENCE[::-1]], lr=1e-2, epochs=8)
    while not job.done:
        job.forward_chunk(6)
        job.backward_layers(1)
    losses = [step["loss"] for step in job.steps]
    assert len(losses) == 16
    assert sum(losses[-2:]) < 0.7 * sum(losses[:2])


def test_inference_is_bit_identical_with_and_without_cofinetuning():
    requests = [Request("a", [1, 2, 3, 4, 5, 6, 7], 6), Request("b", [9, 9, 8], 5)]
    plans = [plan(prefill=[("a", 4)], finetune_tokens=3),
             plan(prefill=[("a", 3), ("b", 3)], finetune_tokens=5),
             *[plan(decode=["a", "b"], finetune_tokens=4, backward_layers=1)] * 4,
             plan(decode=["a"], backward_layers=2)]

    def serve(with_finetune: bool):
        model = adapted_model(seed=7)
        job = FinetuneJob(model, [SEQUENCE] * 3, lr=0.05) if with_finetune else None
        engine = ServingEngine(model, job, keep_logits=True)
        for request in requests:
            engine.add_request(request)
        for step in plans:
            engine.step(step)
        assert with_finetune == bool(job and job.steps)  # the adapter really changed
        return {rid: (s.output, torch.stack(s.logits)) for rid, s in engine.finished.items()}

    plain, cofinetuned = serve(False), serve(True)
    assert plain.keys() == cofinetuned.keys() == {"a", "b"}
    for rid, (tokens, logits) in plain.items():
        assert tokens == cofinetuned[rid][0]
        assert torch.equal(logits, cofinetuned[rid][1])
