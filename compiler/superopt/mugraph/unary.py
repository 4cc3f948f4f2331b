"""Float semantics of the activation tile ops real models need (and their library twins).

One table, read by FloatArith (numpy), TorchArith (torch) and the renderers' op maps: an
activation is named once here and every backend looks it up. The finite-field verifier has no
algebra for these functions; it treats each as an uninterpreted function (verify/field.py), so
a candidate must apply the same activation to the same value as the reference, and the float
stage checks the numbers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_CUBIC = 0.044715


def _gelu(x):
    return 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x)))


# tile op -> numpy function (float64 in the verifier's float stage, float32 to mimic kernels)
NUMPY = {"gelu": _gelu, "gelu_tanh": _gelu_tanh, "sigmoid": special.expit, "tanh": np.tanh,
         "erf": special.erf, "relu": lambda x: np.maximum(x, 0)}

# tile op -> torch callable name under torch / torch.nn.functional, with keyword arguments
TORCH = {"gelu": ("nn.functional.gelu", {}), "gelu_tanh": ("nn.functional.gelu",
                                                            {"approximate": "tanh"}),
         "sigmoid": ("sigmoid", {}), "tanh": ("tanh", {}), "erf": ("erf", {}),
         "relu": ("relu", {})}

ACTIVATIONS = tuple(NUMPY)

# library op (an IR op name) -> tile op; Gelu picks its form by the `approximate` attribute
LIBRARY_ACTIVATIONS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Relu": "relu"}


def library_activation(op: str, attrs: dict) -> str | None:
    """The activation tile op a library op computes (None: not an activation)."""
    if op == "Gelu":
        return "gelu_tanh" if attrs.get("approximate", "none") == "tanh" else "gelu"
    return LIBRARY_ACTIVATIONS.get(op)


def torch_activation(torch, name: str, value):
    """Apply activation `name` with torch (the torch executor's path)."""
    path, kwargs = TORCH[name]
    fn = torch
    for part in path.split("."):
        fn = getattr(fn, part)
    return fn(value, **kwargs)
