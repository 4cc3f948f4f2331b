"""Request traces and finetuning datasets as JSON lines, with byte-level tokenization.

    requests:  {"id": "r1", "prompt": [1, 2, 3] | "text": "hi", "max_new_tokens": 8,
                "arrival": 0.5}
    finetune:  {"tokens": [1, 2, 3]} | {"text": "some training text"}

A malformed line is an MlcError naming the file and line number."""

from __future__ import annotations

from pathlib import Path

from mlc.compiler.errors import MlcError
from mlc.compiler.plan.coserve.traces import MAX_TOKENS, jsonl_records
from mlc.compiler.safe_io import check_number

from .engine import Request

MAX_ARRIVAL_SECONDS = 7 * 24 * 3600.0  # a trace is replayed in real time: a week at most


def byte_tokens(text: str, vocab: int) -> list[int]:
    """UTF-8 bytes of `text`, each taken modulo `vocab`."""
    return [byte % vocab for byte in text.encode("utf-8")]


def _tokens(record: dict, key: str, vocab: int, where: str) -> list[int]:
    if isinstance(record.get("text"), str):
        return byte_tokens(record["text"], vocab)
    tokens = record.get(key)
    if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise MlcError(f"{where}: needs {key!r} (a list of token ids) or 'text' (a string)")
    if len(tokens) > MAX_TOKENS:
        raise MlcError(f"{where}: {len(tokens):,} tokens, more than the {MAX_TOKENS:,} mlc "
                       "serves in one sequence")
    bad = [t for t in tokens if not 0 <= t < vocab]
    if bad:
        raise MlcError(f"{where}: token id {bad[0]} outside the vocabulary [0, {vocab})")
    return tokens


def load_requests(path: Path, vocab: int) -> list[Request]:
    """Requests in file order. Requires per line: unique 'id', a non-empty prompt,
    'max_new_tokens' >= 1; 'arrival' (seconds, >= 0) defaults to 0."""
    requests, seen = [], set()
    for number, record in jsonl_records(path, "request trace"):
        where = f"{path}:{number}"
        rid = record.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) in seen:
            raise MlcError(f"{where}: needs a unique 'id' (string), got {rid!r}")
        prompt = _tokens(record, "prompt", vocab, where)
        if not prompt:
            raise MlcError(f"{where}: empty prompt")
        limit = check_number(record.get("max_new_tokens"), f"{where}: max_new_tokens", low=1,
                             high=MAX_TOKENS, integer=True)
        # a NaN or infinite arrival would never be admitted: the run would wait forever
        arrival = check_number(record.get("arrival", 0.0), f"{where}: arrival (seconds)",
                               low=0, high=MAX_ARRIVAL_SECONDS)
        seen.add(str(rid))
        requests.append(Request(str(rid), prompt, limit, float(arrival)))
    if not requests:
        raise MlcError(f"{path}: no requests")
    return requests


def load_finetune_data(path: Path, vocab: int) -> list[list[int]]:
    """Token sequences (each >= 2 tokens: one input predicting one target)."""
    sequences = []
    for number, record in jsonl_records(path, "finetuning data file"):
        tokens = _tokens(record, "tokens", vocab, f"{path}:{number}")
        if len(tokens) < 2:
            raise MlcError(f"{path}:{number}: a finetuning sequence needs at least 2 tokens")
        sequences.append(tokens)
    if not sequences:
        raise MlcError(f"{path}: no finetuning sequences")
    return sequences
