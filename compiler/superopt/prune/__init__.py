"""Abstract-expression pruning for the superoptimizer's search (Mirage OSDI'25 §4.3).

terms.py turns IR graphs, library ops, tile ops and whole µGraphs into abstract expressions;
space.py saturates the targets' e-graph once (egglog, rules.py) and answers `allows(term)`
(could this prefix still grow into the target?) by lookup.
"""

from .space import TargetSpace, canonical
from .terms import Term, ir_output_terms, library_term, mugraph_terms, show, tile_term, var

__all__ = ["Term", "TargetSpace", "canonical", "ir_output_terms", "library_term",
           "mugraph_terms", "show", "tile_term", "var"]
