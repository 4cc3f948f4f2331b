"""Per-sequence KV cache: one growing (tokens, kv_heads, head_dim) key and value tensor per
layer. Simple tensors rather than pages; the serving engine frees a sequence's cache when the
request finishes."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of one sequence for every layer, post-RoPE.

    Finetuning caches hold tensors that are part of an autograd graph (not detached), so a
    later chunk's attention backpropagates into the earlier chunks that produced them."""

    def __init__(self, layers: int):
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers

    def cached_tokens(self, layer: int = 0) -> int:
        """Tokens already stored for `layer` (0 when empty)."""
        keys = self.keys[layer]
        return 0 if keys is None else keys.shape[0]

    def extend(self, layer: int, keys: torch.Tensor, values: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append a chunk's (n, kv_heads, head_dim) keys and values to `layer`; returns the
        whole cached prefix including the chunk."""
        if self.keys[layer] is not None:
            keys = torch.cat([self.keys[layer], keys])
            values = torch.cat([self.values[layer], values])
        self.keys[layer], self.values[layer] = keys, values
        return keys, values
