"""The superoptimizer: µGraphs (kernel / block / thread levels), their interpreters, verification,
cost model, and (later) the search that finds them."""
