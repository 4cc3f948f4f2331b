"""`mlc plan serve` run as a user would: the plan directory's documents, --replan reusing
stage 1, and bad input as a one-line error naming the known choices, with nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from mlc.cli.testing import run_cli

SCHEMAS = Path(__file__).resolve().parents[2] / "specs" / "schemas"


def mlc(*args):
    return run_cli(*args)


DEMAND = {"qwen2.5-7b": {"requests_per_s": 12, "prompt_tokens": 512, "output_tokens": 128},
          "mistral-7b": {"requests_per_s": 4, "prompt_tokens": 256, "output_tokens": 256}}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coral")
    (folder / "demand.json").write_text(json.dumps(DEMAND))
    result = mlc("plan", "serve", "--demand", folder / "demand.json", "--out", folder / "p1",
                 "--json")
    assert result.returncode == 0, result.stderr
    return folder, json.loads(result.stdout)


def test_plan_documents(planned):
    folder, printed = planned
    report = json.loads((folder / "p1" / "report.json").read_text())
    plan = json.loads((folder / "p1" / "plan.json").read_text())
    assert printed == report
    for doc, schema in ((report, "report.schema.json"), (plan, "serving-plan.schema.json")):
        jsonschema.validate(doc, json.loads((SCHEMAS / schema).read_text()))
    assert report["goodput"] == pytest.approx(1.0) and report["cost_per_hour"] > 0
    assert report["solve_seconds"] < 30
    for name in ("homogeneous", "per_model"):
        base = report["baselines"][name]
        assert base["cost_per_hour"] >= report["cost_per_hour"] - 1e-6
        assert 0 <= base["goodput"] <= 1
    assert set(plan["models"]) == set(DEMAND)
    cost = 0.0
    for name, entry in plan["models"].items():
        capacity = sum(r["throughput_requests_per_s"] * r["count"] for r in entry["replicas"])
        assert capacity * plan["target_utilization"] >= DEMAND[name]["requests_per_s"] - 1e-6
        for replica in entry["replicas"]:
            assert replica["launch"].count("vllm serve") == 1
            assert f"--tensor-parallel-size {replica['tp']}" in replica["launch"]
            assert sum(s["layers"] for s in replica["stages"]) in (28, 32)
            cost += replica["cost_per_hour"] * replica["count"]
        sim = report["simulation"][name]
        assert sim["served_rate"] == pytest.approx(DEMAND[name]["requests_per_s"], rel=0.1)
        assert sim["utilization"] < 1
    assert cost == pytest.approx(report["cost_per_hour"], rel=1e-3)
    assert (folder / "p1" / "report.md").read_text().startswith("# mlc plan serve")


def test_replan_reuses_stage1_and_falls_back_to_goodput(planned):
    folder, _ = planned
    scarce = {gpu: {"available": 0} for gpu in
              ("h100", "h200", "a100-80gb", "a100-40gb", "l40s", "v100", "t4", "a10g")}
    scarce["l4"] = {"available": 2, "price_per_hour": 0.5}
    (folder / "scarce.json").write_text(json.dumps(scarce))
    result = mlc("plan", "serve", "--gpus", folder / "scarce.json", "--replan", folder / "p1",
                 "--out", folder / "p2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    plan = json.loads((folder / "p2" / "plan.json").read_text())
    assert sorted(report["stage1_reused"]) == sorted(DEMAND)
    assert report["stage2_seconds"] < 2
    assert report["mode"] == "goodput" and 0 < report["goodput"] < 1
    assert report["notes"] and "cannot be met" in report["notes"][0]
    assert sum(plan["gpus_used"].values()) <= 2 and set(plan["gpus_used"]) <= {"l4"}
    for base in report["baselines"].values():
        assert base["goodput"] <= report["goodput"] + 1e-9


def test_yaml_demand(tmp_path):
    (tmp_path / "d.yaml").write_text("mistral-7b:\n  requests_per_s: 2\n  prompt_tokens: 128\n"
                                     "  output_tokens: 64\n")
    result = mlc("plan", "serve", "--demand", tmp_path / "d.yaml", "--out", tmp_path / "p")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout


@pytest.mark.parametrize("demand,gpus,expected", [
    ({"llama-9b": DEMAND["mistral-7b"]}, None, "known models: llama-3.1-70b, llama-3.1-8b"),
    (DEMAND, {"h900": {"available": 1}}, "known GPUs: a100-40gb, a100-80gb"),
    ({"mistral-7b": {"requests_per_s": 1}}, None, "missing prompt_tokens, output_tokens"),
    ({"llama-3.1-70b": {"requests_per_s": 1, "prompt_tokens": 512, "output_tokens": 64,
                        "tpot_ms": 2}}, None, "llama-3.1-70b .* fits no configuration"),
    (DEMAND, {gpu: {"available": 0} for gpu in ("h100", "h200", "a100-80gb", "a100-40gb",
                                                "l40s", "l4", "v100", "t4", "a10g")},
     "can serve none of the demand"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, demand, gpus, expected):
    (tmp_path / "d.json").write_text(json.dumps(demand))
    args = ["plan", "serve", "--demand", tmp_path / "d.json", "--out", tmp_path / "out"]
    if gpus is not None:
        (tmp_path / "g.json").write_text(json.dumps(gpus))
        args += ["--gpus", tmp_path / "g.json"]
    result = mlc(*args)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ")
    assert re.search(expected, error), error
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
