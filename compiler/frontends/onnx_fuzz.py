"""Fuzzing the ONNX importer: break valid random models on purpose (`mutate`), and run any model
through mlc and onnxruntime (`evaluate`), classifying the result.

An outcome is one of: "matched" (mlc ran, onnxruntime ran, outputs agree), "mismatch" (both
ran, outputs differ: a wrong result), "ort_refused" (mlc ran a model onnxruntime refuses),
"clear_error" (mlc refused with an MlcError: the one acceptable failure), "internal_error"
(any other exception from mlc: a bug) and "too_large" (imported, but its tensors need more than
`max_bytes`, so the fuzzer does not run it). onnxruntime is only asked about models mlc ran.
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import MlcError

MUTATIONS = ("drop_input", "undefined_name", "cycle", "duplicate_output", "duplicate_input",
             "repeat_output", "elem_type", "dims", "attribute", "opset", "op_type", "truncate",
             "flip_bytes", "raw_data", "drop_node", "int_operand", "swap_inputs", "rank")
_BAD_INTS = (-(2**40), -99, -3, -1, 0, 1, 2, 7, 99, 2**31, 2**40)


@dataclass
class Outcome:
    kind: str  # matched | mismatch | ort_refused | clear_error | internal_error
    detail: str = ""


# ---- mutations ------------------------------------------------------------------------------

def mutate(model: onnx.ModelProto, rng: np.random.Generator, names=None):
    """(bytes of a broken copy of `model`, names of the mutations applied): the given MUTATIONS
    in order, or one or two drawn at random."""
    broken = copy.deepcopy(model)
    if names is None:
        names = [str(rng.choice(MUTATIONS)) for _ in range(int(rng.integers(1, 3)))]
    names = list(names)
    data = None
    for name in names:
        if name in ("truncate", "flip_bytes"):
            data = _mutate_bytes(broken.SerializeToString() if data is None else data, name, rng)
        elif data is None:
            _MUTATORS[name](broken, rng)
    return (broken.SerializeToString() if data is None else data), names


def _mutate_bytes(data: bytes, name: str, rng) -> bytes:
    if not data:
        return data
    if name == "truncate":
        return data[:int(rng.integers(0, len(data)))]
    raw = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
    return bytes(raw)


def _node(model, rng):
    nodes = model.graph.node
    return nodes[int(rng.integers(len(nodes)))] if len(nodes) else None


def _drop_input(model, rng):
    if len(model.graph.input):
        del model.graph.input[int(rng.integers(len(model.graph.input)))]


def _undefined_name(model, rng):
    node = _node(model, rng)
    if node is not None and len(node.input):
        node.input[int(rng.integers(len(node.input)))] = "ghost"


def _cycle(model, rng):
    node = _node(model, rng)
    if node is None or not len(node.input):
        return
    later = [n for n in model.graph.node if set(n.input) & set(node.output)]
    source = later[int(rng.integers(len(later)))] if later and rng.random() < 0.5 else node
    node.input[int(rng.integers(len(node.input)))] = source.output[0]


def _duplicate_output(model, rng):
    node = _node(model, rng)
    names = [v.name for v in model.graph.input] + [o for n in model.graph.node for o in n.output]
    if node is not None and names:
        node.output[0] = names[int(rng.integers(len(names)))]


def _duplicate_input(model, rng):
    if len(model.graph.input):
        model.graph.input.append(copy.deepcopy(model.graph.input[0]))


def _repeat_output(model, rng):
    model.graph.output.append(copy.deepcopy(model.graph.output[0]))


def _elem_type(model, rng):
    bad = int(rng.choice([0, TensorProto.STRING, TensorProto.INT64, TensorProto.DOUBLE,
                          TensorProto.BOOL, TensorProto.FLOAT16, TensorProto.COMPLEX64, 99]))
    if len(model.graph.initializer) and rng.random() < 0.4:
        model.graph.initializer[int(rng.integers(len(model.graph.initializer)))].data_type = bad
    elif len(model.graph.input):
        model.graph.input[0].type.tensor_type.elem_type = bad


def _dims(model, rng):
    if len(model.graph.initializer) and rng.random() < 0.4:
        tensor = model.graph.initializer[int(rng.integers(len(model.graph.initializer)))]
        if len(tensor.dims):
            tensor.dims[int(rng.integers(len(tensor.dims)))] = int(rng.choice(_BAD_INTS))
        return
    if len(model.graph.input) and len(model.graph.input[0].type.tensor_type.shape.dim):
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dim = dims[int(rng.integers(len(dims)))]
        if rng.random() < 0.2:
            dim.dim_param = "N"
        else:
            dim.dim_value = int(rng.choice(_BAD_INTS))


def _attribute(model, rng):
    nodes = [n for n in model.graph.node if len(n.attribute)]
    if not nodes or rng.random() < 0.2:
        node = _node(model, rng)
        if node is not None:
            node.attribute.append(helper.make_attribute("bogus", 3))
        return
    node = nodes[int(rng.integers(len(nodes)))]
    attr = node.attribute[int(rng.integers(len(node.attribute)))]
    choice = rng.integers(4)
    if choice == 0:
        node.attribute.remove(attr)
    elif choice == 1 and attr.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS):
        attr.i = int(rng.choice(_BAD_INTS))
        values = [int(rng.choice(_BAD_INTS)) for _ in range(int(rng.integers(0, 5)))]
        del attr.ints[:]
        attr.ints.extend(values)
    elif choice == 2:
        attr.type = int(rng.choice([onnx.AttributeProto.FLOAT, onnx.AttributeProto.STRING,
                                    onnx.AttributeProto.INTS, onnx.AttributeProto.TENSOR]))
    else:
        attr.f = float(rng.choice([np.nan, np.inf, -1.0, 1e30]))
        attr.s = b"\xff bogus"


def _opset(model, rng):
    entries = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if entries and rng.random() < 0.2:
        model.opset_import.remove(entries[0])
    elif entries:
        entries[0].version = int(rng.choice([-1, 0, 1, 5, 6, 7, 8, 10, 14, 16, 99, 2**40]))


def _op_type(model, rng):
    from .onnx_ops import CONVERTERS
    node = _node(model, rng)
    if node is not None:
        ops = sorted(CONVERTERS) + ["FooBar", ""]
        node.op_type = ops[int(rng.integers(len(ops)))]


def _raw_data(model, rng):
    tensors = [t for t in model.graph.initializer if t.HasField("raw_data")]
    if tensors:
        tensor = tensors[int(rng.integers(len(tensors)))]
        cut = int(rng.integers(0, len(tensor.raw_data) + 8))
        tensor.raw_data = (tensor.raw_data + b"\x00" * 8)[:cut]


def _drop_node(model, rng):
    if len(model.graph.node):
        del model.graph.node[int(rng.integers(len(model.graph.node)))]


def _int_operand(model, rng):
    """Out-of-range axes, indices, shapes: rewrite an int64 initializer's values."""
    tensors = [t for t in model.graph.initializer if t.data_type == TensorProto.INT64]
    if tensors:
        tensor = tensors[int(rng.integers(len(tensors)))]
        try:
            array = onnx.numpy_helper.to_array(tensor).copy()
        except ValueError:  # already broken by an earlier mutation
            return
        if array.size:
            array.flat[int(rng.integers(array.size))] = int(rng.choice(_BAD_INTS[1:-1]))
        tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))


def _swap_inputs(model, rng):
    node = _node(model, rng)
    if node is not None and len(node.input) > 1:
        names = list(node.input)[::-1]
        del node.input[:]
        node.input.extend(names)


def _rank(model, rng):
    if len(model.graph.input):
        model.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 3


_MUTATORS = {
    "drop_input": _drop_input, "undefined_name": _undefined_name, "cycle": _cycle,
    "duplicate_output": _duplicate_output, "duplicate_input": _duplicate_input,
    "repeat_output": _repeat_output, "elem_type": _elem_type, "dims": _dims,
    "attribute": _attribute, "opset": _opset, "op_type": _op_type, "raw_data": _raw_data,
    "drop_node": _drop_node, "int_operand": _int_operand, "swap_inputs": _swap_inputs,
    "rank": _rank,
}


# ---- running a model through mlc and onnxruntime ----------------------------------------------

def evaluate(data: bytes, feeds: dict[str, np.ndarray], workdir: Path,
             executors=("reference", "torch"), max_bytes: int = 2**28,
             onnxruntime_run=None) -> Outcome:
    """Import `data` (the bytes of an .onnx file) with mlc, run it with each executor and,
    when mlc ran, compare with onnxruntime on the same inputs.

    onnxruntime_run(data, feeds) -> outputs defaults to an in-process session; a caller that
    must survive onnxruntime crashing on a hostile model passes one that runs elsewhere."""
    from mlc.runtime import random_inputs, run

    from . import load_model

    path = Path(workdir) / "model.onnx"
    path.write_bytes(data)
    try:
        graph = load_model(path)
        size = sum(t.nbytes for t in graph.types.values())
        if size > max_bytes:
            return Outcome("too_large", f"its tensors need {size} bytes")
        if not _fits(graph, feeds):
            feeds = random_inputs(graph, 0)
        with np.errstate(all="ignore"):  # inf and nan results are compared, not warned about
            results = [list(run(graph, feeds, executor=e).values()) for e in executors]
    except MlcError as err:
        return Outcome("clear_error", str(err).splitlines()[0][:300])
    except Exception as err:  # what the fuzzer is looking for: an mlc bug
        return Outcome("internal_error", f"{type(err).__name__}: {err}"[:300] + "\n"
                       + "".join(traceback.format_exc(limit=-3)))
    try:
        want = (onnxruntime_run or run_onnxruntime)(data, feeds)
    except Exception as err:  # onnxruntime refuses or fails on it
        return Outcome("ort_refused", f"{type(err).__name__}: {str(err)[:300]}")
    for executor, got in zip(executors, results):
        problem = _compare(got, want)
        if problem:
            return Outcome("mismatch", f"{executor}: {problem}")
    return Outcome("matched")


def _fits(graph, feeds) -> bool:
    return set(feeds) == set(graph.inputs) and all(
        tuple(feeds[n].shape) == t.shape and t.dtype == "float32"
        for n, t in graph.inputs.items())


def run_onnxruntime(data: bytes, feeds):
    """onnxruntime's outputs for a model's bytes, on CPU, quietly."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # its warnings would drown the report
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _compare(got: list[np.ndarray], want: list[np.ndarray]) -> str:
    """'' when every output agrees (shape, and values within float32 tolerance)."""
    if len(got) != len(want):
        return f"{len(got)} outputs, onnxruntime gives {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape}, onnxruntime {w.shape}"
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        finite = np.isfinite(w64)
        scale = max(1.0, float(np.abs(w64[finite]).max())) if finite.any() else 1.0
        if not np.allclose(g64, w64, rtol=1e-3, atol=1e-4 * scale, equal_nan=True):
            diff = np.nan_to_num(np.abs(g64 - w64), nan=np.inf)
            return f"output {i}: max abs difference {float(diff.max()):.3g} (scale {scale:.3g})"
    return ""


def random_feeds(model: onnx.ModelProto, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal float32 feeds for a valid model's inputs (declared static shapes)."""
    initializers = {t.name for t in model.graph.initializer}
    return {v.name: rng.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim])
            .astype(np.float32) for v in model.graph.input if v.name not in initializers}
