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
from mlc.compiler.safe_io import check_number, parse_json

PROMPT_MEAN, PROMPT_SIGMA, PROMPT_CLIP = 161.0, 1.0, (4, 4096)
OUTPUT_MEAN, OUTPUT_SIGMA, OUTPUT_CLIP = 338.0, 0.9, (4, 2048)
BURSTY_CV = 2.0
CHARS_PER_TOKEN = 4  # a "prompt" string's token count is estimated as len(prompt) / 4
MAX_TRACE_BYTES = 1 << 30  # a JSON-lines file larger than this is not a trace mlc reads
MAX_GENERATED_REQUESTS = 2_000_000  # rate * duration above this would not fit the simulator
MAX_TOKENS = 1_000_000  # per request prompt or output: far beyond any model's context


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
    if not (np.isfinite(rate) and np.isfinite(duration) and rate > 0 and duration > 0):
        raise MlcError(f"a generated trace needs a finite rate > 0 and duration > 0 (got "
                       f"{rate}, {duration})")
    if rate * duration > MAX_GENERATED_REQUESTS:
        raise MlcError(f"rate {rate:g}/s over {duration:g} s is about {rate * duration:,.0f} "
                       f"requests, more than the {MAX_GENERATED_REQUESTS:,} a simulation "
                       "holds; lower the rate or the duration")
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


def _request(doc: dict, where: str) -> Request:
    """One trace record -> Request; every field checked (type, finite, range) with `where`
    (file:line) and the field's name in the error."""
    missing = [key for key in ("id", "max_new_tokens", "arrival") if key not in doc]
    if "prompt_tokens" not in doc and "prompt" not in doc:
        missing.append("prompt_tokens (or prompt)")
    if missing:
        raise MlcError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(doc["id"], (str, int)) or isinstance(doc["id"], bool):
        raise MlcError(f"{where}: id must be a string or an integer, got {doc['id']!r}")
    if "prompt_tokens" in doc:
        prompt = check_number(doc["prompt_tokens"], f"{where}: prompt_tokens", low=1,
                              high=MAX_TOKENS, integer=True)
    elif isinstance(doc["prompt"], str):
        prompt = max(1, round(len(doc["prompt"]) / CHARS_PER_TOKEN))
    else:
        raise MlcError(f"{where}: prompt must be a string")
    max_new = check_number(doc["max_new_tokens"], f"{where}: max_new_tokens", low=1,
                           high=MAX_TOKENS, integer=True)
    arrival = check_number(doc["arrival"], f"{where}: arrival (seconds)", low=0)
    return Request(str(doc["id"]), float(arrival), prompt, max_new)


def jsonl_records(path: str | Path, what: str = "JSON-lines file"):
    """(line number, JSON object) for each non-blank line of a JSON-lines file; MlcError
    naming the file and line for unreadable, oversized or non-UTF-8 files, bad JSON (NaN and
    Infinity included), too deeply nested lines and non-object lines."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a FIFO, /dev/zero: never read those
        raise MlcError(f"{path}: is not a regular file; expected a {what}")
    try:
        if path.stat().st_size > MAX_TRACE_BYTES:
            raise MlcError(f"{path}: {path.stat().st_size:,} bytes, larger than any {what} "
                           f"mlc reads ({MAX_TRACE_BYTES:,} bytes)")
        data = path.read_bytes()
    except OSError as err:
        raise MlcError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise MlcError(f"{path}:{line}: not UTF-8 text; expected a {what} (one JSON object "
                       "a line)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = parse_json(line, f"{path}:{number}")
        if not isinstance(record, dict):
            raise MlcError(f"{path}:{number}: expected a JSON object, got "
                           f"{type(record).__name__}")
        yield number, record


def read_trace(path: str | Path) -> list[Request]:
    """Requests from a JSON-lines file, sorted by arrival; MlcError names file and line."""
    requests = [_request(doc, f"{path}:{number}")
                for number, doc in jsonl_records(path, "request trace")]
    if not requests:
        raise MlcError(f"{path}: trace holds no requests")
    return sorted(requests, key=lambda r: r.arrival)
