"""Write the hand-written µGraph fixtures: the best known µGraph per Mirage workload, and a
deliberately wrong twin of each (in wrong/), as our µGraph JSON.

Run `python specs/mugraphs/make_fixtures.py` after changing a builder; the JSON is committed so
reviews show what changed. Shapes come from specs/workloads (full and `:small`); the builders
only choose grids and loop ranges. Tests: tests/superopt/test_fixtures.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlc.compiler.superopt.mugraph import (
    BlockGraph,
    BlockInput,
    BlockOp,
    BlockOutput,
    KernelOp,
    MuGraph,
    kernel_shapes,
    save_mugraph,
)
from mlc.specs.workloads import get_workload

HERE = Path(__file__).resolve().parent
R = -1  # imap: replicate; fmap: no loop


@dataclass(frozen=True)
class Tiling:
    """The schedule knobs a builder takes: its grid and for-loop range (per kernel)."""

    grid: tuple[int, int, int]
    loop: int = 1
    grid2: tuple[int, int, int] = (1, 1, 1)  # second kernel (attention's combine step)


def _one_kernel(spec: str, block: BlockGraph) -> MuGraph:
    inputs = {n: t.shape for n, t in get_workload(spec).inputs.items()}
    return MuGraph(spec, inputs, (KernelOp("block", tuple(inputs), ("O",), block=block,
                                           name="fused"),), ("O",))


# ---- RMSNorm + MatMul: divide after the matmul (Mirage Fig. 3) -------------------------------

def rmsnorm_matmul(spec: str, t: Tiling, wrong: bool = False) -> MuGraph:
    """X replicated, walked along its columns; W split over its columns, walked along its rows.

    wrong: rms_norm on the X tile of one iteration (a partial row) before the matmul.
    """
    ops = (BlockOp("accum_rms_ld", ("x",), "rms"), BlockOp("matmul", ("x", "w"), "xw"),
           BlockOp("accum_sum", ("xw",), "acc"), BlockOp("div", ("acc", "rms"), "y"))
    if wrong:
        ops = (BlockOp("rms_norm", ("x",), "xn"), BlockOp("matmul", ("xn", "w"), "xw"),
               BlockOp("accum_sum", ("xw",), "y"))
    block = BlockGraph(t.grid, t.loop, (BlockInput("x", 0, (R, R, R), 1),
                                        BlockInput("w", 1, (1, R, R), 0)),
                       ops, (BlockOutput("y", (1, R, R)),))
    return _one_kernel(spec, block)


# ---- Gated MLP: both matmuls, silu and the product in one kernel -----------------------------

def gated_mlp(spec: str, t: Tiling, wrong: bool = False) -> MuGraph:
    """wrong: silu applied to each iteration's partial product instead of the full sum."""
    gate = (BlockOp("matmul", ("x", "w1"), "xw1"), BlockOp("accum_sum", ("xw1",), "a1"),
            BlockOp("silu", ("a1",), "g"))
    if wrong:
        gate = (BlockOp("matmul", ("x", "w1"), "xw1"), BlockOp("silu", ("xw1",), "s"),
                BlockOp("accum_sum", ("s",), "g"))
    ops = gate + (BlockOp("matmul", ("x", "w2"), "xw2"), BlockOp("accum_sum", ("xw2",), "a2"),
                  BlockOp("mul", ("g", "a2"), "y"))
    block = BlockGraph(t.grid, t.loop, (BlockInput("x", 0, (R, R, R), 1),
                                        BlockInput("w1", 1, (1, R, R), 0),
                                        BlockInput("w2", 2, (1, R, R), 0)),
                       ops, (BlockOutput("y", (1, R, R)),))
    return _one_kernel(spec, block)


# ---- LoRA: X·W + (X·A)·B, the low-rank term accumulated with the main one --------------------

def lora(spec: str, t: Tiling, wrong: bool = False) -> MuGraph:
    """sum_i X_i W_i + (X_i A_i) B = XW + (XA)B since the product with B is linear.

    wrong: the adapter term computed from whole X and A (loop-invariant) but still added
    inside the loop, so it is counted forloop_range times.
    """
    inputs = (BlockInput("x", 0, (R, R, R), 1), BlockInput("w", 1, (1, R, R), 0),
              BlockInput("a", 2, (R, R, R), 0), BlockInput("b", 3, (1, R, R), R))
    low_rank = (BlockOp("matmul", ("x", "a"), "xa"),)
    if wrong:
        inputs = inputs[:2] + (BlockInput("a", 2, (R, R, R), R), inputs[3],
                               BlockInput("x_whole", 0, (R, R, R), R))
        low_rank = (BlockOp("matmul", ("x_whole", "a"), "xa"),)
    ops = (BlockOp("matmul", ("x", "w"), "xw"), *low_rank, BlockOp("matmul", ("xa", "b"), "xab"),
           BlockOp("add", ("xw", "xab"), "s"), BlockOp("accum_sum", ("s",), "y"))
    return _one_kernel(spec, BlockGraph(t.grid, t.loop, inputs, ops,
                                        (BlockOutput("y", (1, R, R)),)))


# ---- attention (GQA, QKNorm): split-KV in two kernels, no max subtraction ---------------------

def _attention(spec: str, t: Tiling, norm_q: bool, norm_k: bool, norm_v: bool,
               wrong: bool) -> MuGraph:
    """Kernel 1, block (batch, kv split, query rows): sum exp(Q K_i) and exp(Q K_i) V_i over
    the loop. Kernel 2, block (batch, query rows): add the splits' partials and divide.

    wrong: each split divides its own partial sums, and kernel 2 adds the normalized parts.
    """
    graph = get_workload(spec)
    inputs = {n: tt.shape for n, tt in graph.inputs.items()}
    head_dim = inputs["Q"][-1]
    norms = {"q": norm_q, "k": norm_k, "v": norm_v}
    pre = [BlockOp("rms_norm", (x,), f"{x}n") for x, on in norms.items() if on]
    q, k, v = (f"{x}n" if on else x for x, on in norms.items())
    ops = pre + [BlockOp("matmul", (q, k), "s"), BlockOp("exp", ("s",), "e"),
                 BlockOp("accum_sum_ld", ("e",), "den"), BlockOp("matmul", ("e", v), "ev"),
                 BlockOp("accum_sum", ("ev",), "num")]
    saved = (BlockOutput("den", (0, 2, 1)), BlockOutput("num", (0, 2, 1)))
    if wrong:
        ops.append(BlockOp("div", ("num", "den"), "part"))
        saved = (BlockOutput("part", (0, 2, 1)),)
    split = BlockGraph(t.grid, t.loop, (BlockInput("q", 0, (0, R, 1), R),
                                        BlockInput("k", 1, (0, 2, R), 2),
                                        BlockInput("v", 2, (0, 1, R), 1)),
                       tuple(ops), saved, reduction_dimx=head_dim)
    if wrong:
        combine = BlockGraph(t.grid2, 1, (BlockInput("part", 0, (0, 1, R), R),),
                             (BlockOp("accum_sum_todimx", ("part",), "y"),),
                             (BlockOutput("y", (0, 1, R)),), reduction_dimx=head_dim)
        kernels = (KernelOp("block", ("Q", "K", "V"), ("P",), block=split, name="split_kv"),
                   KernelOp("block", ("P",), ("O",), block=combine, name="combine"))
    else:
        combine = BlockGraph(t.grid2, 1, (BlockInput("den", 0, (0, 1, R), R),
                                          BlockInput("num", 1, (0, 1, R), R)),
                             (BlockOp("accum_sum_ld", ("den",), "total"),
                              BlockOp("accum_sum_todimx", ("num",), "o"),
                              BlockOp("div", ("o", "total"), "y")),
                             (BlockOutput("y", (0, 1, R)),), reduction_dimx=head_dim)
        kernels = (KernelOp("block", ("Q", "K", "V"), ("D", "N"), block=split, name="split_kv"),
                   KernelOp("block", ("D", "N"), ("O",), block=combine, name="combine"))
    return MuGraph(spec, inputs, kernels, ("O",))


def gqa(spec: str, t: Tiling, wrong: bool = False) -> MuGraph:
    return _attention(spec, t, False, False, False, wrong)


def qknorm(spec: str, t: Tiling, wrong: bool = False) -> MuGraph:
    """rms_norm on the Q and V tiles (whole head-dim rows). wrong: on Q and K instead, as
    QK-norm usually means, which normalizes the K tile over a partial kv range."""
    return _attention(spec, t, True, wrong, not wrong, False)


# ---- nTrans: one row per block -----------------------------------------------------------------

def ntrans(spec: str, t: Tiling, wrong: bool = False) -> MuGraph:
    """rms_norm(X + alpha * (rms_norm(H) + X)) on whole rows.

    wrong: the grid also splits the columns, so both rms_norms see a partial row.
    """
    imap = (0, 1, R) if wrong else (0, R, R)
    grid = (t.grid[0], 4, 1) if wrong else t.grid
    block = BlockGraph(
        grid, t.loop,
        (BlockInput("x", 0, imap, R), BlockInput("h", 1, imap, R), BlockInput("al", 2, imap, R)),
        (BlockOp("rms_norm", ("h",), "hn"), BlockOp("add", ("hn", "x"), "u"),
         BlockOp("mul", ("al", "u"), "au"), BlockOp("add", ("x", "au"), "z"),
         BlockOp("accum_sum", ("z",), "za"), BlockOp("rms_norm", ("za",), "y")),
        (BlockOutput("y", imap),))
    return _one_kernel(spec, block)


# ---- the fixture table: name -> (builder, workload spec, tiling) ------------------------------

FIXTURES = {
    "rmsnorm_matmul": (rmsnorm_matmul, "rmsnorm_matmul", Tiling((256, 1, 1), 32)),
    "rmsnorm_matmul_small": (rmsnorm_matmul, "rmsnorm_matmul:small", Tiling((4, 1, 1), 4)),
    "gated_mlp": (gated_mlp, "gated_mlp", Tiling((128, 1, 1), 64)),
    "gated_mlp_small": (gated_mlp, "gated_mlp:small", Tiling((4, 1, 1), 4)),
    "lora": (lora, "lora", Tiling((64, 1, 1), 4)),
    "lora_small": (lora, "lora:small", Tiling((4, 1, 1), 4)),
    "gqa": (gqa, "gqa", Tiling((2, 8, 16), 4, (2, 16, 1))),
    "gqa_small": (gqa, "gqa:small", Tiling((2, 2, 2), 2, (2, 2, 1))),
    "qknorm": (qknorm, "qknorm", Tiling((2, 8, 16), 4, (2, 16, 1))),
    "qknorm_small": (qknorm, "qknorm:small", Tiling((2, 2, 2), 2, (2, 2, 1))),
    "ntrans": (ntrans, "ntrans", Tiling((8, 1, 1))),
    "ntrans_small": (ntrans, "ntrans:small", Tiling((8, 1, 1))),
}


def main() -> None:
    (HERE / "wrong").mkdir(exist_ok=True)
    for name, (build, spec, tiling) in FIXTURES.items():
        for wrong, folder in ((False, HERE), (True, HERE / "wrong")):
            graph = build(spec, tiling, wrong)
            kernel_shapes(graph)  # every fixture must validate
            save_mugraph(graph, folder / f"{name}.json")
            print(f"{folder.name}/{name}.json: {spec}, {len(graph.ops)} kernel(s)")


if __name__ == "__main__":
    main()
