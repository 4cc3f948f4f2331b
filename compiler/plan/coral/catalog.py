"""The GPU catalog a serving plan rents from: per GPU type its memory, bandwidth, dense 16-bit
FLOP/s, links, $/GPU-hour and how many can be had, built from `specs/hardware/` and a user's
overrides (`{"l4": {"available": 8, "price_per_hour": 0.7}}`).

    >>> catalog = load_catalog({"h100": {"available": 4}})
    >>> catalog["h100"].available, catalog["h100"].price_per_hour
    (4, 6.88)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from mlc.compiler.errors import MlcError
from mlc.compiler.safe_io import check_number
from mlc.compiler.superopt.cost.hardware import list_gpus, load_gpu

DEFAULT_AVAILABLE = 64  # per GPU type when the user gives no count: a large cloud region
NETWORK_BANDWIDTH = 12.5e9  # bytes/s between nodes (100 Gb/s), for mixed-type pipelines
NETWORK_LATENCY = 30e-6  # seconds per inter-node message
GPUS_PER_NODE = 8  # the largest instance of every type in the catalog holds 8 GPUs

# Per-direction link bandwidth (bytes/s) and per-message latency (s) by interconnect: NVLink
# figures are bidirectional totals, PCIe per direction.
_LINKS = [(r"NVLink (\d+) GB/s", lambda gbs: (gbs * 1e9 / 2, 8e-6)),
          (r"PCIe 5", lambda _: (64e9, 15e-6)),
          (r"PCIe 4", lambda _: (32e9, 15e-6)),
          (r"PCIe 3", lambda _: (16e9, 20e-6))]

# field: (least, most, least excluded). A price of 0 is allowed (GPUs one already owns); an
# efficiency is a fraction of the datasheet peak, so in (0, 1].
OVERRIDABLE = {"available": (0, 100_000, False), "price_per_hour": (0, 10_000, False),
               "bandwidth_efficiency": (0, 1, True), "flops_efficiency": (0, 1, True)}


@dataclass(frozen=True)
class GpuType:
    """One rentable GPU type. Efficiencies scale datasheet peaks to what serving achieves; a
    user calibrates them from measurements (see `perf.calibrate`)."""

    name: str
    memory_bytes: int
    bandwidth: float  # DRAM bytes/s, datasheet
    flops: float  # dense 16-bit tensor FLOP/s (fp16 where the GPU lacks bf16)
    bf16: bool
    link_bandwidth: float  # bytes/s per direction between GPUs of one node
    link_latency: float
    interconnect: str
    price_per_hour: float
    available: int
    bandwidth_efficiency: float = 0.75
    flops_efficiency: float = 0.55


def _link(interconnect: str) -> tuple[float, float]:
    for pattern, make in _LINKS:
        found = re.search(pattern, interconnect or "")
        if found:
            return make(float(found.group(1)) if found.groups() else 0.0)
    return 16e9, 20e-6


def gpu_type(name: str, available: int = DEFAULT_AVAILABLE) -> GpuType:
    """The catalog entry for a bundled GPU spec (MlcError lists the known names)."""
    spec = load_gpu(name)
    if spec.usd_per_hour is None:
        raise MlcError(f"GPU {name!r} has no usd_per_hour in specs/hardware; give price_per_hour")
    link_bandwidth, link_latency = _link(spec.interconnect)
    return GpuType(name=spec.name, memory_bytes=spec.memory_bytes, bandwidth=spec.dram_bandwidth,
                   flops=spec.bf16_flops or spec.fp16_flops, bf16=spec.bf16_flops is not None,
                   link_bandwidth=link_bandwidth, link_latency=link_latency,
                   interconnect=spec.interconnect or "PCIe", price_per_hour=spec.usd_per_hour,
                   available=available)


def _check_override(name: str, fields: dict, where: str = "GPU overrides") -> dict:
    """One GPU type's overrides, each a finite number in its OVERRIDABLE range."""
    if not isinstance(fields, dict):
        raise MlcError(f"{where}: GPU {name!r}: expected an object with "
                       f"{', '.join(OVERRIDABLE)}")
    unknown = sorted(set(fields) - set(OVERRIDABLE))
    if unknown:
        raise MlcError(f"{where}: GPU {name!r}: unknown field(s) {', '.join(unknown)}; "
                       f"known: {', '.join(OVERRIDABLE)}")
    checked = {}
    for key, value in fields.items():
        low, high, low_open = OVERRIDABLE[key]
        checked[key] = check_number(value, f"{where}: {name}.{key}", low=low, high=high,
                                    low_open=low_open, integer=key == "available")
        if key != "available":
            checked[key] = float(checked[key])
    return checked


def load_catalog(overrides: dict | None = None, only: list[str] | None = None,
                 where: str = "GPU overrides") -> dict[str, GpuType]:
    """Every bundled GPU type (or those in `only`), with the user's overrides applied.

    Override keys must name known GPUs (the error lists them) and values be in range; `where`
    names the overrides' file in errors."""
    names = list_gpus() if only is None else list(only)
    if overrides is not None and not isinstance(overrides, dict):
        raise MlcError(f"{where}: expected a mapping of GPU names to "
                       f"{{{', '.join(OVERRIDABLE)}}}")
    overrides = dict(overrides or {})
    known = list_gpus()
    for name in list(overrides) + names:
        if name not in known:
            raise MlcError(f"{where}: unknown GPU {name!r}; known GPUs: {', '.join(known)}")
    checked = {name: _check_override(name, fields, where) for name, fields in overrides.items()}
    return {name: dataclasses.replace(gpu_type(name), **checked.get(name, {})) for name in names}


def with_availability(catalog: dict[str, GpuType], available: dict[str, int]
                      ) -> dict[str, GpuType]:
    """A copy of the catalog with new available counts (types not named keep theirs)."""
    return {name: dataclasses.replace(gpu, available=int(available.get(name, gpu.available)))
            for name, gpu in catalog.items()}
