"""The serving engine's mechanism: continuous batching with chunked prefill and greedy decoding,
plus co-served LoRA finetuning. `step(plan)` executes one iteration exactly as planned; which
tokens go into an iteration is the scheduler's policy (`mlc.compiler.plan.coserve.scheduler`).

Inference always runs on the *base* model (LoRA off), so the adapter being finetuned never
changes served outputs. Finetuning tokens go through the same layers in the same iteration but
as a separate packed group (they need autograd and the adapter); keeping the inference group's
matmuls unchanged makes inference outputs bit-identical with or without co-served finetuning."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .finetune import FinetuneJob
from .kv_cache import KVCache
from .model import LlamaModel, Segment


@dataclass(frozen=True)
class Request:
    """An inference request: prompt token ids, tokens to generate, arrival (trace seconds)."""

    id: str
    prompt: list[int]
    max_new_tokens: int
    arrival: float = 0.0


@dataclass
class RequestState:
    """A request's progress and timestamps (engine clock seconds)."""

    request: Request
    arrived_at: float
    cache: KVCache | None
    prefilled: int = 0
    output: list[int] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    finished_at: float | None = None

    @property
    def context(self) -> int:
        """Tokens in the KV cache: prompt prefilled so far plus fed-back outputs."""
        return self.prefilled + max(len(self.output) - 1, 0)

    def latencies(self) -> dict:
        """ttft, tpot (mean seconds per output token after the first) and e2e, in seconds."""
        first, count = self.token_times[0], len(self.token_times)
        last = self.token_times[-1]
        return {"id": self.request.id, "prompt_tokens": len(self.request.prompt),
                "output_tokens": count, "ttft": first - self.arrived_at,
                "tpot": (last - first) / (count - 1) if count > 1 else 0.0,
                "e2e": last - self.arrived_at}


@dataclass(frozen=True)
class StepResult:
    """What one iteration did: new tokens by request, requests finished, its wall seconds,
    tokens by kind, KV entries inference attended (each sequence's cached plus new tokens),
    and the finetuning work done."""

    tokens: dict[str, int]
    finished: list[str]
    seconds: float
    decode_tokens: int
    prefill_tokens: int
    finetune_tokens: int
    backward_layers: int
    context: int

    @property
    def inference_tokens(self) -> int:
        return self.decode_tokens + self.prefill_tokens


class ServingEngine:
    """Requests join with `add_request`, advance with `step(plan)`, and leave when done.

    `plan` is any object with the scheduler's IterationPlan fields: decode (request ids),
    prefill ((request id, chunk tokens) pairs), finetune_tokens, backward_layers."""

    def __init__(self, model: LlamaModel, finetune: FinetuneJob | None = None,
                 clock=time.perf_counter, keep_logits: bool = False):
        self.model, self.finetune, self.clock = model, finetune, clock
        self.keep_logits = keep_logits
        self.active: dict[str, RequestState] = {}
        self.finished: dict[str, RequestState] = {}

    def add_request(self, request: Request, arrived_at: float | None = None) -> None:
        """Admit a request (ids must be unique); its latencies count from `arrived_at`."""
        if request.id in self.active or request.id in self.finished:
            raise ValueError(f"duplicate request id {request.id!r}")
        if not request.prompt or request.max_new_tokens < 1:
            raise ValueError(f"request {request.id!r} needs a prompt and max_new_tokens >= 1")
        when = self.clock() if arrived_at is None else arrived_at
        self.active[request.id] = RequestState(request, when, self.model.new_cache())

    def decode_ready(self) -> list[tuple[str, int]]:
        """(request id, KV length its next decode attends: cached tokens + 1) of requests whose
        prompt is fully prefilled."""
        return [(rid, s.context + 1) for rid, s in self.active.items()
                if s.prefilled == len(s.request.prompt)]

    def prefill_waiting(self) -> list[tuple[str, int, int]]:
        """(request id, remaining prompt tokens, tokens cached), in admission order."""
        return [(rid, len(s.request.prompt) - s.prefilled, s.prefilled)
                for rid, s in self.active.items() if s.prefilled < len(s.request.prompt)]

    @property
    def idle(self) -> bool:
        return not self.active and (self.finetune is None or self.finetune.done)

    def step(self, plan) -> StepResult:
        """Run one iteration: decode plan.decode, prefill plan.prefill chunks, then
        plan.finetune_tokens forward tokens and plan.backward_layers backward layers of the
        finetuning job.

        Requires: decode ids are decode-ready; prefill chunks do not exceed what is left.
        Ensures: a prefill chunk that completes its prompt yields the first output token."""
        started = self.clock()
        segments, emits, context = self._inference_segments(plan)
        tokens: dict[str, int] = {}
        if segments:
            caches = {s.seq_id: self.active[s.seq_id].cache for s in segments}
            with torch.no_grad():
                logits = self.model.forward_segments(segments, caches, lora=False)
            ends = torch.tensor([len(s.token_ids) for s in segments]).cumsum(0) - 1
            for rid, row in zip(emits, ends.tolist()):
                if rid is not None:
                    tokens[rid] = int(logits[row].argmax())
                    if self.keep_logits:
                        self.active[rid].logits.append(logits[row].clone())
        finetune_tokens = backward_layers = 0
        if self.finetune is not None:
            finetune_tokens = self.finetune.forward_chunk(plan.finetune_tokens)
            backward_layers = self.finetune.backward_layers(plan.backward_layers)
        ended = self.clock()
        finished = self._record(tokens, ended)
        return StepResult(tokens, finished, ended - started, len(plan.decode),
                          sum(count for _, count in plan.prefill), finetune_tokens,
                          backward_layers, context)

    def _inference_segments(self, plan) -> tuple[list[Segment], list[str | None], int]:
        """Segments to run, the request each segment's last logits emit a token for (None for
        a prefill chunk that leaves prompt tokens), and the KV entries they attend (cached plus
        new tokens, summed over segments)."""
        segments, emits, context = [], [], 0
        ready = {rid for rid, _ in self.decode_ready()}
        for rid in plan.decode:
            if rid not in ready:
                raise ValueError(f"plan decodes {rid!r}, which is not running decode")
            state = self.active[rid]
            segments.append(Segment(rid, [state.output[-1]]))
            emits.append(rid)
            context += state.context + 1
        for rid, count in plan.prefill:
            state = self.active.get(rid)
            left = 0 if state is None else len(state.request.prompt) - state.prefilled
            if count < 1 or count > left:
                raise ValueError(f"plan prefills {count} tokens of {rid!r}, which has {left}")
            segments.append(Segment(rid, state.request.prompt[state.prefilled:
                                                              state.prefilled + count]))
            state.prefilled += count
            context += state.prefilled
            emits.append(rid if state.prefilled == len(state.request.prompt) else None)
        return segments, emits, context

    def _record(self, tokens: dict[str, int], when: float) -> list[str]:
        finished = []
        for rid, token in tokens.items():
            state = self.active[rid]
            state.output.append(token)
            state.token_times.append(when)
            if len(state.output) >= state.request.max_new_tokens:
                state.finished_at, state.cache = when, None
                self.finished[rid] = self.active.pop(rid)
                finished.append(rid)
        return finished
