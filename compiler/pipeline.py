"""The flat list of passes each command runs, in order (each a pure Graph -> Graph function)."""

from __future__ import annotations

from .passes.algebra import (
    drop_softmax_nan_guard,
    hoist_matmul_scales,
    reciprocal_to_div,
    simplify_pow,
)
from .passes.canonicalize import canonicalize_activations
from .passes.gemm import lower_gemm
from .passes.layer_norm import fuse_layer_norm, fuse_rms_norm
from .passes.masks import additive_masks
from .passes.norm_affine import fold_constant_transposes, fold_norm_affine, merge_constant_adds
from .passes.reshapes import restore_unit_dims

IMPORT_PASSES = []  # `mlc import` keeps the graph as the frontend produced it
# Canonicalization, so region selection sees the ops the µGraph level supports; activations
# go before simplify_pow so gelu_new's Pow(x, 3) is still inside its cone (either would work).
OPTIMIZE_PASSES = [
    fold_constant_transposes,  # torch.export's x @ W.T: the matmuls then read constants
    lower_gemm,
    restore_unit_dims,  # after lower_gemm: GPT-2's x.view(-1, K) @ W + b, viewed back
    canonicalize_activations,
    drop_softmax_nan_guard,
    simplify_pow,
    reciprocal_to_div,
    fuse_layer_norm,  # after simplify_pow and reciprocal_to_div: it matches their output
    fuse_rms_norm,  # after fuse_layer_norm: a layer norm's inner Div is not an RMS norm
    hoist_matmul_scales,
    additive_masks,  # torch.export's Where(mask, scores, -inf) before a softmax
    fold_norm_affine,  # after fuse_layer_norm: it folds the norms that pass made
    merge_constant_adds,  # the folded beta next to the matmul's own bias
]  # then regions -> search -> MuGraphCall rewrite


def run_passes(graph, passes):
    """Apply `passes` in order: each takes and returns a Graph."""
    for run_pass in passes:
        graph = run_pass(graph)
    return graph
