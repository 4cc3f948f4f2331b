"""Hostile input to `mlc plan serve` and `mlc plan coserve`: every bad file, field and option
ends in one clear line (exit 1, or 2 for a bad option), names the file, line and field, and
writes nothing; a plan never holds NaN; --out is refused before any planning runs; and a
--replan reuses cached stage-1 results only after re-checking them."""

from __future__ import annotations

import json
import re

import pytest

from mlc.cli.testing import refusal_line, run_cli
from mlc.compiler.errors import MlcError
from mlc.compiler.plan.coral.cache import stage1_document
from mlc.compiler.plan.coral.catalog import load_catalog
from mlc.compiler.plan.coral.perf import DEFAULT_EFFICIENCY, Workload
from mlc.compiler.plan.coral.planner import run_stage1_all
from mlc.compiler.plan.models import load_model_config
from mlc.compiler.superopt.cost.hardware import load_gpu

DEMAND = {"mistral-7b": {"requests_per_s": 2, "prompt_tokens": 256, "output_tokens": 128}}
COSERVE = ("plan", "coserve", "--model", "llama-3.1-8b", "--duration", "5")
DEEP = "[" * 100_000 + "]" * 100_000
# 1e999 reads as inf: refused by the JSON reader itself or by the field check after it
INF = r"inf is not a finite number|not valid JSON \(1e999 overflows a float"


def strict_json(path):
    """Parse a file as strict JSON: NaN / Infinity are refused, as every JSON reader does."""
    def refuse(name):
        raise ValueError(f"{name} in {path}")
    return json.loads(path.read_text(), parse_constant=refuse)


def assert_refused(result, pattern: str, out, code: int = 1) -> None:
    """Exit `code`, one `error:` line matching `pattern` (exit 1), nothing written at `out`."""
    line = refusal_line(result, code)
    assert re.search(pattern, line if code == 1 else result.stderr), result.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ---- demand and GPU files ---------------------------------------------------------------------

DEMAND_FILES = [  # (file name, content, what the error names)
    ("nan.json", '{"mistral-7b": {"requests_per_s": NaN, "prompt_tokens": 256, '
                 '"output_tokens": 128}}', r"nan.json: not valid JSON \(NaN"),
    ("inf.json", '{"mistral-7b": {"requests_per_s": 1e999, "prompt_tokens": 256, '
                 '"output_tokens": 128}}', rf"inf.json: (.*requests_per_s: {INF})"),
    ("neg.json", '{"mistral-7b": {"requests_per_s": -1, "prompt_tokens": 256, '
                 '"output_tokens": 128}}', r"requests_per_s: -1 must be at least 0"),
    ("frac.json", '{"mistral-7b": {"requests_per_s": 1, "prompt_tokens": 25.5, '
                  '"output_tokens": 128}}', r"prompt_tokens: expected a whole number"),
    ("bool.json", '{"mistral-7b": {"requests_per_s": true, "prompt_tokens": 256, '
                  '"output_tokens": 128}}', r"requests_per_s: expected a number, got True"),
    ("str.json", '{"mistral-7b": {"requests_per_s": "2", "prompt_tokens": 256, '
                 '"output_tokens": 128}}', r"requests_per_s: expected a number, got '2'"),
    ("zero.json", '{"mistral-7b": {"requests_per_s": 1, "prompt_tokens": 0, '
                  '"output_tokens": 128}}', r"prompt_tokens: 0 must be greater than 0"),
    ("huge.json", '{"mistral-7b": {"requests_per_s": 1e300, "prompt_tokens": 1, '
                  '"output_tokens": 1}}', r"requests_per_s: 1e\+300 must be at most"),
    ("tpot.json", '{"mistral-7b": {"requests_per_s": 1, "prompt_tokens": 1, '
                  '"output_tokens": 1, "tpot_ms": -5}}', r"tpot_ms: -5 must be greater than 0"),
    ("list.json", "[1, 2]", r"expected a non-empty mapping"),
    ("deep.json", DEEP, r"deep.json: JSON nested too deeply"),
    ("nan.yaml", "mistral-7b:\n  requests_per_s: .nan\n  prompt_tokens: 256\n"
                 "  output_tokens: 128\n", r"nan.yaml: mistral-7b.requests_per_s: nan is not"),
    ("inf.yaml", "mistral-7b:\n  requests_per_s: 1\n  prompt_tokens: 256\n"
                 "  output_tokens: -.inf\n", r"output_tokens: -inf is not a finite"),
    ("deep.yaml", "[" * 800 + "]" * 800, r"deep.yaml: YAML nested too deeply"),
    ("deep2.yaml", "[" * 100 + "]" * 100, r"deep2.yaml: nested more than 64 levels deep"),
    ("alias.yaml", "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", r"repeats a YAML anchor"),
    ("cycle.yaml", "a: &a [*a]\n", r"repeats a YAML anchor"),
    ("tag.yaml", "a: !!python/object/apply:os.system ['echo pwned']\n", r"not valid YAML"),
    ("date.yaml", "2024-01-01: 3\n", r"key datetime.date\(2024, 1, 1\) is not a string"),
    ("bin.yaml", b"\xff\xfe\x00garbage", r"bin.yaml: not UTF-8 text"),
]


@pytest.mark.parametrize("name, content, message", DEMAND_FILES,
                         ids=[case[0] for case in DEMAND_FILES])
def test_bad_demand_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_cli("plan", "serve", "--demand", path, "--out", tmp_path / "out")
    assert_refused(result, message, tmp_path / "out")


def test_binary_file_given_as_demand_json(tmp_path):
    (tmp_path / "d.json").write_bytes(bytes(range(256)) * 4)
    result = run_cli("plan", "serve", "--demand", tmp_path / "d.json", "--out", tmp_path / "out")
    assert_refused(result, r"d.json: not UTF-8 text", tmp_path / "out")


GPU_FILES = [
    ({"l4": {"price_per_hour": float("nan")}}, r"g.json: not valid JSON \(NaN"),
    ({"l4": {"price_per_hour": -1}}, r"g.json: l4.price_per_hour: -1 must be at least 0"),
    ({"l4": {"available": 1.5}}, r"l4.available: expected a whole number"),
    ({"l4": {"available": -2}}, r"l4.available: -2 must be at least 0"),
    ({"l4": {"bandwidth_efficiency": 0}}, r"bandwidth_efficiency: 0 must be greater than 0"),
    ({"l4": {"flops_efficiency": 3}}, r"flops_efficiency: 3 must be at most 1"),
    ({"l4": {"speed": 3}}, r"unknown field\(s\) speed"),
    ({"l4": 5}, r"GPU 'l4': expected an object"),
    ({"b200": {"available": 1}}, r"unknown GPU 'b200'; known GPUs: a100-40gb, a100-80gb"),
]


@pytest.mark.parametrize("doc, message", GPU_FILES)
def test_bad_gpu_file(tmp_path, doc, message):
    (tmp_path / "d.json").write_text(json.dumps(DEMAND))
    (tmp_path / "g.json").write_text(json.dumps(doc))  # json.dumps writes float nan as NaN
    result = run_cli("plan", "serve", "--demand", tmp_path / "d.json", "--gpus",
                     tmp_path / "g.json", "--out", tmp_path / "out")
    assert_refused(result, message, tmp_path / "out")


@pytest.mark.parametrize("field, value, message", [
    ("dram_bandwidth", "NaN", r"not valid JSON \(NaN"),
    ("dram_bandwidth", "1e999", rf"gpu.json: (.*dram_bandwidth: {INF})"),
    ("sm_count", "-4", r"sm_count: -4 must be greater than 0"),
    ("sm_count", "4.5", r"sm_count: expected a whole number"),
    ("memory_bytes", '"80GB"', r"memory_bytes: expected a number, got '80GB'"),
    ("usd_per_hour", "-1", r"usd_per_hour: -1 must be at least 0"),
    ("name", "7", r"name must be a string"),
])
def test_bad_gpu_spec_file(tmp_path, field, value, message):
    doc = json.loads(json.dumps(load_gpu("l4").__dict__))
    text = json.dumps({**doc, field: "@"}).replace('"@"', value)
    (tmp_path / "gpu.json").write_text(text)
    with pytest.raises(MlcError, match=message):
        load_gpu(tmp_path / "gpu.json")


def test_names_cannot_reach_other_spec_folders():
    with pytest.raises(MlcError, match="unknown GPU '../models/tiny-llama'"):
        load_gpu("../models/tiny-llama")
    with pytest.raises(MlcError, match="unknown model '../hardware/h100'; known models"):
        load_model_config("../hardware/h100")


# ---- coserve options and traces ---------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("--rate", "nan", "--slo-tpot", "45ms"), r"--rate.*'nan' is not a finite number"),
    (("--rate", "inf", "--slo-tpot", "45ms"), r"--rate.*'inf' is not a finite number"),
    (("--rate", "0", "--slo-tpot", "45ms"), r"--rate.*x>0"),
    (("--rate", "-1", "--slo-tpot", "45ms"), r"--rate.*x>0"),
    (("--rate", "1", "--gpus", "0", "--slo-tpot", "45ms"), r"--gpus.*1<=x<=64"),
    (("--rate", "1", "--tp", "0", "--slo-tpot", "45ms"), r"--tp.*1<=x<=8"),
    (("--rate", "1", "--lora-rank", "0", "--slo-tpot", "45ms"), r"--lora-rank"),
    (("--rate", "1", "--slo-tpot", "45ms", "--duration", "nan"), r"--duration.*not a finite"),
    (("--rate", "1", "--slo-tpot", "45ms", "--duration", "0"), r"--duration"),
    (("--rate", "1", "--slo-tpot", "45ms", "--seed", "-1"), r"--seed"),
    (("--rate", "1", "--slo-tpot", "45ms", "--model", "llama-9b"),
     r"--model.*'llama-9b' is not one of 'llama-3.1-70b'"),
])
def test_bad_coserve_option_is_a_usage_error(tmp_path, args, message):
    result = run_cli(*COSERVE, *args, "--out", tmp_path / "out")
    assert_refused(result, message, tmp_path / "out", code=2)


@pytest.mark.parametrize("args, message", [
    (("--rate", "1", "--slo-tpot", "nan"), r"--slo-tpot 'nan': expected a positive time"),
    (("--rate", "1", "--slo-tpot", "-5ms"), r"--slo-tpot '-5ms': expected a positive time"),
    (("--rate", "1", "--slo-tpot", "1e999"), r"--slo-tpot '1e999': expected a positive"),
    (("--rate", "1", "--slo-tpot", "0ms"), r"--slo-tpot '0ms': expected a positive time"),
    (("--rate", "1", "--slo-tpot", "2h"), r"--slo-tpot '2h': expected a positive time"),
    (("--rate", "1", "--gpus", "3", "--tp", "3", "--slo-tpot", "45ms"),
     r"--tp 3 does not split the 32 attention heads of llama-3.1-8b"),
    (("--rate", "1", "--slo-tpot", "45ms", "--gpu", "b200"),
     r"unknown GPU 'b200'; known GPUs: a100-40gb"),
    (("--rate", "1e9", "--slo-tpot", "45ms"), r"more than the 2,000,000 a simulation holds"),
    (("--rate", "1", "--gpus", "64", "--slo-tpot", "45ms", "--duration", "3600"),
     r"simulating 64 replicas for 3600 s would take too long"),
])
def test_bad_coserve_value_is_one_line(tmp_path, args, message):
    result = run_cli(*COSERVE, *args, "--out", tmp_path / "out")
    assert_refused(result, message, tmp_path / "out")


TRACE_LINES = [  # second line of a trace whose first line is valid
    ('{"id": "b", "prompt_tokens": 5, "max_new_tokens": 4, "arrival": NaN}',
     r"t.jsonl:2: not valid JSON \(NaN"),
    ('{"id": "b", "prompt_tokens": 5, "max_new_tokens": 4, "arrival": Infinity}',
     r"t.jsonl:2: not valid JSON \(Infinity"),
    ('{"id": "b", "prompt_tokens": 5, "max_new_tokens": 4, "arrival": 1e999}',
     rf"t.jsonl:2: (arrival \(seconds\): {INF})"),
    ('{"id": "b", "prompt_tokens": 5, "max_new_tokens": 4, "arrival": "soon"}',
     r"t.jsonl:2: arrival \(seconds\): expected a number, got 'soon'"),
    ('{"id": "b", "prompt_tokens": 5, "max_new_tokens": 1e30, "arrival": 0}',
     r"t.jsonl:2: max_new_tokens: 1e\+30 must be at most"),
    ('{"id": "b", "prompt_tokens": 2.5, "max_new_tokens": 4, "arrival": 0}',
     r"t.jsonl:2: prompt_tokens: expected a whole number"),
    ('{"id": [1], "prompt_tokens": 5, "max_new_tokens": 4, "arrival": 0}',
     r"t.jsonl:2: id must be a string or an integer"),
    ('{"id": "b", "prompt": 5, "max_new_tokens": 4, "arrival": 0}',
     r"t.jsonl:2: prompt must be a string"),
    ("[" * 5000 + "]" * 5000, r"t.jsonl:2: JSON nested too deeply"),
]


@pytest.mark.parametrize("line, message", TRACE_LINES)
def test_bad_coserve_trace_line(tmp_path, line, message):
    good = json.dumps({"id": "a", "prompt_tokens": 5, "max_new_tokens": 4, "arrival": 0})
    (tmp_path / "t.jsonl").write_text(good + "\n" + line + "\n")
    result = run_cli(*COSERVE, "--slo-tpot", "45ms", "--trace", tmp_path / "t.jsonl",
                     "--out", tmp_path / "out")
    assert_refused(result, message, tmp_path / "out")


def test_binary_coserve_trace(tmp_path):
    (tmp_path / "t.jsonl").write_bytes(b'{"id": 1}\n' + bytes(range(128, 256)))
    result = run_cli(*COSERVE, "--slo-tpot", "45ms", "--trace", tmp_path / "t.jsonl",
                     "--out", tmp_path / "out")
    assert_refused(result, r"t.jsonl:2: not UTF-8 text", tmp_path / "out")


# ---- --out and --replan -----------------------------------------------------------------------

def test_out_holding_user_files_is_refused_before_planning(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(DEMAND))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    result = run_cli("plan", "serve", "--demand", tmp_path / "d.json", "--out", tmp_path / "mine")
    assert result.returncode == 1 and "mlc did not write (notes.txt)" in result.stderr
    assert "planning" not in result.stderr  # refused at the start, not after the MILP
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_out_holding_the_demand_is_refused(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "d.json").write_text(json.dumps(DEMAND))
    result = run_cli("plan", "serve", "--demand", tmp_path / "p" / "d.json", "--out",
                     tmp_path / "p")
    assert result.returncode == 1 and "holds the input" in result.stderr
    assert (tmp_path / "p" / "d.json").is_file()


def test_coserve_out_holding_its_trace_is_refused(tmp_path):
    (tmp_path / "p").mkdir()
    trace = tmp_path / "p" / "t.jsonl"
    trace.write_text(json.dumps({"id": 1, "prompt_tokens": 5, "max_new_tokens": 4,
                                 "arrival": 0}) + "\n")
    result = run_cli(*COSERVE, "--slo-tpot", "45ms", "--trace", trace, "--out", tmp_path / "p")
    assert result.returncode == 1 and "holds the input" in result.stderr
    assert trace.is_file()


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-plan")
    (folder / "d.json").write_text(json.dumps(DEMAND))
    result = run_cli("plan", "serve", "--demand", folder / "d.json", "--out", folder / "p")
    assert result.returncode == 0, result.stderr
    return folder / "p"


def test_replan_in_place_replaces_the_plan_atomically(plan_dir, tmp_path):
    """--replan P --out P: P is read whole first, then replaced only by a complete new plan."""
    (tmp_path / "g.json").write_text(json.dumps({"l4": {"price_per_hour": 0.1}}))
    result = run_cli("plan", "serve", "--replan", plan_dir, "--gpus", tmp_path / "g.json",
                     "--out", plan_dir, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stage1_reused"] == ["mistral-7b"]
    plan = strict_json(plan_dir / "plan.json")
    assert plan["inputs"]["gpus"] == {"l4": {"price_per_hour": 0.1}}
    strict_json(plan_dir / "report.json")
    assert not [p for p in plan_dir.parent.iterdir() if p.name.startswith(".p.")]
    # a failing re-plan in place leaves the previous plan as it was
    (tmp_path / "bad.json").write_text(json.dumps({"l4": {"price_per_hour": -1}}))
    before = (plan_dir / "plan.json").read_text()
    result = run_cli("plan", "serve", "--replan", plan_dir, "--gpus", tmp_path / "bad.json",
                     "--out", plan_dir)
    assert result.returncode == 1 and "price_per_hour: -1" in result.stderr
    assert (plan_dir / "plan.json").read_text() == before


def test_tampered_stage1_cache_is_rerun_with_a_note(plan_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "plan.json").write_text((plan_dir / "plan.json").read_text())
    stage1 = json.loads((plan_dir / "stage1.json").read_text())
    stage1["models"]["mistral-7b"]["candidates"][0]["perf"]["throughput"] = 1e6
    (copy / "stage1.json").write_text(json.dumps(stage1))
    result = run_cli("plan", "serve", "--replan", copy, "--out", tmp_path / "new", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stage1_reused"] == []
    assert any("re-computed estimate" in line and "stage 1 was rerun" in line
               for line in report["notes"])
    plan = strict_json(tmp_path / "new" / "plan.json")
    for replica in plan["models"]["mistral-7b"]["replicas"]:
        assert replica["throughput_requests_per_s"] < 1e5


@pytest.mark.parametrize("edit, note", [
    (lambda m: m["candidates"][0]["perf"].update(fits=False), "not a valid configuration"),
    (lambda m: m["candidates"][0].update(stages="oops"), "is malformed"),
    (lambda m: m["candidates"][0].update(stages=[["b200", 1, 32]]), "unknown GPU 'b200'"),
    (lambda m: m["candidates"][0].update(stages=[["l4", 1, 31]]), "not a valid configuration"),
    (lambda m: m["homogeneous"][0]["perf"].update(tpot_s=0.0), "re-computed estimate"),
    (lambda m: m["candidates"].append(m["candidates"][0]), "dominated"),
    (lambda m: m.pop("candidates"), "is malformed"),
])
def test_every_cached_column_is_rechecked(edit, note):
    catalog = load_catalog(only=["l4", "l40s"])
    models = {"mistral-7b": load_model_config("mistral-7b")}
    demand = {"mistral-7b": Workload(3.0, 256, 128)}
    first, _ = run_stage1_all(models, demand, catalog, DEFAULT_EFFICIENCY, mixed=False)
    doc = json.loads(json.dumps(stage1_document(first, catalog, DEFAULT_EFFICIENCY)))
    _, reused = run_stage1_all(models, demand, catalog, DEFAULT_EFFICIENCY, doc, mixed=False)
    assert reused == ["mistral-7b"]  # the untouched cache is trusted
    edit(doc["models"]["mistral-7b"])
    notes = []
    again, reused = run_stage1_all(models, demand, catalog, DEFAULT_EFFICIENCY, doc,
                                   mixed=False, notes=notes)
    assert reused == [] and len(notes) == 1 and note in notes[0], notes
    assert [c.perf for c in again["mistral-7b"].candidates] == \
        [c.perf for c in first["mistral-7b"].candidates]


@pytest.mark.parametrize("plan_text, message", [
    ("NaN", r"plan.json: not valid JSON"),
    ('{"inputs": 3}', r"plan.json: not a plan from `mlc plan serve`"),
    ('{"inputs": {"demand": {"mistral-7b": {"requests_per_s": 1e999, "prompt_tokens": 5, '
     '"output_tokens": 5}}}}', rf"plan.json: (mistral-7b.requests_per_s: {INF})"),
    ('{"inputs": {"demand": {"mistral-7b": {"requests_per_s": 1, "prompt_tokens": 5, '
     '"output_tokens": 5}}, "gpus": {"l4": {"available": "lots"}}}}',
     r"plan.json: l4.available: expected a number, got 'lots'"),
])
def test_bad_previous_plan(tmp_path, plan_text, message):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "plan.json").write_text(plan_text)
    (tmp_path / "old" / "stage1.json").write_text("{}")
    result = run_cli("plan", "serve", "--replan", tmp_path / "old", "--out", tmp_path / "out")
    assert_refused(result, message, tmp_path / "out")
