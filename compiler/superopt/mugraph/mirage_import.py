"""Import Mirage's saved µGraphs (its checkpoint JSON) into our µGraph model.

A Mirage checkpoint is a list of candidates; each candidate is a list of kernel operators in
program order, wired by tensor guids (see MIRAGE-FORMAT.md in the shared notes). Library ops
and tile ops map onto LIBRARY_OPS and BLOCK_OPS through the tables below; an op type with no
equivalent is a MuGraphError naming the op type and the candidate, never a silent skip.

    >>> graphs = load_mirage_checkpoint("rmsnorm_bs1.json", input_names=("X", "W"))
    >>> graphs[0].ops[0].block.grid
    (256, 1, 1)
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from .model import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    KernelOp,
    MuGraph,
    block_shapes,
    kernel_shapes,
)
from .ops import MuGraphError
from .serialize import mugraph_from_json, mugraph_to_json

# ---- op tables: Mirage op type -> (our op, attributes) --------------------------------------

KERNEL_OPS: dict[str, tuple[str, dict]] = {
    "kn_matmul_op": ("MatMul", {}),
    # elementwise (numpy broadcasting, as in Mirage)
    "kn_exp_op": ("Exp", {}),
    "kn_sqrt_op": ("Sqrt", {}),
    "kn_silu_op": ("Silu", {}),
    "kn_add_op": ("Add", {}),
    "kn_mul_op": ("Mul", {}),
    "kn_div_op": ("Div", {}),
    # Mirage's kernel reductions keep the reduced dim as size 1, as ReduceSum does here
    "kn_reduction_0_op": ("ReduceSum", {"dim": 0}),
    "kn_reduction_1_op": ("ReduceSum", {"dim": 1}),
    "kn_reduction_2_op": ("ReduceSum", {"dim": 2}),
}

BLOCK_OPS_FROM_MIRAGE: dict[str, tuple[str, dict]] = {
    "tb_matmul_op": ("matmul", {}),
    # elementwise on tiles
    "tb_exp_op": ("exp", {}),
    "tb_square_op": ("square", {}),
    "tb_sqrt_op": ("sqrt", {}),
    "tb_silu_op": ("silu", {}),
    "tb_add_op": ("add", {}),
    "tb_mul_op": ("mul", {}),
    "tb_div_op": ("div", {}),
    # reductions and normalization within a tile
    "tb_reduction_0_op": ("reduce_sum", {"dim": 0}),
    "tb_reduction_1_op": ("reduce_sum", {"dim": 1}),
    "tb_reduction_2_op": ("reduce_sum", {"dim": 2}),
    "tb_rms_norm_op": ("rms_norm", {}),
    # for-loop accumulators
    "tb_accum_nored_op": ("accum_sum", {}),
    "tb_accum_red_ld_sum_op": ("accum_sum_ld", {}),
    "tb_accum_red_ld_rms_op": ("accum_rms_ld", {}),
    "tb_accum_redtox_ld_sum_op": ("accum_sum_todimx", {}),
}

# Mirage op types that exist but have no equivalent in our op tables (yet), and why.
UNSUPPORTED_OPS: dict[str, str] = {
    "kn_square_op": "LIBRARY_OPS has no Square",
    "kn_rms_norm_op": "LIBRARY_OPS has no RMS norm",
    "kn_allreduce_op": "multi-GPU collectives are not modelled",
    "tb_mul_scalar_op": "the checkpoint does not record the scalar",
    "tb_reduction_0_to_dimx_op": "BLOCK_OPS has no in-loop reduce-to-dimx",
    "tb_reduction_1_to_dimx_op": "BLOCK_OPS has no in-loop reduce-to-dimx",
    "tb_reduction_2_to_dimx_op": "BLOCK_OPS has no in-loop reduce-to-dimx",
    "tb_concat_0_op": "BLOCK_OPS has no concat",
    "tb_concat_1_op": "BLOCK_OPS has no concat",
    "tb_concat_2_op": "BLOCK_OPS has no concat",
    "tb_concat_then_matmul_op": "BLOCK_OPS has no concat_then_matmul",
    "tb_accum_red_ld_mean_op": "BLOCK_OPS has no accum_mean_ld",
    "tb_customized_op": "nested customized tile ops are not modelled",
}

DATA_TYPES = {920: "bfloat16", 921: "float16", 930: "float32"}


def _int(value, what: str) -> int:
    """An integer from the file: a JSON integer, never a bool or a float (no truncation)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MuGraphError(f"{what}: expected an integer, got {value!r}")
    return value


def _dims(tensor: dict) -> tuple[int, ...]:
    count = _int(tensor["num_dims"], "num_dims")
    if not 0 <= count <= len(tensor["dim"]):
        raise MuGraphError(f"num_dims {count} does not fit the {len(tensor['dim'])} dims")
    return tuple(_int(d, "dim") for d in tensor["dim"][:count])


def _triple(mapping: dict) -> tuple[int, int, int]:
    return tuple(_int(mapping[axis], f"map {axis}") for axis in "xyz")


def _row_major(dims: tuple[int, ...]) -> list[int]:
    strides, step = [], 1
    for size in reversed(dims):
        strides.insert(0, step)
        step *= size
    return strides


def _tile_record(tensor: dict) -> tuple[tuple[int, ...], bool]:
    return _dims(tensor), bool(tensor.get("after_accum", False))


def _unsupported(op_type: str) -> MuGraphError:
    reason = UNSUPPORTED_OPS.get(op_type, "unknown op type")
    return MuGraphError(f"Mirage op {op_type!r} has no µGraph equivalent ({reason})")


# ---- block level -------------------------------------------------------------------------------

def _block_input(op: dict, sources: list[int], taken: set[int], tile: str) -> BlockInput:
    """A tb_input_op: which kernel input it reads is found by the dtensor's guid."""
    guid = op["dtensor"]["guid"]
    matches = [n for n, g in enumerate(sources) if g == guid]
    if not matches:
        raise MuGraphError(f"tb_input_op reads tensor guid {guid}, which is not an input of "
                           "its customized op")
    # the same tensor fed twice: take the first position not yet read
    source = next((n for n in matches if n not in taken), matches[0])
    taken.add(source)
    return BlockInput(tile, source, _triple(op["input_map"]),
                      _int(op["forloop_dim"], "forloop_dim"))


def _block_graph(bgraph: dict, sources: list[int], outputs: list[int],
                 recorded: dict[str, tuple]) -> BlockGraph:
    """A kn_customized_op's bgraph; sources/outputs are the kernel op's tensor guids.

    Fills `recorded` with each tile's (dims, after_accum) from the file, to check ours against.
    """
    tiles: dict[int, str] = {}  # tile guid -> our tile name
    inputs, ops, saved = [], [], {}
    taken: set[int] = set()
    for op in bgraph["operators"]:
        op_type = op["op_type"]
        if op_type == "tb_input_op":
            name = f"in{len(inputs)}"
            inputs.append(_block_input(op, sources, taken, name))
            tiles[op["output_tensors"][0]["guid"]] = name
            recorded[name] = _tile_record(op["output_tensors"][0])
        elif op_type == "tb_output_op":
            tile = tiles[op["input_tensors"][0]["guid"]]
            saved[op["dtensor"]["guid"]] = BlockOutput(tile, _triple(op["output_map"]))
        elif op_type in BLOCK_OPS_FROM_MIRAGE:
            our_op, attrs = BLOCK_OPS_FROM_MIRAGE[op_type]
            missing = [t["guid"] for t in op["input_tensors"] if t["guid"] not in tiles]
            if missing:
                raise MuGraphError(f"{op_type} reads tile guid(s) {missing} before they exist")
            if len(op["output_tensors"]) != 1:
                raise MuGraphError(f"{op_type} has {len(op['output_tensors'])} outputs, not 1")
            name = f"t{len(ops)}"
            ops.append(BlockOp(our_op, tuple(tiles[t["guid"]] for t in op["input_tensors"]),
                               name, dict(attrs)))
            tiles[op["output_tensors"][0]["guid"]] = name
            recorded[name] = _tile_record(op["output_tensors"][0])
        else:
            raise _unsupported(op_type)
    unsaved = [g for g in outputs if g not in saved]
    if unsaved or len(saved) != len(outputs):
        raise MuGraphError(f"customized op outputs {outputs} and its tb_output_ops "
                           f"{list(saved)} do not match")
    grid = _triple(bgraph["grid_dim"])
    return BlockGraph(grid, _int(bgraph["forloop_range"], "forloop_range"), tuple(inputs),
                      tuple(ops), tuple(saved[g] for g in outputs),
                      _int(bgraph.get("reduction_dimx", 64), "reduction_dimx"),
                      _int(bgraph["block_dim"]["x"], "block_dim x"))


# ---- kernel level ------------------------------------------------------------------------------

def mugraph_from_mirage(candidate: list, name: str = "mirage",
                        input_names: tuple[str, ...] | None = None) -> MuGraph:
    """One Mirage candidate (a list of kernel operators) as a validated MuGraph.

    Inputs are named `input_names` in kn_input_op order (default in0, in1, ...); the outputs
    O (or O0, O1, ...); other kernel tensors T0, T1, ... Raises MuGraphError on op types
    without an equivalent, on non-row-major tensors, on broken guid wiring, and when a shape
    our rules infer differs from the one the file records.
    """
    n_inputs = sum(op.get("op_type") == "kn_input_op" for op in candidate)
    if input_names is not None and len(input_names) != n_inputs:
        raise MuGraphError(f"{n_inputs} kn_input_ops, but {len(input_names)} input names given")
    out_guids = [op["input_tensors"][0]["guid"] for op in candidate
                 if op["op_type"] == "kn_output_op"]
    names = {g: "O" if len(out_guids) == 1 else f"O{n}" for n, g in enumerate(out_guids)}
    recorded: dict[str, tuple[int, ...]] = {}  # kernel tensor -> dims in the file
    tile_records: dict[int, dict[str, tuple]] = {}  # kernel op -> tile -> (dims, after)
    inputs: dict[str, tuple[int, ...]] = {}
    ops: list[KernelOp] = []
    dtypes = set()
    numbers = itertools.count()

    def name_of(tensor: dict) -> str:
        if tensor["guid"] not in names:
            names[tensor["guid"]] = f"T{next(numbers)}"
        recorded.setdefault(names[tensor["guid"]], _dims(tensor))
        dtypes.add(tensor.get("data_type", 921))
        return names[tensor["guid"]]

    def tensors(op: dict, key: str) -> tuple[str, ...]:
        return tuple(name_of(t) for t in op[key])

    for op in candidate:
        op_type = op["op_type"]
        if op_type == "kn_input_op":
            tensor = op["output_tensors"][0]
            dims = _dims(tensor)
            if list(op.get("input_strides", _row_major(dims))) != _row_major(dims):
                raise MuGraphError(f"input {len(inputs)} has strides {op['input_strides']}; "
                                   "only row-major inputs are modelled")
            label = input_names[len(inputs)] if input_names else f"in{len(inputs)}"
            names[tensor["guid"]] = label
            inputs[label] = dims
            name_of(tensor)
        elif op_type == "kn_output_op":
            dims = _dims(op["input_tensors"][0])
            if list(op.get("output_strides", _row_major(dims))) != _row_major(dims):
                raise MuGraphError(f"output has strides {op['output_strides']}; only "
                                   "row-major outputs are modelled")
        elif op_type == "kn_customized_op":
            tile_records[len(ops)] = {}
            block = _block_graph(op["bgraph"], [t["guid"] for t in op["input_tensors"]],
                                 [t["guid"] for t in op["output_tensors"]],
                                 tile_records[len(ops)])
            ops.append(KernelOp("block", tensors(op, "input_tensors"),
                                tensors(op, "output_tensors"), block=block,
                                name=f"k{len(ops)}"))
        elif op_type in KERNEL_OPS:
            our_op, attrs = KERNEL_OPS[op_type]
            ops.append(KernelOp(our_op, tensors(op, "input_tensors"),
                                tensors(op, "output_tensors"), dict(attrs), name=f"k{len(ops)}"))
        else:
            raise _unsupported(op_type)
    if len(dtypes) > 1:
        raise MuGraphError(f"mixed data types {sorted(dtypes)} are not modelled")
    code = dtypes.pop() if dtypes else 921
    if code not in DATA_TYPES:
        raise MuGraphError(f"Mirage data type {code} is not modelled (known: {DATA_TYPES})")
    graph = MuGraph(name, inputs, tuple(ops), tuple(names[g] for g in out_guids),
                    DATA_TYPES[code])
    # our own loader's bounds (grid, loop, ranks, names) hold for imported graphs too
    graph = mugraph_from_json(mugraph_to_json(graph))
    _check_shapes(graph, recorded, tile_records)
    return graph


def _check_shapes(graph: MuGraph, recorded, tile_records) -> None:
    """Our rules must reproduce every shape Mirage recorded, and which tiles live after the
    loop (its after_accum); a difference means we misread the file."""
    shapes = kernel_shapes(graph)
    for tensor, dims in recorded.items():
        if shapes[tensor] != dims:
            raise MuGraphError(f"kernel tensor {tensor}: our rules give {shapes[tensor]}, "
                               f"the file records {dims}")
    for index, expected in tile_records.items():
        op = graph.ops[index]
        info = block_shapes(op.block, [shapes[t] for t in op.inputs])
        for tile, (dims, after) in expected.items():
            if info.tiles[tile] != dims:
                raise MuGraphError(f"kernel op #{index}: tile {tile}: our rules give "
                                   f"{info.tiles[tile]}, the file records {dims}")
            if (info.phase[tile] != "loop") != after:
                where = "in" if info.phase[tile] == "loop" else "after"
                raise MuGraphError(f"kernel op #{index}: tile {tile}: our rules compute it "
                                   f"{where} the loop, the file records after_accum={after}")


def _read(path) -> list:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise MuGraphError(f"{path}: cannot read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise MuGraphError(f"{path}: not JSON ({err})") from None
    if not isinstance(doc, list):
        raise MuGraphError(f"{path}: a Mirage checkpoint is a list of candidates")
    return doc


def _convert(path: Path, index: int, candidate, input_names) -> MuGraph:
    return convert_candidate(candidate, index, path.stem, input_names, path.name)


def convert_candidate(candidate, index: int, stem: str, input_names=None,
                      where: str | None = None) -> MuGraph:
    """Candidate `index` of a parsed checkpoint; any malformation (a missing key, a wrong
    type, a guid that is not there) is a MuGraphError naming the candidate (and `where`,
    the file, when given)."""
    where = f"{where}: " if where else ""
    try:
        if not isinstance(candidate, list) or not all(isinstance(op, dict) for op in candidate):
            raise MuGraphError("expected a list of operator objects")
        return mugraph_from_mirage(candidate, f"{stem}[{index}]", input_names)
    except MuGraphError as err:
        raise MuGraphError(f"{where}candidate {index}: {err}") from None
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        raise MuGraphError(f"{where}candidate {index}: malformed operator "
                           f"({type(err).__name__}: {err})") from None


def load_mirage_checkpoint(path, input_names: tuple[str, ...] | None = None) -> list[MuGraph]:
    """Every candidate of a Mirage checkpoint; the first that fails raises MuGraphError."""
    path = Path(path)
    return [_convert(path, n, c, input_names) for n, c in enumerate(_read(path))]


def import_mirage_checkpoint(path, input_names: tuple[str, ...] | None = None
                             ) -> tuple[dict[int, MuGraph], dict[int, MuGraphError]]:
    """Like load_mirage_checkpoint, but keeps going: (graphs, failures) by candidate index."""
    path = Path(path)
    graphs, failures = {}, {}
    for index, candidate in enumerate(_read(path)):
        try:
            graphs[index] = _convert(path, index, candidate, input_names)
        except MuGraphError as err:
            failures[index] = err
    return graphs, failures
