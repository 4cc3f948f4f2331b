"""A small LLM serving engine in torch: Llama-style decoder with KV cache and LoRA adapters,
continuous batching with chunked prefill, and token-level LoRA finetuning co-served with
inference."""
