"""Reading a serving plan's inputs: the demand file and the GPU override file (JSON, or YAML
when PyYAML is installed), checked field by field with errors that say what to fix."""

from __future__ import annotations

import json
from pathlib import Path

from mlc.compiler.errors import MlcError

from ..models import list_models
from .perf import Workload

DEMAND_FIELDS = {"requests_per_s": float, "prompt_tokens": int, "output_tokens": int,
                 "tpot_ms": float, "ttft_ms": float, "weight": float}
REQUIRED = ("requests_per_s", "prompt_tokens", "output_tokens")


def load_document(path: str | Path, what: str) -> dict:
    """A JSON or YAML file as a dict (YAML only if PyYAML is importable)."""
    path = Path(path)
    if not path.is_file():
        raise MlcError(f"{what} file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise MlcError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or give "
                           "the same content as JSON") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise MlcError(f"{path}: not valid YAML ({err})") from None
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise MlcError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict) or not doc:
        raise MlcError(f"{path}: expected a non-empty mapping of names to settings")
    return doc


def parse_demand(doc: dict, where: str = "demand") -> dict[str, Workload]:
    """`{model: {requests_per_s, prompt_tokens, output_tokens[, tpot_ms, ttft_ms, weight]}}`."""
    known = list_models()
    unknown = [name for name in doc if name not in known]
    if unknown:
        raise MlcError(f"{where}: unknown model(s) {', '.join(map(repr, unknown))}; known "
                       f"models: {', '.join(known)}")
    demand = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            raise MlcError(f"{where}: {name}: expected {{requests_per_s, prompt_tokens, "
                           "output_tokens}")
        extra = sorted(set(entry) - set(DEMAND_FIELDS))
        missing = [key for key in REQUIRED if key not in entry]
        if extra or missing:
            raise MlcError(f"{where}: {name}: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown field(s) {', '.join(extra)}"] if extra else []))
                + f" (fields: {', '.join(DEMAND_FIELDS)})")
        values = {}
        for key, value in entry.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 \
                    or (DEMAND_FIELDS[key] is int and int(value) != value):
                raise MlcError(f"{where}: {name}: {key} must be a "
                               f"{'whole ' if DEMAND_FIELDS[key] is int else ''}number >= 0, "
                               f"got {value!r}")
            values[key] = DEMAND_FIELDS[key](value)
        for key in ("prompt_tokens", "output_tokens", "tpot_ms", "ttft_ms"):
            if key in values and values[key] <= 0:
                raise MlcError(f"{where}: {name}: {key} must be > 0")
        demand[name] = Workload(
            requests_per_s=values["requests_per_s"], prompt_tokens=values["prompt_tokens"],
            output_tokens=values["output_tokens"],
            tpot_slo_s=values.get("tpot_ms", 100.0) / 1e3,
            ttft_slo_s=values.get("ttft_ms", 5000.0) / 1e3,
            weight=values.get("weight", values["requests_per_s"]))
    return demand


def demand_document(demand: dict[str, Workload]) -> dict:
    """The inverse of `parse_demand` (stored in plan.json so --replan can reuse it)."""
    return {name: {"requests_per_s": w.requests_per_s, "prompt_tokens": w.prompt_tokens,
                   "output_tokens": w.output_tokens, "tpot_ms": w.tpot_slo_s * 1e3,
                   "ttft_ms": w.ttft_slo_s * 1e3, "weight": w.weight}
            for name, w in demand.items()}
