"""Formal verification of µGraphs (Prism-style): lift a µGraph to a term over symbolic grid
and loop names, then prove it equal to the reference term by e-graph rewriting (egglog).
One proof covers every instantiation of the sizes; a failed proof means "not proven"."""

from .evaluate import EvaluationError, NamedValue, evaluate, plain
from .lift import LiftError, lift_mugraph, name_sizes, reference_terms
from .prove import MAX_ENODES, MAX_ITERATIONS, MAX_SECONDS, Proof, prove_mugraph, prove_terms
from .rules import FACTS, REWRITES, Fact, Rewrite
from .terms import SIGNATURES, Term, show

__all__ = ["FACTS", "MAX_ENODES", "MAX_ITERATIONS", "MAX_SECONDS", "REWRITES", "SIGNATURES",
           "EvaluationError", "Fact", "LiftError", "NamedValue", "Proof", "Rewrite", "Term",
           "evaluate", "lift_mugraph", "name_sizes", "plain", "prove_mugraph", "prove_terms",
           "reference_terms", "show"]
