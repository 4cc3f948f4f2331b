"""Serving plans: where and how LLMs run. `models` loads LLM configs from specs/models;
`coral` plans many LLMs over heterogeneous cloud GPUs at least cost."""
