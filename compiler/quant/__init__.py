"""Weight quantization: DGMS Gaussian-mixture quantizer, baselines, packed codebooks."""
