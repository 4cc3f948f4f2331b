"""Hostile input to `mlc serve`: bad trace and finetuning lines, plan fields, options and weight
files end in one clear line naming the file, line and field, before any serving starts and
without writing anything; an --out that would delete the plan is refused at once; requests
a stopped run never admitted are reported, not dropped; a diverging finetune is an error."""

from __future__ import annotations

import json
import re
import struct
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from mlc.cli.testing import refusal_line, run_cli
from mlc.compiler.errors import MlcError
from mlc.runtime.serve.engine import Request, ServingEngine
from mlc.runtime.serve.finetune import FinetuneJob
from mlc.runtime.serve.loop import serve_trace
from mlc.runtime.serve.model import LlamaModel
from mlc.runtime.serve.report import latencies_doc, summary_doc
from mlc.runtime.serve.weights import hf_tensors

GOOD_LINE = json.dumps({"id": "r1", "prompt": [5, 6, 7], "max_new_tokens": 2})


@pytest.fixture
def plan_dir(tmp_path):
    folder = tmp_path / "plan"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(
        {"model": "tiny-llama", "token_budget": 16, "slo_tpot_ms": 200.0, "lora_rank": 4}))
    (folder / "trace.jsonl").write_text(GOOD_LINE + "\n")
    return folder


def serve(plan_dir, *args):
    """`mlc serve PLAN --requests PLAN/trace.jsonl ARGS`, output to a folder beside the plan."""
    return run_cli("serve", plan_dir, "--requests", plan_dir / "trace.jsonl",
                   "--out", plan_dir.parent / "out", *args)


def assert_refused(result, pattern: str, plan_dir, code: int = 1) -> None:
    """Exit `code`, one `error:` line matching `pattern` (exit 1), nothing written."""
    line = refusal_line(result, code)
    assert re.search(pattern, line if code == 1 else result.stderr), result.stderr
    assert not (plan_dir.parent / "out").exists()


REQUEST_LINES = [
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 2, "arrival": NaN}',
     r"trace.jsonl:2: not valid JSON \(NaN"),
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 2, "arrival": -Infinity}',
     r"trace.jsonl:2: not valid JSON \(-Infinity"),
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 2, "arrival": 1e999}',
     r"trace.jsonl:2: (arrival \(seconds\): inf is not a finite number|not valid JSON "
     r"\(1e999 overflows a float)"),
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 2, "arrival": 1e12}',
     r"trace.jsonl:2: arrival \(seconds\): 1000000000000.0 must be at most 604800"),
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 2, "arrival": -1}',
     r"trace.jsonl:2: arrival \(seconds\): -1 must be at least 0"),
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 2, "arrival": "1s"}',
     r"trace.jsonl:2: arrival \(seconds\): expected a number, got '1s'"),
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 2.5}',
     r"trace.jsonl:2: max_new_tokens: expected a whole number"),
    ('{"id": "r2", "prompt": [1], "max_new_tokens": 1e30}',
     r"trace.jsonl:2: max_new_tokens: 1e\+30 must be at most"),
    ('{"id": "r2", "prompt": [1]}', r"trace.jsonl:2: max_new_tokens: expected a number, got None"),
    ('{"id": "r2", "prompt": [1, 999999], "max_new_tokens": 2}',
     r"trace.jsonl:2: token id 999999 outside the vocabulary"),
    ('{"id": "r2", "prompt": [1.5], "max_new_tokens": 2}', r"trace.jsonl:2: needs 'prompt'"),
    ('{"id": "r1", "prompt": [1], "max_new_tokens": 2}', r"trace.jsonl:2: needs a unique 'id'"),
    ("[" * 5000 + "]" * 5000, r"trace.jsonl:2: JSON nested too deeply"),
    ("7", r"trace.jsonl:2: expected a JSON object, got int"),
]


@pytest.mark.parametrize("line, message", REQUEST_LINES)
def test_bad_request_line(plan_dir, line, message):
    (plan_dir / "trace.jsonl").write_text(GOOD_LINE + "\n" + line + "\n")
    assert_refused(serve(plan_dir), message, plan_dir)


def test_binary_trace(plan_dir):
    (plan_dir / "trace.jsonl").write_bytes(GOOD_LINE.encode() + b"\n\x80\x81\xfe\n")
    assert_refused(serve(plan_dir), r"trace.jsonl:2: not UTF-8 text", plan_dir)


@pytest.mark.parametrize("line, message", [
    ('{"tokens": [1, 2, NaN]}', r"data.jsonl:1: not valid JSON \(NaN"),
    ('{"tokens": [1, 2.5]}', r"data.jsonl:1: needs 'tokens'"),
    ('{"tokens": [1]}', r"data.jsonl:1: a finetuning sequence needs at least 2 tokens"),
    ('{"tokens": [1, -3]}', r"data.jsonl:1: token id -3 outside the vocabulary"),
    ('{"text": 5}', r"data.jsonl:1: needs 'tokens'"),
])
def test_bad_finetune_line(plan_dir, line, message):
    (plan_dir / "data.jsonl").write_text(line + "\n")
    result = serve(plan_dir, "--finetune", plan_dir / "data.jsonl")
    assert_refused(result, message, plan_dir)


@pytest.mark.parametrize("field, value, message", [
    ("token_budget", "0", r"plan.json: token_budget: 0 must be greater than 0"),
    ("token_budget", "1e9", r"plan.json: token_budget: 1000000000.0 must be at most 8192"),
    ("token_budget", "12.5", r"plan.json: token_budget: expected a whole number"),
    ("slo_tpot_ms", "NaN", r"plan.json: not valid JSON \(NaN"),
    ("slo_tpot_ms", "-5", r"plan.json: slo_tpot_ms: -5 must be greater than 0"),
    ("slo_tpot_ms", '"45ms"', r"plan.json: slo_tpot_ms: expected a number, got '45ms'"),
    ("lora_rank", "true", r"plan.json: lora_rank: expected a number, got True"),
    ("model", "5", r"plan.json: model must be a model name"),
    ("model", '"../hardware/h100"', r"unknown model '../hardware/h100'; known models"),
])
def test_bad_plan_field(plan_dir, field, value, message):
    plan = json.loads((plan_dir / "plan.json").read_text())
    text = json.dumps({**plan, field: "@"}).replace('"@"', value)
    (plan_dir / "plan.json").write_text(text)
    assert_refused(serve(plan_dir), message, plan_dir)


def test_binary_and_deep_plan_json(plan_dir):
    (plan_dir / "plan.json").write_bytes(bytes(range(256)))
    assert_refused(serve(plan_dir), r"plan.json: not UTF-8 text", plan_dir)
    (plan_dir / "plan.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_refused(serve(plan_dir), r"plan.json: JSON nested too deeply", plan_dir)


@pytest.mark.parametrize("args, message", [
    (("--lr", "nan"), r"--lr.*'nan' is not a finite number"),
    (("--lr", "inf"), r"--lr.*inf is not in the range 0<x<=10"),
    (("--lr", "0"), r"--lr"),
    (("--lr", "-1"), r"--lr"),
    (("--max-seconds", "nan"), r"--max-seconds.*'nan' is not a finite number"),
    (("--max-seconds", "inf"), r"--max-seconds.*'inf' is not a finite number"),
    (("--max-seconds", "0"), r"--max-seconds"),
    (("--budget", "0"), r"--budget.*1<=x<=8192"),
    (("--budget", "99999999"), r"--budget.*1<=x<=8192"),
    (("--lora-rank", "0"), r"--lora-rank"),
    (("--seed", "-1"), r"--seed"),
    (("--threads", "0"), r"--threads"),
    (("--epochs", "0"), r"--epochs"),
])
def test_bad_option_is_a_usage_error(plan_dir, args, message):
    assert_refused(serve(plan_dir, *args), message, plan_dir, code=2)


@pytest.mark.parametrize("value", ["fast", "nan", "-5ms", "0", "1e999", "2h", "90s"])
def test_bad_slo_tpot(plan_dir, value):
    assert_refused(serve(plan_dir, "--slo-tpot", value),
                   rf"--slo-tpot '{re.escape(value)}': expected a positive time", plan_dir)


def test_unknown_model_lists_the_known_ones(plan_dir):
    assert_refused(serve(plan_dir, "--model", "gpt-5"),
                   r"unknown model 'gpt-5'; known models: llama-3.1-70b", plan_dir)


def test_out_equal_to_the_plan_is_refused_at_once(plan_dir):
    before = sorted(p.name for p in plan_dir.iterdir())
    result = run_cli("serve", plan_dir, "--requests", plan_dir / "trace.jsonl",
                     "--out", plan_dir)
    assert result.returncode == 1 and "is the command's input" in result.stderr
    assert "mlc: serving" not in result.stderr  # refused before the run, not after it
    assert sorted(p.name for p in plan_dir.iterdir()) == before


def test_out_holding_user_files_is_refused_at_once(plan_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    result = run_cli("serve", plan_dir, "--requests", plan_dir / "trace.jsonl",
                     "--out", tmp_path / "mine")
    assert result.returncode == 1 and "mlc did not write (thesis.tex)" in result.stderr
    assert "mlc: serving" not in result.stderr
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


# ---- weights ----------------------------------------------------------------------------------

def tiny_tensors() -> dict[str, torch.Tensor]:
    model = LlamaModel.from_config("tiny-llama", seed=0, lora_rank=4, lora_alpha=8.0)
    return {name: t.detach().clone().contiguous() for name, t in hf_tensors(model).items()}


def _with(name: str, tensor) -> dict:
    tensors = tiny_tensors()
    tensors[name] = tensor
    return tensors


def _nan_norm() -> dict:
    tensors = tiny_tensors()
    tensors["model.norm.weight"][3] = float("nan")
    return tensors


def _missing_head() -> dict:
    tensors = tiny_tensors()
    del tensors["lm_head.weight"]
    return tensors


def _header(doc: dict) -> bytes:
    text = json.dumps(doc).encode()
    return struct.pack("<Q", len(text)) + text


WEIGHT_FILES = [
    ("nan", _nan_norm, r"tensor model.norm.weight holds 1 NaN or infinite value"),
    ("huge f64", lambda: _with("model.norm.weight", torch.full((64,), 1e300,
                                                                dtype=torch.float64)),
     r"tensor model.norm.weight holds 64 NaN or infinite value\(s\) \(as float32\)"),
    ("shape", lambda: _with("lm_head.weight", torch.zeros(3, 3)),
     r"tensor lm_head.weight has shape \(3, 3\), tiny-llama needs \(256, 64\)"),
    ("int dtype", lambda: _with("lm_head.weight", torch.zeros(256, 64, dtype=torch.int32)),
     r"tensor lm_head.weight has dtype I32; weights must be one of F16, BF16, F32, F64"),
    ("bool dtype", lambda: _with("model.norm.weight", torch.ones(64, dtype=torch.bool)),
     r"tensor model.norm.weight has dtype BOOL"),
    ("missing", _missing_head, r"missing tensor\(s\) lm_head.weight for tiny-llama"),
    ("garbage", lambda: b"\x00\x01", r"cannot read safetensors weights \(.*header too small"),
    ("huge header", lambda: struct.pack("<Q", 10**12) + b"{}", r"header too large"),
    ("bad header json", lambda: _header({"x": {"dtype": "F32", "shape": [-1],
                                              "data_offsets": [0, 4]}}) + b"\0" * 4,
     r"cannot read safetensors weights"),
    ("offsets past end", lambda: _header({"x": {"dtype": "F32", "shape": [100],
                                               "data_offsets": [0, 400]}}) + b"\0" * 4,
     r"cannot read safetensors weights"),
    ("deep header", lambda: _header({"__metadata__": {"a": "[" * 1000}}) + b"",
     r"missing tensor\(s\)"),
]


@pytest.mark.parametrize("make, message", [case[1:] for case in WEIGHT_FILES],
                         ids=[case[0] for case in WEIGHT_FILES])
def test_bad_weights_file(plan_dir, make, message):
    content = make()
    path = plan_dir.parent / "w.safetensors"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        save_file(content, str(path))
    assert_refused(serve(plan_dir, "--weights", path), message, plan_dir)


def test_missing_weights_file(plan_dir):
    assert_refused(serve(plan_dir, "--weights", plan_dir / "nope.safetensors"),
                   r"nope.safetensors: cannot read safetensors weights", plan_dir)


# ---- the serving loop -------------------------------------------------------------------------

def everything_planner(engine: ServingEngine):
    """Decode all running requests, prefill every waiting prompt, finetune 8 tokens."""
    job = engine.finetune
    return SimpleNamespace(decode=[rid for rid, _ in engine.decode_ready()],
                           prefill=[(rid, left) for rid, left, _ in engine.prefill_waiting()],
                           finetune_tokens=8, backward_layers=2 if job else 0)


def test_requests_not_arrived_when_stopped_are_reported_not_dropped():
    model = LlamaModel.from_config("tiny-llama", seed=0)
    engine = ServingEngine(model)
    requests = [Request("now", [1, 2, 3], 2), Request("later", [4, 5], 2, arrival=3600.0)]
    outcome = serve_trace(engine, requests, everything_planner, max_seconds=2.0)
    assert outcome.stopped_by == "seconds" and outcome.not_admitted == ["later"]
    summary = summary_doc(engine, outcome, slo_tpot=0.1)
    assert summary["requests"] == 2 and summary["finished"] == 1
    assert latencies_doc(engine, outcome)["unfinished"] == ["later"]


def test_diverging_finetune_is_an_error_not_a_nan_loss():
    model = LlamaModel.from_config("tiny-llama", seed=0, lora_rank=4)
    with torch.no_grad():
        next(iter(model.lora_parameters())).fill_(float("inf"))
    job = FinetuneJob(model, [list(range(12))], lr=1e-3)
    engine = ServingEngine(model, job)
    with pytest.raises(MlcError, match=r"finetuning diverged: the loss of sequence 1 is nan"):
        serve_trace(engine, [Request("a", [1, 2], 1)], everything_planner)
