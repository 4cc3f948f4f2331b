"""GPU specs for the cost model: one JSON file per GPU in `specs/hardware/`, loaded into a frozen
`GpuSpec`. Every file carries a `source` string saying where its numbers come from.

    >>> gpu = load_gpu("h100")
    >>> gpu.dram_bandwidth, gpu.sm_count
    (3350000000000.0, 132)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mlc.compiler.errors import MlcError
from mlc.compiler.safe_io import check_number, read_json

ALIASES = {"h100-sxm": "h100", "a100": "a100-80gb", "a100-sxm-80gb": "a100-80gb",
           "v100-sxm2": "v100"}


@dataclass(frozen=True)
class GpuSpec:
    """Public figures of one GPU. FLOP/s are dense (not 2:4 sparse); bytes are bytes."""

    name: str
    full_name: str
    arch: str
    memory_bytes: int
    memory_type: str
    dram_bandwidth: float  # bytes/s, datasheet peak
    fp16_flops: float  # dense tensor-core FLOP/s
    bf16_flops: float | None  # None where the GPU has no bf16 tensor cores (T4, V100)
    fp32_flops: float  # non-tensor (CUDA core) FLOP/s
    sm_count: int
    smem_per_sm: int
    smem_per_block: int  # opt-in maximum per thread block
    max_threads_per_sm: int
    max_threads_per_block: int
    max_blocks_per_sm: int
    source: str
    l2_bytes: int | None = None
    interconnect: str | None = None
    usd_per_hour: float | None = None

    def matmul_flops(self, dtype_bytes: int) -> float:
        """Peak matmul FLOP/s: tensor cores for 2-byte types, CUDA cores otherwise (no TF32)."""
        return self.fp16_flops if dtype_bytes <= 2 else self.fp32_flops


_FIELDS = {f.name: f for f in dataclasses.fields(GpuSpec)}
_REQUIRED = [name for name, f in _FIELDS.items() if f.default is dataclasses.MISSING]
# numeric field: (type, least (excluded, except the price), most). The bounds are far above
# any real GPU; they keep a typo from reaching the cost model as a number it cannot scale.
_NUMBERS = {"memory_bytes": (int, 0, 2**50), "dram_bandwidth": (float, 0, 1e16),
            "fp16_flops": (float, 0, 1e18), "bf16_flops": (float, 0, 1e18),
            "fp32_flops": (float, 0, 1e18), "sm_count": (int, 0, 1 << 20),
            "smem_per_sm": (int, 0, 2**30), "smem_per_block": (int, 0, 2**30),
            "max_threads_per_sm": (int, 0, 1 << 20), "max_threads_per_block": (int, 0, 1 << 20),
            "max_blocks_per_sm": (int, 0, 1 << 20), "l2_bytes": (int, 0, 2**40),
            "usd_per_hour": (float, 0, 10_000)}
_NULLABLE = ("bf16_flops", "l2_bytes", "interconnect", "usd_per_hour")
MAX_SPEC_BYTES = 1 << 20  # a spec is a few hundred bytes


def _hardware_dir():
    return resources.files("mlc.specs").joinpath("hardware")


def list_gpus() -> list[str]:
    """Names of the bundled GPU specs, sorted."""
    return sorted(entry.name.removesuffix(".json") for entry in _hardware_dir().iterdir()
                  if entry.name.endswith(".json"))


def gpu_from_dict(doc: dict, where: str = "<dict>") -> GpuSpec:
    """Check a spec document's fields and build a GpuSpec; MlcError names what is wrong.

    Every number must be finite, positive (a price may be 0) and below a bound far above any
    real GPU, counts and byte sizes whole; text fields must be strings."""
    if not isinstance(doc, dict):
        raise MlcError(f"{where}: a GPU spec must be a JSON object")
    missing = [name for name in _REQUIRED if name not in doc]
    if missing:
        raise MlcError(f"{where}: GPU spec lacks field(s) {', '.join(missing)}")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise MlcError(f"{where}: unknown GPU spec field(s) {', '.join(unknown)}; known: "
                       f"{', '.join(_FIELDS)}")
    checked = {}
    for name, value in doc.items():
        if value is None and name in _NULLABLE:
            checked[name] = None
        elif name in _NUMBERS:
            kind, low, high = _NUMBERS[name]
            checked[name] = kind(check_number(value, f"{where}: {name}", low=low, high=high,
                                              low_open=name != "usd_per_hour",
                                              integer=kind is int))
        elif not isinstance(value, str):
            raise MlcError(f"{where}: {name} must be a string, got {value!r}")
        else:
            checked[name] = value
    return GpuSpec(**checked)


def load_gpu(name_or_path: str | Path) -> GpuSpec:
    """A bundled spec by name ("h100", "a100-80gb", ...), "cpu" (this host, measured; see
    host.py), or a user's spec JSON file by path."""
    text = str(name_or_path)
    if text.strip().lower() == "cpu":
        from .host import host_spec
        return host_spec()
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        if not path.is_file():
            raise MlcError(f"GPU spec file {text} does not exist")
        source = path
    else:
        key = ALIASES.get(text.strip().lower(), text.strip().lower())
        if key not in list_gpus():  # also keeps a name like ../models/x out of other folders
            raise MlcError(f"unknown GPU {text!r}; known GPUs: {', '.join(list_gpus())} "
                           "(or pass the path of a spec JSON file)")
        source = _hardware_dir().joinpath(f"{key}.json")
    doc = read_json(source, "GPU spec (JSON)", max_bytes=MAX_SPEC_BYTES)
    return gpu_from_dict(doc, str(source))
