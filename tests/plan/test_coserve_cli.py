"""`mlc plan coserve` as a user runs it: plan.json and report.json with the documented fields;
bad input exits 1 with one line saying what is wrong, and writes nothing."""

from __future__ import annotations

import json
import re

import pytest

from mlc.cli.testing import run_cli

BASE = ("plan", "coserve", "--model", "llama-3.1-8b", "--gpu", "a100-80gb", "--duration", "10")


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    out = tmp_path_factory.mktemp("coserve") / "plan"
    result = run_cli(*BASE, "--gpus", "2", "--rate", "4", "--slo-tpot", "45ms",
                     "--lora-rank", "8", "--trace", "bursty", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_plan_json_holds_what_the_serving_engine_reads(planned):
    out, _ = planned
    plan = json.loads((out / "plan.json").read_text())
    assert plan["model"] == "llama-3.1-8b" and plan["gpu"] == "a100-80gb"
    assert plan["gpus"] == 2 and plan["tp"] == 1 and plan["replicas"] == 2
    assert isinstance(plan["token_budget"], int) and 16 <= plan["token_budget"] <= 512
    assert plan["slo_tpot_ms"] == 45 and plan["lora_rank"] == 8
    finetune = plan["finetune"]
    assert 0 < finetune["max_tokens_per_iteration"] <= plan["token_budget"]
    assert 0 < finetune["backward_layers_per_iteration"] <= 32
    memory = plan["memory_bytes_per_gpu"]
    assert memory["weights"] == 16_060_000_000
    assert memory["kv_cache"] > 0 and memory["finetune_activations"] > 0
    assert sum(memory[k] for k in ("weights", "kv_cache", "finetune_activations", "lora_state",
                                   "reserve")) <= 80 * 2**30


def test_report_compares_the_three_strategies(planned):
    out, printed = planned
    report = json.loads((out / "report.json").read_text())
    assert printed == report and report["trace"] == "bursty"
    for name in ("coserve", "separate", "temporal"):
        assert 0 <= report[name]["slo_attainment"] <= 1
        assert report[name]["inference_tokens_per_s"] >= 0
        assert report[name]["finetune_tokens_per_s"] >= 0


def test_text_summary_and_trace_file(tmp_path):
    (tmp_path / "t.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "prompt_tokens": 100, "max_new_tokens": 50,
                    "arrival": i * 0.5}) + "\n" for i in range(10)))
    result = run_cli(*BASE, "--slo-tpot", "0.045s", "--trace", tmp_path / "t.jsonl",
                     "--out", tmp_path / "p")
    assert result.returncode == 0, result.stderr
    assert "token budget" in result.stdout and "coserve" in result.stdout
    assert json.loads((tmp_path / "p" / "report.json").read_text())["requests"] == 10


@pytest.mark.parametrize("args, message", [  # a later --model overrides BASE's
    (("--model", "llama-3.1-70b", "--rate", "1", "--slo-tpot", "45ms", "--tp", "1"),
     r"does not fit 1 x a100-80gb: .* short by \d+\.\d GiB"),
    (("--rate", "1", "--slo-tpot", "5ms"), r"minimum achievable TPOT .* is 12\.5 ms"),
    (("--rate", "1", "--slo-tpot", "fast"), r"--slo-tpot 'fast': expected a positive time"),
    (("--slo-tpot", "45ms"), r"--rate is required"),
    (("--rate", "1", "--slo-tpot", "45ms", "--gpus", "3", "--tp", "2"),
     r"--gpus 3 is not a multiple of --tp 2"),
    (("--rate", "1", "--slo-tpot", "45ms", "--trace", "BAD"), r"BAD:2: not valid JSON"),
])
def test_bad_input_exits_1_with_one_line_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "BAD").write_text('{"id": 1, "prompt_tokens": 3, "max_new_tokens": 2, '
                                  '"arrival": 0}\n{oops\n')
    args = tuple(str(tmp_path / a) if a == "BAD" else a for a in args)
    message = message.replace("BAD", re.escape(str(tmp_path / "BAD")))
    result = run_cli(*BASE, *args, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out").exists()
