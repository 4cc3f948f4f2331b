"""Plan loading and validation for `mlc train`, and the stage sub-graphs (no processes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pipeline_models import (
    CHAIN_EDGES,
    CHAIN_STAGES,
    DAG_EDGES,
    DAG_STAGES,
    WIDTH,
    branchy_graph,
    write_artifact,
)

from mlc.compiler.errors import MlcError
from mlc.compiler.ir.serialize import save_graph
from mlc.runtime.pipeline import default_order, load_plan, stage_specs
from mlc.runtime.pipeline.launch import check_runnable
from mlc.runtime.pipeline.training import compare, load_data


def test_valid_dag_plan_and_stage_graphs(tmp_path):
    graph, plan = load_plan(write_artifact(tmp_path, branchy_graph(), DAG_STAGES, DAG_EDGES))
    assert plan.num_micro_batches == 4 and plan.world_size == 4
    specs = stage_specs(graph, plan)
    assert specs[0].data_inputs == ("x",) and specs[0].sends == (("relu0", 3),)
    assert set(specs[0].graph.weights) == {"w0"}
    head = specs[3]
    assert [v for v, _ in head.receives] == ["relu0", "relu1", "relu2"]
    assert head.loss_output == "head" and set(head.graph.weights) == {"w_head"}
    assert head.graph.types["relu0"].shape == (2, WIDTH)  # micro-batch sized


def test_default_order_is_1f1b():
    assert default_order(4, 2) == ["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3"]
    assert default_order(2, 5) == ["F0", "F1", "B0", "B1"]


def _error(tmp_path, op_lists=DAG_STAGES, edges=DAG_EDGES, **changes) -> str:
    directory = write_artifact(tmp_path / "a", branchy_graph(), op_lists, edges, **changes)
    with pytest.raises(MlcError) as info:
        check_runnable(str(directory))
    return str(info.value)


def test_plan_for_another_model(tmp_path):
    directory = write_artifact(tmp_path, branchy_graph(), DAG_STAGES, DAG_EDGES)
    save_graph(dataclasses.replace(branchy_graph(), name="other"), directory)
    with pytest.raises(MlcError, match="plan file is for another model"):
        load_plan(directory)


@pytest.mark.parametrize("op_lists, edges, message", [
    ([["mm0", "relu0", "nope"], *DAG_STAGES[1:]], DAG_EDGES, "unknown op 'nope'"),
    ([["mm0", "relu0", "mm1"], *DAG_STAGES[1:]], DAG_EDGES, "'mm1' is in stage 0 and stage 1"),
    ([["mm0"], *DAG_STAGES[1:]], DAG_EDGES, "1 op(s) in no stage: relu0"),
    (DAG_STAGES, [[0, 3], [1, 3]], "no edge (2, 3)"),
    (DAG_STAGES, [[0, 3], [1, 3], [2, 3], [3, 1]], "goes backwards"),
    ([DAG_STAGES[3], *DAG_STAGES[:3]], [[1, 0], [2, 0], [3, 0]], "goes backwards"),
])
def test_plan_errors(tmp_path, op_lists, edges, message):
    assert message in _error(tmp_path, op_lists, edges)


def test_rank_errors(tmp_path):
    stages = [{"id": i, "ops": ops, "devices": [0], "micro_batch": 2}
              for i, ops in enumerate(CHAIN_STAGES)]
    assert "exactly one stage" in _error(tmp_path, CHAIN_STAGES, CHAIN_EDGES, stages=stages)
    stages = [{"id": 0, "ops": CHAIN_STAGES[0], "devices": [0, 1, 2], "micro_batch": 2},
              {"id": 1, "ops": CHAIN_STAGES[1], "devices": [3], "micro_batch": 2}]
    assert "stage 0 has 3 devices (data parallel), which do not divide the micro-batch 2" in \
        _error(tmp_path, CHAIN_STAGES, CHAIN_EDGES, stages=stages, devices=4)
    assert "says 5 devices" in _error(tmp_path, CHAIN_STAGES, CHAIN_EDGES, devices=5)


def test_schedule_errors(tmp_path):
    deadlock = {"0": ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3"],
                "1": ["F0", "F1", "F2", "F3", "B0", "B1", "B2", "B3"]}
    assert "deadlocks" in _error(tmp_path, CHAIN_STAGES, CHAIN_EDGES, order=deadlock)
    missing = {"0": ["F0", "F1", "B0", "B1"], "1": default_order(4, 1)}
    assert "stage 0: schedule" in _error(tmp_path, CHAIN_STAGES, CHAIN_EDGES, order=missing)
    assert "does not divide" in _error(tmp_path, CHAIN_STAGES, CHAIN_EDGES, micro_batch=3)


def test_missing_plan_file(tmp_path):
    save_graph(branchy_graph(), tmp_path)
    with pytest.raises(MlcError, match="plan.json: no such file"):
        load_plan(tmp_path)


def test_compare_flags_a_wrong_gradient():
    grads = {"w": np.ones((2, 2))}
    assert compare(1.0, grads, 1.0 + 1e-7, {"w": np.ones((2, 2))})["ok"]
    wrong = compare(1.0, {"w": np.full((2, 2), 1.001)}, 1.0, grads)
    assert not wrong["ok"] and wrong["max_grad_rel_error"] > 1e-5
    assert compare(1.0, {}, 1.0, grads)["missing_grads"] == ["w"]


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((8, 16), np.float32)}, "exactly one of `labels`"),
    ({"targets": np.zeros((8, 4), np.float32)}, "missing model input(s) ['x']"),
    ({"x": np.zeros((8, 15), np.float32), "labels": np.zeros(8)}, "'x' has shape (8, 15)"),
    ({"x": np.zeros((6, 16), np.float32), "labels": np.zeros(6)}, "a multiple of the batch 8"),
])
def test_bad_training_data(tmp_path, arrays, message):
    np.savez(tmp_path / "data.npz", **arrays)
    with pytest.raises(MlcError) as info:
        load_data(branchy_graph(), 8, str(tmp_path / "data.npz"), seed=0)
    assert message in str(info.value)


def test_data_parallel_stage_graphs_use_replica_rows(tmp_path):
    directory = write_artifact(tmp_path, branchy_graph(), DAG_STAGES, DAG_EDGES, micro_batch=4,
                               degrees=[1, 1, 1, 2])
    graph, plan = load_plan(directory)
    assert plan.world_size == 5 and plan.stages[3].devices == (3, 4)
    specs = check_runnable(str(directory)) and stage_specs(graph, plan)
    assert specs[0].graph.types["relu0"].shape == (4, WIDTH)
    assert specs[3].graph.types["relu0"].shape == (2, WIDTH)  # half a micro-batch per replica
