"""SP decomposition invariants, the in-flight rule, 1F1B orders and the simulator by hand."""

from __future__ import annotations

import pytest

from mlc.compiler.frontends.builder import GraphBuilder
from mlc.compiler.partition.cost import StageCost
from mlc.compiler.partition.schedule import in_flight, one_f_one_b, simulate
from mlc.compiler.partition.sp import graph_sp_tree, op_dag
from mlc.specs.workloads import get_workload


def _not_sp_graph():
    """The 'N' graph (a -> c, a -> d, b -> d, b -> e): not series-parallel."""
    g = GraphBuilder("n_graph")
    x = g.input("X", (2, 4))
    a, b = g.op("Relu", x, name="a"), g.op("Exp", x, name="b")
    c, d, e = g.op("Neg", a, name="c"), g.op("Add", a, b, name="d"), g.op("Sigmoid", b, name="e")
    return g.build(g.op("Concat", c, d, e, axis=-1, name="out"))


def _check_tree(node, succ):
    if node.kind == "leaf":
        return
    for child in node.children:
        _check_tree(child, succ)
    sets = [set(c.ops) for c in node.children]
    if node.kind == "parallel":
        for i, left in enumerate(sets):
            for j, right in enumerate(sets):
                if i != j:
                    assert not any(succ[op] & right for op in left), "parallel branches linked"
    else:
        for i, piece in enumerate(sets):
            for op in piece:
                for later in succ[op]:
                    idx = next((k for k, s in enumerate(sets) if later in s), None)
                    assert idx is None or idx >= i, "series edge goes backwards"


@pytest.mark.parametrize("spec", ["multibranch_small", "mmt:small", "dlrm:small",
                                  "candle_uno:small"])
def test_sp_tree_reconstructs_graph(spec):
    graph = get_workload(spec)
    order, succ, _ = op_dag(graph)
    tree = graph_sp_tree(graph)
    assert list(tree.ops) == order
    _check_tree(tree, succ)


def test_branches_become_parallel():
    tree = graph_sp_tree(get_workload("multibranch_small"))
    assert tree.kind == "series" and tree.children[0].kind == "parallel"
    assert len(tree.children[0].children) == 3


def test_non_sp_graph_is_made_sp():
    graph = _not_sp_graph()
    order, succ, _ = op_dag(graph)
    tree = graph_sp_tree(graph)
    assert sorted(tree.ops) == sorted(order)
    _check_tree(tree, succ)


def test_in_flight_is_longest_path_to_sink():
    assert in_flight(4, [(0, 1), (1, 2), (2, 3)]) == [4, 3, 2, 1]
    assert in_flight(4, [(0, 1), (0, 2), (1, 3), (2, 3), (0, 3)]) == [3, 2, 2, 1]
    assert in_flight(5, [(0, 4), (1, 2), (2, 4), (3, 4)]) == [2, 3, 2, 2, 1]


def test_one_f_one_b_order():
    assert one_f_one_b(2, 4) == ["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3"]
    assert one_f_one_b(5, 2) == ["F0", "F1", "B0", "B1"]


class _StubModel:
    """Stage costs set by hand: forward 1 s, backward 2 s, free links."""

    edges: dict = {}

    class machine:  # noqa: N801 - mimics the Machine attribute
        @staticmethod
        def link_time(nbytes):
            return 0.0

    def stage_cost(self, ops, degree, micro_batch, num_micro):
        return StageCost(1.0, 2.0, 0.0, 0.0, 100.0, 10.0, micro_batch, num_micro)


def test_simulator_two_stage_chain_by_hand():
    orders = [one_f_one_b(2, 4), one_f_one_b(1, 4)]
    sim = simulate(_StubModel(), [("a",), ("b",)], [1, 1], [(0, 1)], 2, 8, orders)
    # (M + S - 1) * (F + B) = (4 + 1) * 3 for a synchronous 1F1B chain
    assert sim.iteration_seconds == pytest.approx(15.0)
    assert sim.throughput == pytest.approx(8 / 15.0)
    assert sim.peak_memory == [120.0, 110.0]  # static + in-flight x activations
    assert [t[:2] for t in sim.tasks[0]] == [("F", 0), ("F", 1), ("B", 0), ("F", 2),
                                              ("B", 1), ("F", 3), ("B", 2), ("B", 3)]
    assert sim.tasks[0][2][2:] == (4.0, 6.0)  # B0 on stage 0 waits for stage 1's B0
