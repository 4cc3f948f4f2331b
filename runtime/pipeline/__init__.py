"""Graph-pipeline training on torch.distributed: a partition plan's stages as processes.

`load_plan` validates DIR/plan.json against DIR/graph.json, `stage_specs` cuts the graph into
stage sub-graphs, `worker.run_rank` runs one rank, `launch.train` spawns every rank locally.
"""

from .launch import train
from .plan import PipelinePlan, Stage, default_order, graph_hash, load_plan
from .stages import StageSpec, stage_specs
from .training import TrainConfig

__all__ = ["PipelinePlan", "Stage", "StageSpec", "TrainConfig", "default_order", "graph_hash",
           "load_plan", "stage_specs", "train"]
