"""Prism's symbolic superoptimization: sGraphs with symbolic grid, loop and tile sizes
(sgraph.py, dims.py), one search per workload structure (search.py), and instantiation per
concrete shape (instantiate.py)."""
