"""`--target cpu`: this host as a spec the search and the cost model read like a GPU's.

The mapping: a core is an SM (one block runs per core at a time), the tile budget of a block
("shared memory") is half the core's L2 cache, and the FLOP/s and bandwidth are measured here
(a float32 matmul and a large copy, best of three), cached per host in the mlc cache folder.
The numbers are what the roofline prices CPU kernels with; optimize then ranks the top
candidates by timing their compiled kernels (superopt/measure.py).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from mlc.compiler.errors import MlcError

from .hardware import GpuSpec, gpu_from_dict

HOST_SPEC_VERSION = 2


def _cache_path() -> Path:
    root = os.environ.get("MLC_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "mlc"
    return base / "host" / f"{_host_key()}.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _host_key() -> str:
    text = f"{HOST_SPEC_VERSION}-{_cpu_model()}-{_cores()}-{platform.machine()}"
    return "".join(c if c.isalnum() else "-" for c in text)[:120]


def _cache_bytes(level: int, default: int) -> int:
    """Size of the level-`level` data/unified cache of cpu0 (sysfs), else `default`."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            if int((index / "level").read_text()) == level and \
                    (index / "type").read_text().strip() in ("Data", "Unified"):
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
                return int(text.rstrip("KMG")) * scale
    except (OSError, ValueError):
        pass
    return default


def _best_of(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_peaks() -> tuple[float, float]:
    """(float32 matmul FLOP/s, copy bandwidth in bytes/s) measured on this host."""
    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    flops = 2 * n**3 / _best_of(lambda: a @ a)
    big = np.ones(32 << 20, np.float32)  # 128 MiB, far past the caches
    out = np.empty_like(big)
    bandwidth = 2 * big.nbytes / _best_of(lambda: np.copyto(out, big))
    return flops, bandwidth


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 1 << 34


def host_spec() -> GpuSpec:
    """This machine as a spec named "cpu" (measured once per host, then read from the cache)."""
    path = _cache_path()
    try:
        return gpu_from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, MlcError):  # absent, unreadable or stale: measure again
        pass
    cores = _cores()
    l2 = _cache_bytes(2, 1 << 20)
    flops, bandwidth = measure_peaks()
    doc = {"name": "cpu", "full_name": f"{_cpu_model()} ({cores} cores, this host)",
           "arch": platform.machine(), "memory_bytes": _memory_bytes(), "memory_type": "DRAM",
           "dram_bandwidth": bandwidth, "fp16_flops": flops, "bf16_flops": None,
           "fp32_flops": flops, "sm_count": cores, "smem_per_sm": l2,
           "smem_per_block": l2 // 2, "max_threads_per_sm": 1024, "max_threads_per_block": 1024,
           "max_blocks_per_sm": 1, "l2_bytes": _cache_bytes(3, l2),
           "source": f"measured on this host {time.strftime('%Y-%m-%d')}: float32 1024^3 "
                     "matmul (numpy) and a 128 MiB copy, best of 3; caches from sysfs; one "
                     "block per core, tile budget half the L2"}
    spec = gpu_from_dict(doc, "host")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measure next time
    return spec
