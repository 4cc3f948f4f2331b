"""`mlc quantize` against bad options and bad data: every number checked, globs that match
nothing refused (naming the pattern and the weights there are), data files whose values the
model cannot take refused, a diverged co-tuning an error, and a refused --out refused before
any work. Nothing is written on any of these."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import run_cli

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp.onnx"  # x: [4, 64] -> [4, 10]
WEIGHTS = "net.0.weight, net.3.weight, net.5.weight"


def quantize(tmp_path, *args):
    """`mlc quantize MLP --out tmp/out ARGS` (no baselines: faster, same checks)."""
    result = run_cli("quantize", MLP, "--out", tmp_path / "out", "--no-baselines", *args)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return result


def _x(rows=16):
    return np.random.default_rng(0).standard_normal((rows, 64)).astype(np.float32)


@pytest.mark.parametrize("args, message", [
    (["--bits", "0"], "'--bits': 0 is not in the range 1<=x<=8"),
    (["--bits", "9"], "'--bits': 9 is not"),
    (["--bits", "-1"], "'--bits': -1 is not"),
    (["--bits", "nan"], "not a valid integer"),
    (["--epochs", "-1"], "'--epochs': -1 is not"),
    (["--lr", "nan"], "'nan' is not a finite number"),
    (["--lr", "inf"], "'inf' is not a finite number"),
    (["--lr", "0"], "x>0"),
    (["--lr", "-1e-3"], "x>0"),
    (["--tau", "nan"], "'nan' is not a finite number"),
    (["--tau=-inf"], "-inf is not in the range x>0"),
    (["--tau", "0"], "x>0"),
    (["--tau", "-1"], "x>0"),
    (["--seed", "-1"], "'--seed': -1 is not"),
    (["--layer-bits", "net.0*"], "expected PATTERN=BITS"),
    (["--layer-bits", "=4"], "expected PATTERN=BITS"),
    (["--layer-bits", "net.0*=x"], "expected PATTERN=BITS"),
    (["--layer-bits", "net.0*=4.5"], "expected PATTERN=BITS"),
    (["--layer-bits", "net.0*=-1"], "expected PATTERN=BITS"),
    (["--layer-bits", "net.0*=0"], "bits must be between 1 and 8"),
    (["--layer-bits", "net.0*=9"], "bits must be between 1 and 8"),
])
def test_bad_options_are_usage_errors(tmp_path, args, message):
    result = quantize(tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--skip", "--layer-bits"])
@pytest.mark.parametrize("pattern", ["nomatch*", "net.9*", "NET.0*"])
def test_a_glob_that_matches_nothing_is_refused(tmp_path, flag, pattern):
    """A typo in --skip would quantize a layer the user meant to keep in float, and one in
    --layer-bits would use the default bits: both are errors that name the pattern and list
    the weights there are (a warning scrolls away; the artifact would not say)."""
    value = pattern if flag == "--skip" else f"{pattern}=2"
    result = quantize(tmp_path, flag, value)
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"error: {flag} {pattern!r} matches no quantizable weight")
    assert WEIGHTS in line and not (tmp_path / "out").exists()


def test_globs_that_match_work(tmp_path):
    result = quantize(tmp_path, "--skip", "net.0*", "--layer-bits", "net.5.*=2", "--json")
    assert result.returncode == 0, result.stderr
    assert '"weight": "net.0.weight"' not in result.stdout and '"bits": 2' in result.stdout


@pytest.mark.parametrize("arrays, message", [
    ({}, "no array for model input(s) ['x']; it holds no arrays"),
    ({"y": _x()}, "no array for model input(s) ['x']; it holds ['y']"),
    ({"x": _x()[:, :10]}, "per-sample shape (10,)"),
    ({"x": _x().reshape(16, 64, 1)}, "per-sample shape (64, 1)"),
    ({"x": np.float32(1.0)}, "per-sample shape ()"),
    ({"x": np.zeros((0, 64), np.float32)}, "hold none"),
    ({"x": _x().astype(np.complex64)}, "complex64 is not a real number type"),
    ({"x": np.array(["a"] * 16)}, "is not a real number type"),
    ({"x": np.where(_x() > 1, np.nan, _x())}, "NaN or infinite value(s)"),
    ({"x": np.where(_x() > 1, -np.inf, _x())}, "NaN or infinite value(s)"),
    ({"x": _x(), "labels": np.arange(16) + 5}, "range from 5 to 20; the model has 10 classes"),
    ({"x": _x(), "labels": -np.ones(16, np.int64)}, "range from -1 to -1"),
    ({"x": _x(), "labels": np.zeros(16)}, "1-D integer array of class ids"),
    ({"x": _x(), "labels": np.zeros((16, 2), np.int64)}, "1-D integer array of class ids"),
    ({"x": _x(), "labels": np.zeros(15, np.int64)}, "disagree on the number of samples"),
])
def test_bad_data_is_a_one_line_error(tmp_path, arrays, message):
    np.savez(tmp_path / "data.npz", **arrays)
    result = quantize(tmp_path, "--data", tmp_path / "data.npz")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "--data" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_eval_data_names_its_own_flag(tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.where(_x() > 1, np.nan, _x()))
    result = quantize(tmp_path, "--eval-data", tmp_path / "eval.npz")
    assert result.returncode == 1 and "error: --eval-data" in result.stderr, result.stderr


@pytest.mark.parametrize("make, message", [
    (lambda path: np.save(path.with_suffix(".npy"), _x()) or path.with_suffix(".npy"),
     "it is a .npy file"),
    (lambda path: (path.write_bytes(b"\x00junk" * 50), path)[1], "not an .npz archive"),
    (lambda path: np.savez(path, x=np.array([{"a": 1}] * 16, dtype=object)) or path,
     "holds Python objects"),
    (lambda path: path.parent / "missing.npz", "no such file"),
])
def test_files_that_are_not_npz_data(tmp_path, make, message):
    data = make(tmp_path / "data.npz")
    result = quantize(tmp_path, "--data", data)
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_fewer_samples_than_one_batch_cannot_cotune(tmp_path):
    np.savez(tmp_path / "data.npz", x=_x(1), labels=np.zeros(1, np.int64))
    result = quantize(tmp_path, "--data", tmp_path / "data.npz", "--epochs", "1")
    assert result.returncode == 1 and "fewer than the model's batch of 4" in result.stderr


def test_diverged_cotuning_is_an_error_not_a_nan_report(tmp_path):
    np.savez(tmp_path / "data.npz", x=_x(), labels=np.arange(16) % 10)
    result = quantize(tmp_path, "--data", tmp_path / "data.npz", "--epochs", "1",
                      "--lr", "1e30")
    assert result.returncode == 1, result.stderr
    assert "co-tuning diverged" in result.stderr and "lower the learning rate" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_refused_out_fails_before_any_work(tmp_path):
    """The model named does not exist: the only error that can come first is --out's."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = run_cli("quantize", "missing.onnx", "--out", out)
    assert result.returncode == 1 and "mlc did not write" in result.stderr, result.stderr
    assert (out / "thesis.tex").read_text() == "precious"
    project = tmp_path / "project"
    project.mkdir()
    (project / "mlp.onnx").write_bytes(MLP.read_bytes())
    result = run_cli("quantize", project / "mlp.onnx", "--out", project)
    assert result.returncode == 1 and "holds the input" in result.stderr, result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["mlp.onnx"]


def test_a_model_with_no_quantizable_weights(tmp_path):
    result = run_cli("quantize", "workload:rmsnorm_matmul:small", "--out", tmp_path / "out",
                     "--skip", "anything*")
    assert result.returncode == 1 and "nothing to quantize" in result.stderr, result.stderr
