"""vLLM launch commands for a plan's replicas, so the plan runs on an existing engine.

Homogeneous replicas fit one node (up to 8 GPUs): `vllm serve` with the TP and PP degrees.
Mixed-type pipelines span nodes through a Ray cluster (`--distributed-executor-backend ray`),
with the uneven layer split passed in `VLLM_PP_LAYER_PARTITION`. GPUs without bf16 (T4, V100)
serve in fp16.
"""

from __future__ import annotations

import shlex

from ..models import ModelConfig
from .catalog import GpuType
from .perf import ReplicaConfig, Workload


def vllm_command(model: ModelConfig, config: ReplicaConfig, workload: Workload, batch: int,
                 catalog: dict[str, GpuType], port: int = 8000) -> str:
    """One shell line that starts this replica with `vllm serve`."""
    tp = config.stages[0].tp
    args = ["vllm", "serve", model.hf_repo,
            "--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(config.pp),
            "--max-num-seqs", str(max(1, batch)),
            "--max-model-len", str(workload.prompt_tokens + workload.output_tokens),
            "--gpu-memory-utilization", "0.9", "--port", str(port)]
    if not all(catalog[stage.gpu].bf16 for stage in config.stages):
        args += ["--dtype", "float16"]
    env = []
    even = len({stage.layers for stage in config.stages}) == 1
    if config.mixed or not even:
        partition = ",".join(str(stage.layers) for stage in config.stages)
        env.append(f"VLLM_PP_LAYER_PARTITION={partition}")
    if config.mixed:
        args += ["--distributed-executor-backend", "ray"]
    return " ".join(env + [shlex.join(args)])


def node_layout(config: ReplicaConfig) -> list[dict]:
    """Which GPUs each node of the replica holds: one node for a homogeneous replica, one per
    GPU type for a mixed pipeline (stages of one type share a node)."""
    nodes: dict[str, dict] = {}
    for index, stage in enumerate(config.stages):
        node = nodes.setdefault(stage.gpu, {"gpu": stage.gpu, "gpus": 0, "stages": []})
        node["gpus"] += stage.tp
        node["stages"].append(index)
    return list(nodes.values())
