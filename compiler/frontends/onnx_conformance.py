"""Run the ONNX backend node test cases (from the `onnx` package) through the importer and the
reference interpreter, for every op the ONNX frontend claims.

A case counts for an op when its model is that single op; multi-op cases (the `_expanded`
function bodies) count under "(multi-op)" when every op in them is claimed.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import MlcError
from ..ir.interpreter import interpret
from ..ir.types import dtype_name, is_float
from .onnx_frontend import StaticOperandError, import_onnx
from .onnx_ops import CONVERTERS


def collect_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases
        return collect_testcases()


def case_key(case) -> str | None:
    """The op a case tests, "(multi-op)", or None when it uses an op we do not claim."""
    ops = {n.op_type for n in case.model.graph.node}
    if not ops <= set(CONVERTERS):
        return None
    return ops.pop() if len(ops) == 1 else "(multi-op)"


def _close(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> bool:
    if got.shape != want.shape:
        return False
    if is_float(dtype_name(want.dtype)) or is_float(dtype_name(got.dtype)):
        return np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                           equal_nan=True)
    return np.array_equal(got, want)


def _array(value) -> np.ndarray:
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value)


def import_case(model, name: str, feeds: dict[str, np.ndarray]):
    """Import with the data set's shapes; inputs the IR needs constant (a Reshape's shape,
    a Slice's bounds) are bound to the data set's values, one at a time as the importer asks."""
    frozen: dict[str, np.ndarray] = {}
    while True:
        shapes = {k: tuple(np.shape(v)) for k, v in feeds.items() if k not in frozen}
        try:
            return import_onnx(model, name, input_shapes=shapes, constant_inputs=frozen), frozen
        except StaticOperandError as err:
            if err.value_name not in feeds or err.value_name in frozen:
                raise
            frozen[err.value_name] = feeds[err.value_name]


def run_case(case) -> tuple[bool, str]:
    """(passed, reason) for one backend test case."""
    graph_inputs = [i.name for i in case.model.graph.input
                    if i.name not in {t.name for t in case.model.graph.initializer}]
    try:
        for inputs, expected in case.data_sets:
            feeds = {k: _array(v) for k, v in zip(graph_inputs, inputs)}
            expected = [_array(v) for v in expected]
            graph, frozen = import_case(case.model, case.name, feeds)
            feeds = {k: v for k, v in feeds.items() if k not in frozen}
            with np.errstate(all="ignore"):
                outputs = interpret(graph, feeds, check_types=True)
            for got, want in zip(outputs.values(), expected):
                if not _close(np.asarray(got), np.asarray(want), max(case.rtol, 1e-4),
                              max(case.atol, 1e-6)):
                    return False, "mismatch"
    except MlcError as err:
        return False, f"rejected: {str(err)[:160]}"
    except Exception as err:  # a crash is a failure of ours, keep the reason
        return False, f"crash: {type(err).__name__}: {str(err)[:160]}"
    return True, ""


def run_all(cases=None) -> dict:
    """Per-op pass counts and the failing cases with reasons."""
    logging.getLogger("mlc").setLevel(logging.ERROR)  # old-opset notes would flood the output
    per_op = defaultdict(lambda: {"passed": 0, "total": 0})
    failures = []
    for case in cases if cases is not None else collect_cases():
        key = case_key(case)
        if key is None:
            continue
        ok, reason = run_case(case)
        per_op[key]["total"] += 1
        per_op[key]["passed"] += ok
        if not ok:
            failures.append({"case": case.name, "op": key, "reason": reason})
    passed = sum(v["passed"] for v in per_op.values())
    total = sum(v["total"] for v in per_op.values())
    return {"per_op": dict(sorted(per_op.items())), "passed": passed, "total": total,
            "failures": failures}
