"""GraphPipe-style pipeline partitioning: split a model's operator DAG into a DAG of pipeline
stages (cost model, series-parallel decomposition, DP planner, sequential baseline, 1F1B-DAG
scheduler and simulator, plan files). Import-light: no torch."""
