"""The superoptimizer's search: candidate generators from shapes and the GPU spec, a canonical
depth-first enumeration of µGraphs pruned by abstract expressions, sizing and split-reduction
variants of what it finds, and the parallel, time-budgeted, cached driver that verifies and
ranks them."""

from .driver import Candidate, SearchResult, cache_key, search
from .enumerate import Counts, Enumerator, Program
from .generators import GeneratorConfig, Schedule, dim_labels, schedules

__all__ = ["Candidate", "Counts", "Enumerator", "GeneratorConfig", "Program", "Schedule",
           "SearchResult", "cache_key", "dim_labels", "schedules", "search"]
