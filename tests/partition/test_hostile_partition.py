"""`mlc partition` against bad options: every count and size is checked (exit 2 for click's
range checks, 1 for a size it cannot read), a refused --out fails before the search, and sizes
that would make absurd schedules are refused instead of crashing or running for hours."""

from __future__ import annotations

import pytest

from mlc.cli.partition_cmd import parse_bytes
from mlc.cli.testing import run_cli
from mlc.compiler.partition.planner import MAX_MICRO_BATCHES, micro_batch_sizes

MODEL = "workload:multibranch_small"


def partition(*args, out=None):
    return run_cli("partition", MODEL, *args, *(["--out", out] if out else []))


@pytest.mark.parametrize("args, message", [
    (["--devices", "3", "--batch", "8", "--micro-batch", "0"], "'--micro-batch': 0 is not"),
    (["--devices", "3", "--batch", "8", "--micro-batch", "-2"], "'--micro-batch': -2 is not"),
    (["--devices", "0", "--batch", "8"], "'--devices': 0 is not"),
    (["--devices", "-1", "--batch", "8"], "'--devices': -1 is not"),
    (["--devices", "3", "--batch", "0"], "'--batch': 0 is not"),
    (["--devices", "3", "--batch", "-8"], "'--batch': -8 is not"),
    (["--devices", "3", "--batch", "8", "--stages", "0"], "'--stages': 0 is not"),
    (["--devices", "3", "--batch", "99999999999999999999"], "'--batch'"),
    (["--devices", "3", "--batch", "8", "--stages", "99999999999999999999"], "'--stages'"),
    (["--devices", "3.5", "--batch", "8"], "not a valid integer"),
    (["--devices", "nan", "--batch", "8"], "not a valid integer"),
])
def test_bad_counts_are_usage_errors(args, message):
    result = partition(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("size, message", [
    ("0GB", "between 1 byte and 1 PiB"),
    ("0", "between 1 byte and 1 PiB"),
    ("0.1B", "between 1 byte and 1 PiB"),
    ("-1GB", "expected a size like 16GB"),
    ("nanGB", "expected a size like 16GB"),
    ("infGB", "expected a size like 16GB"),
    ("1e9", "expected a size like 16GB"),
    ("1.2.3GB", "expected a size like 16GB"),
    (".GB", "expected a size like 16GB"),
    ("16 parsecs", "expected a size like 16GB"),
    ("", "expected a size like 16GB"),
    ("9" * 400 + "TB", "between 1 byte and 1 PiB"),
    ("2000TB", "between 1 byte and 1 PiB"),
])
def test_bad_device_memory_is_a_one_line_error(size, message):
    result = partition("--devices", "3", "--batch", "8", "--device-memory", size)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device-memory") and message in lines[0]
    assert len(lines[0]) < 200  # a 400-digit size is not echoed whole


def test_sizes_that_parse():
    assert parse_bytes("16GB") == 16 * 10**9 and parse_bytes("32GiB") == 32 * 2**30
    assert parse_bytes(" 1.5 kb ") == 1500 and parse_bytes(".5KiB") == 512


@pytest.mark.parametrize("args, message", [
    (["--devices", "3", "--batch", "8", "--micro-batch", "3"], "does not divide"),
    (["--devices", "3", "--batch", "12", "--micro-batch", "6"], "must be a power of two"),
    (["--devices", "15", "--batch", "8"], "more than the model's 14 ops"),
    (["--devices", "3", "--batch", "8192", "--micro-batch", "1"],
     f"more than {MAX_MICRO_BATCHES} micro-batches"),
    (["--devices", "3", "--batch", "2147483647"], "use a smaller batch"),
    (["--devices", "3", "--batch", "8", "--gpu", "nope"], "unknown GPU 'nope'"),
    (["--devices", "3", "--batch", "8", "--device-memory", "1B"], "no plan fits"),
])
def test_requests_no_plan_can_meet_are_one_line_errors(args, message):
    result = partition(*args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_batch_without_a_power_of_two_in_the_window_still_plans():
    """batch 1000 on 3 devices: no power of two divides it between 166 and 1000 (this used to
    end in an IndexError); the largest one below the window is planned instead."""
    assert micro_batch_sizes(1000, 3) == [8]
    result = partition("--devices", "3", "--batch", "1000")
    assert result.returncode == 0, result.stderr
    assert "micro-batch 8" in result.stdout


def test_a_refused_out_fails_before_the_model_is_loaded(tmp_path):
    """--out holding a user's file is refused at once: the model (here one that does not
    exist) is never read, so the error is about --out, not the model."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    result = run_cli("partition", "missing-model.onnx", "--devices", "1", "--batch", "8",
                     "--out", out)
    assert result.returncode == 1 and "mlc did not write" in result.stderr, result.stderr
    assert (out / "notes.txt").read_text() == "precious"
    result = run_cli("partition", MODEL, "--devices", "1", "--batch", "8", "--out", ".",
                     cwd=tmp_path)
    assert result.returncode == 1 and "current folder" in result.stderr


def test_micro_batch_candidates_stay_bounded():
    for batch, devices in ((1000, 2), (2**30, 3), (3 * 2**20, 5), (7, 4)):
        sizes = micro_batch_sizes(batch, devices)
        assert sizes and all(batch % b == 0 and batch // b <= MAX_MICRO_BATCHES
                             for b in sizes), (batch, sizes)
    assert micro_batch_sizes(2**31 - 1, 3) == []  # odd and huge: the planner refuses it
