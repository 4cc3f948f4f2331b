"""A Llama-style decoder in torch for the serving engine: RMSNorm, RoPE, grouped-query attention
over a per-sequence KV cache, SwiGLU MLP, and LoRA adapters on every projection.

One forward runs a packed batch of *segments*, each a sequence's new tokens: decode tokens (one
each) and prefill chunks share the projections and MLP matmuls. Attention reads each sequence's
cached prefix plus a causal mask inside its chunk; all decode tokens attend in one padded batch,
each longer chunk on its own.

    >>> model = LlamaModel.from_config("tiny-llama", seed=0)
    >>> caches = {"a": model.new_cache()}
    >>> model.forward_segments([Segment("a", [1, 2, 3])], caches).shape
    torch.Size([3, 256])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mlc.compiler.plan.models import ModelConfig, load_model_config

from .kv_cache import KVCache

ROPE_THETA = 10000.0   # Llama-2 default; the bundled configs carry no rope field
NORM_EPS = 1e-5


@dataclass(frozen=True)
class Segment:
    """New tokens of one sequence in a packed forward."""

    seq_id: str
    token_ids: list[int]


@dataclass(frozen=True)
class Span:
    """Where a segment's tokens sit in the packed batch, and its sequence's cache."""

    start: int
    length: int
    cache: KVCache


class LoraLinear(nn.Module):
    """y = W x + (alpha / rank) * B (A x); W frozen, only A and B train. B starts at zero, so
    a fresh adapter leaves the output unchanged."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float,
                 generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        weight = (torch.rand(out_features, in_features, generator=generator) * 2 - 1) * bound
        self.weight = nn.Parameter(weight, requires_grad=False)
        lora_a = (torch.rand(rank, in_features, generator=generator) * 2 - 1) * bound
        self.lora_a = nn.Parameter(lora_a)
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor, lora: bool) -> torch.Tensor:
        out = x @ self.weight.t()
        if lora:
            out = out + self.scale * ((x @ self.lora_a.t()) @ self.lora_b.t())
        return out


class RMSNorm(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * self.weight


def apply_rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotate (tokens, heads, head_dim) by each token's position, Hugging Face Llama layout
    (first half / second half of head_dim form the pairs)."""
    half = x.shape[-1] // 2
    inv_freq = ROPE_THETA ** (-torch.arange(0, half, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    cos = torch.cat([angles.cos(), angles.cos()], -1)[:, None, :]
    sin = torch.cat([angles.sin(), angles.sin()], -1)[:, None, :]
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class DecoderLayer(nn.Module):
    """RMSNorm -> GQA attention -> residual -> RMSNorm -> SwiGLU MLP -> residual."""

    PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def __init__(self, config: ModelConfig, index: int, rank: int, alpha: float,
                 generator: torch.Generator):
        super().__init__()
        self.index, self.heads, self.kv_heads = index, config.heads, config.kv_heads
        self.head_dim = config.head_dim
        attn, kv = config.heads * config.head_dim, config.kv_heads * config.head_dim
        shapes = {"q_proj": (config.hidden, attn), "k_proj": (config.hidden, kv),
                  "v_proj": (config.hidden, kv), "o_proj": (attn, config.hidden),
                  "gate_proj": (config.hidden, config.ffn), "up_proj": (config.hidden, config.ffn),
                  "down_proj": (config.ffn, config.hidden)}
        for name in self.PROJECTIONS:
            setattr(self, name, LoraLinear(*shapes[name], rank, alpha, generator))
        self.input_layernorm = RMSNorm(config.hidden)
        self.post_attention_layernorm = RMSNorm(config.hidden)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, spans: list[Span],
                lora: bool) -> torch.Tensor:
        """x: (tokens, hidden) packed segments; appends each span's K, V to its cache."""
        h = self.input_layernorm(x)
        tokens = x.shape[0]
        q = apply_rope(self.q_proj(h, lora).view(tokens, self.heads, self.head_dim), positions)
        k = apply_rope(self.k_proj(h, lora).view(tokens, self.kv_heads, self.head_dim),
                       positions)
        v = self.v_proj(h, lora).view(tokens, self.kv_heads, self.head_dim)
        attended: list[torch.Tensor | None] = [None] * len(spans)
        # decode spans (one token each) share one padded attention; chunks attend alone
        groups = [[i for i, s in enumerate(spans) if s.length == 1]]
        groups += [[i] for i, s in enumerate(spans) if s.length > 1]
        for group in filter(None, groups):
            chunks = [(spans[i].start, spans[i].start + spans[i].length) for i in group]
            cached = [spans[i].cache.extend(self.index, k[a:b], v[a:b])
                      for i, (a, b) in zip(group, chunks)]
            outputs = self._attend([q[a:b] for a, b in chunks], [kv[0] for kv in cached],
                                   [kv[1] for kv in cached])
            for i, output in zip(group, outputs):
                attended[i] = output
        x = x + self.o_proj(torch.cat(attended), lora)
        h = self.post_attention_layernorm(x)
        gated = nn.functional.silu(self.gate_proj(h, lora)) * self.up_proj(h, lora)
        return x + self.down_proj(gated, lora)

    def _attend(self, queries: list[torch.Tensor], keys: list[torch.Tensor],
                values: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per sequence b: queries[b] (n_b, heads, d) are its newest n_b tokens, keys[b] and
        values[b] (m_b, kv_heads, d) its whole cache, m_b >= n_b; returns (n_b, heads * d).
        Sequences are padded into one batch; a query sees keys up to its own position."""
        pad = nn.utils.rnn.pad_sequence
        group, dim = self.heads // self.kv_heads, self.head_dim
        new = torch.tensor([q.shape[0] for q in queries])
        total = torch.tensor([k.shape[0] for k in keys])
        batch, rows, cols = len(queries), int(new.max()), int(total.max())
        # (batch, kv_heads, group, rows, d): query head h reads KV head h // group
        q = pad(queries, batch_first=True).view(batch, rows, self.kv_heads, group, dim)
        q = q.permute(0, 2, 3, 1, 4)
        k = pad(keys, batch_first=True).permute(0, 2, 1, 3).unsqueeze(2)
        v = pad(values, batch_first=True).permute(0, 2, 1, 3).unsqueeze(2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim)
        query_pos = (total - new)[:, None, None] + torch.arange(rows)[None, :, None]
        key_pos = torch.arange(cols)[None, None, :]
        visible = (key_pos <= query_pos) & (key_pos < total[:, None, None])  # key 0 always
        weights = torch.softmax(scores.masked_fill(~visible[:, None, None], float("-inf")), -1)
        out = (weights @ v).permute(0, 3, 1, 2, 4).reshape(batch, rows, self.heads * dim)
        return [out[b, :n] for b, n in enumerate(new.tolist())]


class LlamaModel(nn.Module):
    """Embedding, decoder layers, final RMSNorm, untied LM head; float32 weights."""

    def __init__(self, config: ModelConfig, seed: int = 0, lora_rank: int = 8,
                 lora_alpha: float = 16.0):
        super().__init__()
        if config.heads % config.kv_heads:
            raise ValueError(f"{config.name}: heads {config.heads} not a multiple of kv_heads")
        generator = torch.Generator().manual_seed(seed)
        self.config = config
        self.embed_tokens = nn.Parameter(
            torch.randn(config.vocab, config.hidden, generator=generator) * 0.5,
            requires_grad=False)
        self.layers = nn.ModuleList(DecoderLayer(config, i, lora_rank, lora_alpha, generator)
                                    for i in range(config.layers))
        self.norm = RMSNorm(config.hidden)
        self.lm_head = nn.Parameter(
            torch.randn(config.vocab, config.hidden, generator=generator) / config.hidden ** 0.5,
            requires_grad=False)

    @classmethod
    def from_config(cls, name: str, seed: int = 0, lora_rank: int = 8,
                    lora_alpha: float = 16.0) -> LlamaModel:
        """Random weights from `seed` for the bundled config `name` (MlcError if unknown)."""
        return cls(load_model_config(name), seed, lora_rank, lora_alpha)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.layers))

    def lora_parameters(self) -> list[nn.Parameter]:
        """The trainable adapter tensors (A and B of every projection), in a fixed order."""
        return [p for name, p in self.named_parameters() if "lora_" in name]

    def base_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if "lora_" not in name]

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens[token_ids]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: (tokens, hidden) -> (tokens, vocab) logits."""
        return self.norm(x) @ self.lm_head.t()

    def forward_segments(self, segments: list[Segment], caches: dict[str, KVCache],
                         lora: bool = False) -> torch.Tensor:
        """Logits (tokens, vocab) for the packed segments, in order.

        Requires: each segment's seq_id is in `caches` and appears once.
        Ensures: each cache grows by its segment's tokens in every layer."""
        x, positions, spans = self.pack(segments, caches)
        for layer in self.layers:
            x = layer(x, positions, spans, lora)
        return self.head(x)

    def pack(self, segments: list[Segment], caches: dict[str, KVCache]
             ) -> tuple[torch.Tensor, torch.Tensor, list[Span]]:
        """Embedded tokens, positions and spans of a packed batch (positions continue from
        each sequence's cached length)."""
        ids, positions, spans, start = [], [], [], 0
        for segment in segments:
            cache = caches[segment.seq_id]
            cached, count = cache.cached_tokens(), len(segment.token_ids)
            ids.extend(segment.token_ids)
            positions.append(torch.arange(cached, cached + count))
            spans.append(Span(start, count, cache))
            start += count
        token_ids = torch.tensor(ids, dtype=torch.long)
        return self.embed(token_ids), torch.cat(positions), spans


def count_parameters(config: ModelConfig) -> int:
    """Base-model parameters of a Llama config with an untied LM head (no LoRA)."""
    attn, kv = config.heads * config.head_dim, config.kv_heads * config.head_dim
    per_layer = (2 * config.hidden * attn + 2 * config.hidden * kv
                 + 3 * config.hidden * config.ffn + 2 * config.hidden)
    return 2 * config.vocab * config.hidden + config.layers * per_layer + config.hidden
