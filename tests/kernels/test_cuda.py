"""CUDA renderer: generated sources compile with nvcc (sm_80, sm_90), match golden files, keep
model names out, respect the shared-memory limit, and compute what the µGraph interpreter
computes (CPU emulation here; CuPy on a GPU)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlc.compiler.superopt.mugraph import (
    BLOCK_OPS,
    LIBRARY_OPS,
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    FloatArith,
    KernelOp,
    MuGraph,
    MuGraphError,
    run_mugraph,
)
from mlc.kernels.cuda import (
    BLOCK_EMIT,
    HELPERS_DIR,
    LIBRARY_EMIT,
    CudaCompileError,
    compile_cuda,
    render_cuda,
    render_module,
)
from mlc.kernels.cuda.cexpr import broadcast_index
from mlc.kernels.cuda.emulate import build_cpu_library, emulate_module, emulate_mugraph

GOLDEN = Path(__file__).parent / "golden"
NO_NVCC = "nvcc is not on PATH: CUDA compile checks need the CUDA toolkit"
NO_HOST_CXX = "no g++/clang++ on PATH: CPU emulation of generated CUDA needs one"
R = -1  # replicate / no loop dim


# ---- µGraphs under test ----------------------------------------------------------------------

def rmsnorm_matmul(rows=2, width=256, cols=384, grid=16, loop=8):
    """Mirage's fused RMSNorm+MatMul: normalize after the matmul."""
    block = BlockGraph(
        grid=(grid, 1, 1), forloop_range=loop,
        inputs=(BlockInput("x", 0, (R, R, R), 1), BlockInput("w", 1, (1, R, R), 0)),
        ops=(BlockOp("accum_rms_ld", ("x",), "r"), BlockOp("matmul", ("x", "w"), "xw"),
             BlockOp("accum_sum", ("xw",), "acc"), BlockOp("div", ("acc", "r"), "y")),
        outputs=(BlockOutput("y", (1, R, R)),))
    return MuGraph("rmsnorm", {"X": (rows, width), "W": (width, cols)},
                   (KernelOp("block", ("X", "W"), ("Y",), block=block),), ("Y",))


def gated_mlp(rows=8, width=4096, cols=4096, grid=64, loop=64):
    """silu(X W1) * (X W3), both products accumulated over the loop."""
    block = BlockGraph(
        grid=(grid, 1, 1), forloop_range=loop,
        inputs=(BlockInput("x", 0, (R, R, R), 1), BlockInput("w1", 1, (1, R, R), 0),
                BlockInput("w3", 2, (1, R, R), 0)),
        ops=(BlockOp("matmul", ("x", "w1"), "a1"), BlockOp("matmul", ("x", "w3"), "a3"),
             BlockOp("accum_sum", ("a1",), "s1"), BlockOp("accum_sum", ("a3",), "s3"),
             BlockOp("silu", ("s1",), "g"), BlockOp("mul", ("g", "s3"), "y")),
        outputs=(BlockOutput("y", (1, R, R)),))
    return MuGraph("gated_mlp", {"X": (rows, width), "W1": (width, cols), "W3": (width, cols)},
                   (KernelOp("block", ("X", "W1", "W3"), ("Y",), block=block),), ("Y",))


def lora(rows=16, width=1024, cols=4096, rank=16, grid=128):
    """X W + (X A) B: a library MatMul for X A, then one loop of rank steps walking W's rows
    and B's rows together."""
    block = BlockGraph(
        grid=(grid, 1, 1), forloop_range=rank,
        inputs=(BlockInput("x", 0, (R, R, R), 1), BlockInput("w", 1, (1, R, R), 0),
                BlockInput("xa", 2, (R, R, R), 1), BlockInput("b", 3, (1, R, R), 0)),
        ops=(BlockOp("matmul", ("x", "w"), "xw"), BlockOp("matmul", ("xa", "b"), "xab"),
             BlockOp("add", ("xw", "xab"), "sum"), BlockOp("accum_sum", ("sum",), "y")),
        outputs=(BlockOutput("y", (1, R, R)),))
    return MuGraph("lora", {"X": (rows, width), "W": (width, cols), "A": (width, rank),
                            "B": (rank, cols)},
                   (KernelOp("MatMul", ("X", "A"), ("XA",)),
                    KernelOp("block", ("X", "W", "XA", "B"), ("Y",), block=block)), ("Y",))


def _attention_ops(scale):
    return (BlockOp("matmul", ("q", "k"), "s"), BlockOp("mul_scalar", ("s",), "ss",
                                                        {"scale": scale}),
            BlockOp("accum_max_ld", ("ss",), "m"), BlockOp("sub", ("ss", "m"), "z"),
            BlockOp("exp", ("z",), "e"), BlockOp("accum_sum_ld_rescale", ("e", "m"), "l"),
            BlockOp("matmul", ("e", "v"), "ev"), BlockOp("accum_sum_rescale", ("ev", "m"), "o"))


def attention(heads=2, queries=256, dim=64, keys=4096, q_blocks=4, loop=64):
    """Online-softmax attention, one kernel; K is given transposed (heads, dim, keys)."""
    block = BlockGraph(
        grid=(heads, q_blocks, 1), forloop_range=loop,
        inputs=(BlockInput("q", 0, (0, 1, R)), BlockInput("k", 1, (0, R, R), 2),
                BlockInput("v", 2, (0, R, R), 1)),
        ops=_attention_ops(dim ** -0.5) + (BlockOp("div", ("o", "l"), "y"),),
        outputs=(BlockOutput("y", (0, 1, R)),))
    return MuGraph("attention", {"Q": (heads, queries, dim), "K": (heads, dim, keys),
                                 "V": (heads, keys, dim)},
                   (KernelOp("block", ("Q", "K", "V"), ("O",), block=block),), ("O",))


def split_kv_attention(heads=2, queries=256, dim=64, keys=4096, q_blocks=4, splits=4,
                       loop=16):
    """Flash-decoding: kernel 0 writes per-split partial outputs, row sums and row maxima;
    kernel 1 walks the splits and merges them with the same online rescaling."""
    partial = BlockGraph(
        grid=(heads, q_blocks, splits), forloop_range=loop,
        inputs=(BlockInput("q", 0, (0, 1, R)), BlockInput("k", 1, (0, R, 2), 2),
                BlockInput("v", 2, (0, R, 1), 1)),
        ops=_attention_ops(dim ** -0.5),
        outputs=(BlockOutput("o", (0, 1, 2)), BlockOutput("l", (0, 1, 2)),
                 BlockOutput("m", (0, 1, 2))))
    merge = BlockGraph(
        grid=(heads, q_blocks, 1), forloop_range=splits,
        inputs=(BlockInput("p", 0, (0, 1, R), 2), BlockInput("pl", 1, (0, 1, R), 2),
                BlockInput("pm", 2, (0, 1, R), 2)),
        ops=(BlockOp("accum_max_ld", ("pm",), "gm"), BlockOp("sub", ("pm", "gm"), "d"),
             BlockOp("exp", ("d",), "w"), BlockOp("mul", ("p", "w"), "pw"),
             BlockOp("mul", ("pl", "w"), "lw"), BlockOp("accum_sum_rescale", ("pw", "gm"), "num"),
             BlockOp("accum_sum_rescale", ("lw", "gm"), "den"),
             BlockOp("div", ("num", "den"), "y")),
        outputs=(BlockOutput("y", (0, 1, R)),))
    return MuGraph("split_kv", {"Q": (heads, queries, dim), "K": (heads, dim, keys),
                                "V": (heads, keys, dim)},
                   (KernelOp("block", ("Q", "K", "V"), ("P", "L", "M"), block=partial),
                    KernelOp("block", ("P", "L", "M"), ("O",), block=merge)), ("O",))


def library_chain():
    """Library ops only: softmax(A B) with a broadcast divide, plus a mean."""
    return MuGraph("lib", {"A": (4, 8), "B": (8, 6)}, (
        KernelOp("MatMul", ("A", "B"), ("C",)), KernelOp("Exp", ("C",), ("E",)),
        KernelOp("ReduceSum", ("E",), ("S",), {"dim": -1}), KernelOp("Div", ("E", "S"), ("P",)),
        KernelOp("ReduceMean", ("P",), ("Q",), {"dim": 0})), ("P", "Q"))


def tile_op_zoo():
    """The tile ops the other graphs leave out: square, neg, sqrt, mul_scalar, both reduction
    kinds (row and strided), rms_norm, accum_sum_ld and accum_sum_todimx."""
    block = BlockGraph(
        grid=(2, 1, 1), forloop_range=2, reduction_dimx=16,
        inputs=(BlockInput("x", 0, (0, R, R), 1),),
        ops=(BlockOp("square", ("x",), "sq"), BlockOp("reduce_sum", ("sq",), "rs"),
             BlockOp("reduce_max", ("x",), "cm", {"dim": 0}), BlockOp("neg", ("cm",), "n"),
             BlockOp("add", ("x", "n"), "a"), BlockOp("accum_sum_todimx", ("a",), "t"),
             BlockOp("accum_sum_ld", ("rs",), "l"), BlockOp("sqrt", ("l",), "s"),
             BlockOp("mul_scalar", ("s",), "sc", {"scale": 0.5}),
             BlockOp("mul", ("t", "sc"), "y"), BlockOp("rms_norm", ("x",), "rn"),
             BlockOp("accum_sum", ("rn",), "z")),
        outputs=(BlockOutput("y", (0, R, R)), BlockOutput("z", (0, R, R))))
    return MuGraph("zoo", {"X": (8, 64)},
                   (KernelOp("block", ("X",), ("Y", "Z"), block=block),), ("Y", "Z"))


MIRAGE_SIZE = {  # compiled only
    "rmsnorm_matmul": lambda: rmsnorm_matmul(2, 4096, 6144, grid=256, loop=32),
    "gated_mlp": gated_mlp,
    "lora": lora,
    "attention": attention,
    "split_kv_attention": split_kv_attention,
}
SMALL = {  # compiled and run
    "rmsnorm_matmul": rmsnorm_matmul,
    "gated_mlp": lambda: gated_mlp(4, 64, 96, grid=3, loop=4),
    "lora": lambda: lora(8, 64, 64, rank=4, grid=2),
    "attention": lambda: attention(2, 16, 8, 64, q_blocks=2, loop=4),
    "split_kv_attention": lambda: split_kv_attention(2, 16, 8, 64, q_blocks=2, splits=2, loop=2),
    "library_chain": library_chain,
    "tile_op_zoo": tile_op_zoo,
}
COMPILES = [("rmsnorm_matmul", "sm_80"), ("rmsnorm_matmul", "sm_90"), ("attention", "sm_80"),
            ("attention", "sm_90"), ("gated_mlp", "sm_90"), ("lora", "sm_90"),
            ("split_kv_attention", "sm_90")]


def random_inputs(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)
            for name, shape in graph.inputs.items()}


def _compile_together(graphs: dict, arch: str, workdir: Path) -> dict:
    """nvcc is slow: compile all graphs as one translation unit (distinct symbol prefixes);
    only when that fails compile each alone, so the failure lands on the right test."""
    sources, results = {}, {}
    for n, (key, graph) in enumerate(graphs.items()):
        try:
            sources[key] = render_cuda(graph, prefix=f"m{n}")
        except MuGraphError as err:
            results[key] = err
    try:
        obj = compile_cuda("\n".join(sources.values()), arch=arch, workdir=workdir)
        return {**results, **dict.fromkeys(sources, obj)}
    except CudaCompileError:
        for key, source in sources.items():
            try:
                results[key] = compile_cuda(source, arch=arch, workdir=workdir)
            except CudaCompileError as err:
                results[key] = err
        return results


@pytest.fixture(scope="session")
def mirage_objects(tmp_path_factory):
    if shutil.which("nvcc") is None:
        pytest.skip(NO_NVCC)
    workdir = tmp_path_factory.mktemp("cuda_mirage")
    results = {}
    for arch in sorted({arch for _, arch in COMPILES}):
        graphs = {(name, a): MIRAGE_SIZE[name]() for name, a in COMPILES if a == arch}
        results.update(_compile_together(graphs, arch, workdir))
    return results


# ---- structure -------------------------------------------------------------------------------

def test_emission_tables_cover_every_op():
    assert set(BLOCK_EMIT) == set(BLOCK_OPS)
    assert set(LIBRARY_EMIT) == set(LIBRARY_OPS)


@pytest.mark.parametrize("out, operand, expected", [
    ((2, 24), (2, 24), "i"),
    ((2, 24), (2, 1), "i / 24"),
    ((2, 24), (1, 24), "i % 24"),
    ((2, 24), (1,), "0"),
    ((1, 8, 8), (1, 8, 1), "i / 8"),
    ((2, 3, 4), (2, 1, 4), "(i / 12) * 4 + i % 4"),
])
def test_broadcast_index(out, operand, expected):
    assert broadcast_index(out, operand) == expected


def test_attention_source_shape():
    source = render_cuda(MIRAGE_SIZE["attention"]())
    assert source.count("__global__") == 1 and "cudaFuncSetAttribute" in source  # > 48 KiB
    assert "mlc::row_running_max<64, 64>" in source
    assert "for (int it = 0; it < 64; ++it)" in source
    library = render_cuda(lora())
    assert library.count("__global__") == 2 and "mlc::grid_matmul<1, 16, 16, 1024" in library


# ---- compile checks (nvcc) -------------------------------------------------------------------

@pytest.mark.parametrize("name, arch", COMPILES, ids=[f"{n}-{a}" for n, a in COMPILES])
def test_mirage_size_graphs_compile(mirage_objects, name, arch):
    result = mirage_objects[(name, arch)]
    if isinstance(result, Exception):
        pytest.fail(f"{name} for {arch}: {result}")
    assert result.is_file() and result.stat().st_size > 0


def test_nvcc_errors_carry_its_stderr(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip(NO_NVCC)
    with pytest.raises(CudaCompileError, match=r"nvcc failed .*\n.*error"):
        compile_cuda('extern "C" __global__ void k() { undeclared_thing(); }', workdir=tmp_path)


def test_bad_arch_is_refused_before_running_nvcc():
    with pytest.raises(CudaCompileError, match="not a CUDA SM name"):
        compile_cuda("", arch="sm_90; rm -rf /")


def _fixture_names():
    try:
        from mlc.compiler.superopt.mugraph.fixtures import list_fixtures
        return list_fixtures()
    except (ImportError, FileNotFoundError):
        return []


@pytest.fixture(scope="session")
def fixture_objects(tmp_path_factory):
    if shutil.which("nvcc") is None:
        pytest.skip(NO_NVCC)
    from mlc.compiler.superopt.mugraph.fixtures import load_fixture
    graphs = {name: load_fixture(name) for name in _fixture_names()}
    return _compile_together(graphs, "sm_90", tmp_path_factory.mktemp("cuda_fixtures"))


@pytest.mark.parametrize("name", _fixture_names() or [pytest.param(
    "none", marks=pytest.mark.skip(reason="no µGraph fixtures in specs/mugraphs"))])
def test_every_fixture_renders_and_compiles(fixture_objects, name):
    result = fixture_objects[name]
    if isinstance(result, Exception):
        pytest.fail(f"fixture {name}: {result}")
    assert result.is_file()


# ---- golden sources --------------------------------------------------------------------------

@pytest.mark.parametrize("name, build", [
    ("rmsnorm_matmul", rmsnorm_matmul),
    ("attention", SMALL["attention"]),
])
def test_golden_source(name, build):
    path = GOLDEN / f"{name}.cu"
    source = render_cuda(build())
    if os.environ.get("MLC_UPDATE_GOLDEN") == "1":
        path.write_text(source)
    assert path.is_file(), f"missing {path}; run with MLC_UPDATE_GOLDEN=1 to create it"
    assert source == path.read_text(), (f"generated CUDA for {name} changed; review the diff "
                                        "and rerun with MLC_UPDATE_GOLDEN=1 if intended")


# ---- safety and limits -----------------------------------------------------------------------

def _rename(graph: MuGraph, rename) -> MuGraph:
    """The same µGraph with every kernel tensor, tile and kernel name passed through rename."""
    def block(b):
        return replace(
            b, inputs=tuple(replace(i, tile=rename(i.tile)) for i in b.inputs),
            ops=tuple(replace(o, inputs=tuple(map(rename, o.inputs)), output=rename(o.output))
                      for o in b.ops),
            outputs=tuple(replace(o, tile=rename(o.tile)) for o in b.outputs))
    ops = tuple(replace(op, inputs=tuple(map(rename, op.inputs)),
                        outputs=tuple(map(rename, op.outputs)), name=rename("kernel"),
                        block=block(op.block) if op.block else None) for op in graph.ops)
    return MuGraph(rename(graph.name), {rename(k): v for k, v in graph.inputs.items()}, ops,
                   tuple(map(rename, graph.outputs)), graph.dtype)


def test_model_names_never_reach_the_source():
    evil = 'x; system("rm -rf /")'
    graph = split_kv_attention(2, 16, 8, 64, q_blocks=2, splits=2, loop=2)
    renamed = _rename(graph, lambda name: f"{evil} */ {name} \\\n#define")
    source = render_cuda(renamed)
    assert evil not in source and "system" not in source and "*/ " not in source
    assert source == render_cuda(graph)  # names have no influence at all


def test_shared_memory_over_the_limit_is_an_error():
    too_big = rmsnorm_matmul(2, 4096, 6144, grid=8, loop=1)  # a 4096 x 768 weight tile
    with pytest.raises(MuGraphError, match="shared memory.*limit is 232,448"):
        render_cuda(too_big)
    fits = rmsnorm_matmul()
    render_cuda(fits)
    with pytest.raises(MuGraphError, match="shared memory"):
        render_cuda(fits, smem_limit_bytes=1024)


def test_rescale_must_follow_a_running_max():
    graph = attention(2, 16, 8, 64, q_blocks=2, loop=4)
    block = graph.ops[0].block
    ops = list(block.ops)
    ops.insert(3, BlockOp("neg", ("m",), "nm"))
    ops[-2] = BlockOp("accum_sum_rescale", ("ev", "nm"), "o")
    odd = replace(graph, ops=(replace(graph.ops[0], block=replace(block, ops=tuple(ops))),))
    with pytest.raises(MuGraphError, match="needs the output of accum_max_ld"):
        render_cuda(odd)


# ---- numerics --------------------------------------------------------------------------------

def _small_fixtures() -> dict:
    if not _fixture_names():
        return {}
    from mlc.compiler.superopt.mugraph.fixtures import load_fixture
    return {f"fixture:{name}": load_fixture(name) for name in _fixture_names()
            if name.endswith("_small")}


@pytest.fixture(scope="session")
def cpu_library(tmp_path_factory):
    """One host-compiled library holding every small graph's kernels (CPU emulation)."""
    if shutil.which("g++") is None and shutil.which("clang++") is None:
        pytest.skip(NO_HOST_CXX)
    graphs = {name: build() for name, build in SMALL.items()} | _small_fixtures()
    modules = {name: render_module(graph, prefix=f"m{n}")
               for n, (name, graph) in enumerate(graphs.items())}
    source = "\n".join(module.source for module in modules.values())
    return graphs, modules, build_cpu_library(source, tmp_path_factory.mktemp("cuda_cpu"))


@pytest.mark.parametrize("name", list(SMALL) + [f"fixture:{name}" for name in _fixture_names()
                                                if name.endswith("_small")])
def test_cpu_emulation_matches_interpreter(cpu_library, name):
    graphs, modules, library = cpu_library
    graph = graphs[name]
    inputs = random_inputs(graph)
    want = run_mugraph(graph, inputs, FloatArith())
    got = emulate_module(modules[name], graph, inputs, library)
    for output in graph.outputs:
        np.testing.assert_allclose(got[output], want[output], rtol=2e-4, atol=2e-5)


def test_emulate_mugraph_one_call(tmp_path):
    if shutil.which("g++") is None and shutil.which("clang++") is None:
        pytest.skip(NO_HOST_CXX)
    graph = library_chain()
    inputs = random_inputs(graph, seed=1)
    got = emulate_mugraph(graph, inputs, workdir=tmp_path)
    e = np.exp(inputs["A"].astype(np.float64) @ inputs["B"])
    np.testing.assert_allclose(got["P"], e / e.sum(-1, keepdims=True), rtol=1e-5)


def _cupy_or_skip():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as err:  # ImportError, CUDARuntimeError, a missing driver...
        pytest.skip(f"no usable CuPy/CUDA device: {err}")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(SMALL))
def test_runs_on_gpu_through_cupy(name):
    cupy = _cupy_or_skip()
    graph = SMALL[name]()
    inputs = random_inputs(graph)
    module = render_module(graph)
    raw = cupy.RawModule(code=module.source, options=("-std=c++17", f"-I{HELPERS_DIR}"))
    from mlc.compiler.superopt.mugraph import kernel_shapes
    shapes = kernel_shapes(graph)
    buffers = {t: cupy.zeros(shapes[t], dtype=cupy.float32) for t in module.graph_tensors}
    for t in graph.inputs:
        buffers[t] = cupy.asarray(inputs[t])
    for spec in module.kernels:
        kernel = raw.get_function(spec.name)
        if spec.smem_bytes > 48 * 1024:
            kernel.max_dynamic_shared_size_bytes = spec.smem_bytes
        kernel(spec.grid, (spec.threads, 1, 1),
               tuple(buffers[t] for t in spec.inputs + spec.outputs), shared_mem=spec.smem_bytes)
    want = run_mugraph(graph, inputs, FloatArith())
    for output in graph.outputs:
        np.testing.assert_allclose(cupy.asnumpy(buffers[output]), want[output], rtol=2e-4,
                                   atol=2e-5)
