"""The cost model: GPU specs and a roofline estimate of a µGraph's time, used to rank the
superoptimizer's candidates when no GPU is at hand (and to report beside measured times)."""

from .hardware import GpuSpec, gpu_from_dict, list_gpus, load_gpu
from .roofline import (
                       ESTIMATED,
                       LAUNCH_OVERHEAD_US,
                       MEASURED,
                       CostReport,
                       KernelCost,
                       estimate,
                       with_measurements,
)

__all__ = ["ESTIMATED", "LAUNCH_OVERHEAD_US", "MEASURED", "CostReport", "GpuSpec", "KernelCost",
           "estimate", "gpu_from_dict", "list_gpus", "load_gpu", "with_measurements"]
