"""`mlc serve` end to end on the tiny model, through the CLI's error handling."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlc.cli.common import handle_errors
from mlc.cli.serve_cmd import parse_duration, serve_command


@pytest.fixture
def plan_dir(tmp_path):
    folder = tmp_path / "plan"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(
        {"model": "llama-3.1-8b", "token_budget": 16, "slo_tpot_ms": 200.0, "lora_rank": 4}))
    lines = [{"id": "r1", "prompt": [5, 6, 7, 8, 9, 10], "max_new_tokens": 4},
             {"id": "r2", "text": "hello there", "max_new_tokens": 3, "arrival": 0.01},
             {"id": "r3", "prompt": list(range(30)), "max_new_tokens": 2}]
    (folder / "trace.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "data.jsonl").write_text('{"text": "co-serving finetunes in spare tokens"}\n'
                                       '{"tokens": [1, 2, 3, 4, 5, 6, 7, 8]}\n')
    return folder


def test_tiny_run_writes_the_three_reports(plan_dir):
    pytest.importorskip("mlc.compiler.plan.coserve.scheduler")
    args = [str(plan_dir), "--model", "tiny-llama", "--requests", str(plan_dir / "trace.jsonl"),
            "--finetune", str(plan_dir / "data.jsonl"), "--epochs", "2", "--json"]
    result = CliRunner().invoke(serve_command, args)
    assert result.exit_code == 0, result.output
    out = plan_dir / "serve"
    latencies = json.loads((out / "latencies.json").read_text())
    assert {r["id"] for r in latencies["requests"]} == {"r1", "r2", "r3"}
    assert set(latencies["requests"][0]) >= {"ttft", "tpot", "e2e", "output_tokens"}
    finetune = json.loads((out / "finetune.json").read_text())
    assert len(finetune["steps"]) == 4 and finetune["finetune_tokens_per_second"] > 0
    assert set(finetune["steps"][0]) >= {"step", "loss"}
    report = json.loads((out / "report.json").read_text())
    assert report["finished"] == report["requests"] == 3
    for key in ("tpot_mean_ms", "tpot_p50_ms", "tpot_p99_ms", "slo_attainment",
                "inference_tokens_per_second", "finetune_tokens_per_second", "loss_first",
                "loss_last"):
        assert report[key] is not None, key
    assert report["finetune_tokens"] == 2 * (len("co-serving finetunes in spare tokens") - 1 + 7)


def run_through_cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        handle_errors(serve_command, [str(a) for a in args])
    return done.value.code, capsys.readouterr().err


def test_malformed_request_line_is_one_clear_error(plan_dir, capsys):
    trace = plan_dir / "trace.jsonl"
    trace.write_text(trace.read_text() + '{"id": "r4", "prompt": "oops", "max_new_tokens": 2}\n')
    code, err = run_through_cli([plan_dir, "--model", "tiny-llama", "--requests", trace], capsys)
    assert code == 1
    assert f"{trace}:4: needs 'prompt'" in err and "Traceback" not in err
    assert not (plan_dir / "serve").exists()


def test_large_plan_model_asks_for_a_tiny_one(plan_dir, capsys):
    code, err = run_through_cli([plan_dir, "--requests", plan_dir / "trace.jsonl"], capsys)
    assert code == 1 and "pass --model tiny-llama" in err


def test_durations():
    assert parse_duration("45ms") == pytest.approx(0.045)
    assert parse_duration("0.05s") == pytest.approx(0.05)
    assert parse_duration("45") == pytest.approx(0.045)
