"""µGraphs: the kernel / block / thread program representation the superoptimizer works on."""

from .arith import FloatArith
from .interpreter import run_mugraph
from .model import (
                    NO_DIM,
                    BlockGraph,
                    BlockInput,
                    BlockOp,
                    BlockOutput,
                    KernelOp,
                    MuGraph,
                    block_shapes,
                    kernel_shapes,
    shared_memory_bytes,
    validate,
)
from .ops import BLOCK_OPS, LIBRARY_OPS, MuGraphError
from .serialize import load_mugraph, mugraph_from_json, mugraph_to_json, save_mugraph

__all__ = ["BLOCK_OPS", "LIBRARY_OPS", "NO_DIM", "BlockGraph", "BlockInput", "BlockOp",
           "BlockOutput", "FloatArith", "KernelOp", "MuGraph", "MuGraphError", "block_shapes",
           "kernel_shapes", "load_mugraph", "mugraph_from_json", "mugraph_to_json",
           "run_mugraph", "save_mugraph", "shared_memory_bytes", "validate"]
