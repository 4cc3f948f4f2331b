"""Token-level LoRA finetuning that shares serving iterations with inference (FlexLLM).

A finetuning sequence runs *forward* in token chunks of any size: each chunk goes through every
layer, its keys and values join the sequence's KV cache (not detached, so a later chunk's
attention backpropagates into earlier chunks), and the LM-head loss of the chunk is
differentiated at once down to the last layer's output. Each layer's input is a detached leaf,
so every layer owns a separate autograd graph. The *backward* then runs a few layers per
iteration, last layer first: one `torch.autograd.backward` over the layer's outputs for all
chunks yields the LoRA gradients and the gradients of the layer's input leaves, which seed the
layer below. Base weights are frozen and never get gradients.

Gradients are summed over `accumulation` sequences (each sequence's loss is its mean next-token
cross-entropy), averaged, and applied by Adam to the LoRA tensors only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mlc.compiler.errors import MlcError

from .kv_cache import KVCache
from .model import LlamaModel, Segment

_SEQ_ID = "finetune"


@dataclass
class _LayerPiece:
    """One chunk's pass through one layer: its input leaf (None for layer 0, whose input is the
    frozen embedding) and its output."""

    leaf: torch.Tensor | None
    output: torch.Tensor


@dataclass
class _ActiveSequence:
    tokens: list[int]
    layers: int
    cache: KVCache | None = None
    forwarded: int = 0
    pieces: list[list[_LayerPiece]] = field(default_factory=list)
    output_grads: list[torch.Tensor] = field(default_factory=list)
    loss: float = 0.0
    backward_left: int = 0

    @property
    def forward_total(self) -> int:
        """Input tokens: every token but the last, which is only a target."""
        return len(self.tokens) - 1


class FinetuneJob:
    """LoRA finetuning over `sequences` (each >= 2 token ids), `epochs` passes, driven by the
    serving engine through `forward_chunk` and `backward_layers`."""

    def __init__(self, model: LlamaModel, sequences: list[list[int]], lr: float = 1e-3,
                 accumulation: int = 1, epochs: int = 1):
        if any(len(seq) < 2 for seq in sequences):
            raise ValueError("every finetuning sequence needs at least 2 tokens")
        self.model = model
        self.queue = [list(seq) for _ in range(epochs) for seq in sequences]
        self.accumulation = accumulation
        self.optimizer = torch.optim.Adam(model.lora_parameters(), lr=lr)
        self.sequence_losses: list[float] = []
        self.steps: list[dict] = []
        self.forward_tokens = 0
        self._active: _ActiveSequence | None = None
        self._pending_losses: list[float] = []

    # What is left, in the scheduler's terms

    @property
    def done(self) -> bool:
        return self._active is None and not self.queue

    @property
    def remaining_forward(self) -> int:
        """Tokens of the current (or next) sequence still to run forward."""
        active = self._active
        if active is None:
            return len(self.queue[0]) - 1 if self.queue else 0
        return active.forward_total - active.forwarded

    @property
    def context(self) -> int:
        """Tokens of the current sequence already in its KV cache."""
        return 0 if self._active is None else self._active.forwarded

    @property
    def backward_left(self) -> int:
        """Layers still to run backward; nonzero only once the forward has ended."""
        return 0 if self._active is None else self._active.backward_left

    # Mechanism

    def forward_chunk(self, max_tokens: int) -> int:
        """Run up to `max_tokens` of the current sequence forward (starting the next sequence
        if none is active); returns the tokens run (0 if the forward is over or no data)."""
        if max_tokens <= 0 or self.remaining_forward == 0:
            return 0
        if self._active is None:
            self._active = self._start(self.queue.pop(0))
        seq = self._active
        count = min(max_tokens, seq.forward_total - seq.forwarded)
        begin = seq.forwarded
        with torch.enable_grad():
            x, positions, spans = self.model.pack(
                [Segment(_SEQ_ID, seq.tokens[begin:begin + count])], {_SEQ_ID: seq.cache})
            for index, layer in enumerate(self.model.layers):
                leaf = None if index == 0 else x.detach().requires_grad_(True)
                x = layer(x if leaf is None else leaf, positions, spans, lora=True)
                seq.pieces[index].append(_LayerPiece(leaf, x))
            top = x.detach().requires_grad_(True)
            targets = torch.tensor(seq.tokens[begin + 1:begin + count + 1], dtype=torch.long)
            loss = torch.nn.functional.cross_entropy(self.model.head(top), targets,
                                                     reduction="sum") / seq.forward_total
            (grad,) = torch.autograd.grad(loss, top)
        seq.output_grads.append(grad)
        seq.loss += loss.item()
        seq.forwarded += count
        self.forward_tokens += count
        if seq.forwarded == seq.forward_total:
            seq.backward_left = seq.layers
        return count

    def backward_layers(self, max_layers: int) -> int:
        """Run up to `max_layers` layers of the finished forward's backward, last layer first;
        returns the layers run. When layer 0 is done the sequence's loss is recorded and, every
        `accumulation` sequences, Adam steps on the averaged LoRA gradients."""
        seq, ran = self._active, 0
        while seq is not None and seq.backward_left > 0 and ran < max_layers:
            index = seq.backward_left - 1
            pieces = seq.pieces[index]
            torch.autograd.backward([p.output for p in pieces], seq.output_grads)
            seq.output_grads = [p.leaf.grad for p in pieces] if index > 0 else []
            seq.pieces[index] = []
            seq.backward_left -= 1
            ran += 1
        if seq is not None and seq.forwarded == seq.forward_total and seq.backward_left == 0:
            self._finish(seq)
        return ran

    def _start(self, tokens: list[int]) -> _ActiveSequence:
        layers = len(self.model.layers)
        return _ActiveSequence(tokens, layers, self.model.new_cache(),
                               pieces=[[] for _ in range(layers)])

    def _finish(self, seq: _ActiveSequence) -> None:
        self._active = None
        if not math.isfinite(seq.loss):  # reporting "loss nan" and exiting 0 would lie
            raise MlcError(f"finetuning diverged: the loss of sequence "
                           f"{len(self.sequence_losses) + 1} is {seq.loss} after "
                           f"{len(self.steps)} optimizer step(s); lower the learning rate "
                           "(--lr) or check the base weights")
        self.sequence_losses.append(seq.loss)
        self._pending_losses.append(seq.loss)
        if len(self._pending_losses) < self.accumulation:
            return
        for param in self.model.lora_parameters():
            if param.grad is not None:
                param.grad /= len(self._pending_losses)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps.append({"step": len(self.steps) + 1,
                           "loss": sum(self._pending_losses) / len(self._pending_losses),
                           "sequences": len(self._pending_losses)})
        self._pending_losses = []
