"""The shared IR: op table, typed graphs, JSON round-trip, and the numpy reference interpreter."""

from .graph import Graph, IRError, Node
from .interpreter import interpret
from .ops import OPS, OpDef
from .serialize import load_graph, save_graph
from .types import TensorType

__all__ = ["Graph", "IRError", "Node", "OPS", "OpDef", "TensorType", "interpret", "load_graph",
           "save_graph"]
