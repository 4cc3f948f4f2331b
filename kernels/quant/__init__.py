"""Kernels for quantized weights: codebook-dequantize + matmul (Triton and CUDA)."""
