"""Coral-style multi-LLM serving plans over heterogeneous cloud GPUs at least cost.

catalog (GPU types, prices, availability) -> perf (does a replica fit, its req/s at an SLO)
-> stage1 (enumerate + prune dominated replica configurations, per model, cacheable)
-> stage2 (MILP over replica counts: least cost, or most goodput when GPUs are scarce)
-> baselines, simulate, launch (vLLM commands); planner ties them together.
"""

from .catalog import GpuType, load_catalog, with_availability
from .perf import Efficiency, ReplicaConfig, Stage, Workload, estimate, homogeneous
from .planner import ServePlan, plan_serve
from .stage1 import Candidate, Stage1Result, prune_dominated, run_stage1
from .stage2 import Allocation, solve, solve_max_goodput, solve_min_cost

__all__ = ["Allocation", "Candidate", "Efficiency", "GpuType", "ReplicaConfig", "ServePlan",
           "Stage", "Stage1Result", "Workload", "estimate", "homogeneous", "load_catalog",
           "plan_serve", "prune_dominated", "run_stage1", "solve", "solve_max_goodput",
           "solve_min_cost", "with_availability"]
