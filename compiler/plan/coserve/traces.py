"""Inference request traces: generated (Poisson or bursty arrivals, long-tailed lengths) or read
from JSON lines, one request per line: {"id", "prompt_tokens" or "prompt", "max_new_tokens",
"arrival"}.

Lengths are log-normal, clipped, with means near ShareGPT's as reported for vLLM (Kwon et al.,
SOSP'23: 161 prompt and 338 output tokens): prompt mean 161, sigma 1.0, clipped to [4, 4096];
output mean 338, sigma 0.9, clipped to [4, 2048] (clipping lowers the means by a few percent).
Bursty arrivals have Gamma inter-arrival times with coefficient of variation 2 (shape 1/4), as
BurstGPT observed for production traces; Poisson ones have CV 1.

    >>> trace = generate_trace(rate=20.0, duration=60.0, seed=0)
    >>> 1000 < len(trace) < 1400, trace[0].id
    (True, 'r0')
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlc.compiler.errors import MlcError

PROMPT_MEAN, PROMPT_SIGMA, PROMPT_CLIP = 161.0, 1.0, (4, 4096)
OUTPUT_MEAN, OUTPUT_SIGMA, OUTPUT_CLIP = 338.0, 0.9, (4, 2048)
BURSTY_CV = 2.0
CHARS_PER_TOKEN = 4  # a "prompt" string's token count is estimated as len(prompt) / 4


@dataclass(frozen=True)
class Request:
    """One inference request; it generates exactly `max_new_tokens` tokens (no early stop)."""

    id: str
    arrival: float
    prompt_tokens: int
    max_new_tokens: int


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, clip: tuple[int, int],
               size: int) -> np.ndarray:
    mu = np.log(mean) - sigma**2 / 2  # so that the unclipped mean is `mean`
    return np.clip(np.rint(rng.lognormal(mu, sigma, size)), *clip).astype(int)


def arrival_times(rate: float, duration: float, kind: str, rng: np.random.Generator
                  ) -> np.ndarray:
    """Arrival times in [0, duration) at mean `rate` per second, `poisson` or `bursty`."""
    if rate <= 0 or duration <= 0:
        raise MlcError(f"trace needs rate > 0 and duration > 0 (got {rate}, {duration})")
    count = int(rate * duration * 1.5 + 50)  # enough gaps to pass `duration` almost surely
    times = np.empty(0)
    while times.size == 0 or times[-1] < duration:
        if kind == "poisson":
            gaps = rng.exponential(1 / rate, count)
        elif kind == "bursty":
            shape = 1 / BURSTY_CV**2
            gaps = rng.gamma(shape, 1 / (rate * shape), count)
        else:
            raise MlcError(f"unknown trace kind {kind!r}; choose poisson or bursty")
        start = times[-1] if times.size else 0.0
        times = np.concatenate([times, start + np.cumsum(gaps)])
    return times[times < duration]


def generate_trace(rate: float, duration: float, kind: str = "poisson", seed: int = 0
                   ) -> list[Request]:
    """A seeded trace: same arguments, same requests (ids r0, r1, ... in arrival order)."""
    rng = np.random.default_rng(seed)
    times = arrival_times(rate, duration, kind, rng)
    prompts = _lognormal(rng, PROMPT_MEAN, PROMPT_SIGMA, PROMPT_CLIP, times.size)
    outputs = _lognormal(rng, OUTPUT_MEAN, OUTPUT_SIGMA, OUTPUT_CLIP, times.size)
    return [Request(f"r{i}", float(t), int(p), int(o))
            for i, (t, p, o) in enumerate(zip(times, prompts, outputs))]


def write_trace(requests: list[Request], path: str | Path) -> None:
    """One JSON object per line, the fields of `Request`."""
    Path(path).write_text("".join(json.dumps(asdict(r)) + "\n" for r in requests))


def _request(doc, where: str) -> Request:
    if not isinstance(doc, dict):
        raise MlcError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    missing = [key for key in ("id", "max_new_tokens", "arrival") if key not in doc]
    if "prompt_tokens" not in doc and "prompt" not in doc:
        missing.append("prompt_tokens (or prompt)")
    if missing:
        raise MlcError(f"{where}: missing field(s) {', '.join(missing)}")
    if "prompt_tokens" in doc:
        prompt = doc["prompt_tokens"]
    elif isinstance(doc["prompt"], str):
        prompt = max(1, round(len(doc["prompt"]) / CHARS_PER_TOKEN))
    else:
        raise MlcError(f"{where}: prompt must be a string")
    for key, value, least in (("prompt_tokens", prompt, 1), ("max_new_tokens",
                                                             doc["max_new_tokens"], 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise MlcError(f"{where}: {key} must be an integer >= {least}, got {value!r}")
    arrival = doc["arrival"]
    if isinstance(arrival, bool) or not isinstance(arrival, (int, float)) or arrival < 0 \
            or not np.isfinite(arrival):
        raise MlcError(f"{where}: arrival must be seconds >= 0, got {arrival!r}")
    return Request(str(doc["id"]), float(arrival), prompt, doc["max_new_tokens"])


def jsonl_records(path: str | Path):
    """(line number, JSON object) for each non-blank line of a JSON-lines file; MlcError
    naming the file and line for unreadable files, bad JSON and non-object lines."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MlcError(f"{path}: cannot read ({err})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MlcError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise MlcError(f"{path}:{number}: expected a JSON object, got "
                           f"{type(record).__name__}")
        yield number, record


def read_trace(path: str | Path) -> list[Request]:
    """Requests from a JSON-lines file, sorted by arrival; MlcError names file and line."""
    requests = [_request(doc, f"{path}:{number}") for number, doc in jsonl_records(path)]
    if not requests:
        raise MlcError(f"{path}: trace holds no requests")
    return sorted(requests, key=lambda r: r.arrival)
