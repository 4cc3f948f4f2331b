"""--out never deletes what mlc did not write (issue 15, class 2) and the exit-code scheme
(class 8): 1 bad input, 2 usage, 3 verdict, 70 internal error, 130 Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.artifact import MANIFEST, atomic_directory
from mlc.compiler.errors import MlcError

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp.onnx"


def _precious(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("years of work")
    return folder


def test_out_refuses_a_folder_with_user_files_and_force_replaces_it(tmp_path):
    folder = _precious(tmp_path / "precious")
    result = run_cli("import", MLP, "--out", folder)
    assert result.returncode == 1 and "1 file(s) mlc did not write (thesis.tex)" in result.stderr
    assert "--force" in result.stderr and (folder / "thesis.tex").exists()
    assert run_cli("import", MLP, "--out", folder, "--force").returncode == 0
    assert not (folder / "thesis.tex").exists() and (folder / "graph.json").exists()


def test_out_replaces_its_own_artifact_but_not_a_file_added_to_it(tmp_path):
    out = tmp_path / "art"
    assert run_cli("import", MLP, "--out", out).returncode == 0
    assert (out / MANIFEST).exists()
    assert run_cli("import", MLP, "--out", out).returncode == 0  # an mlc artifact: replaced
    (out / "notes.md").write_text("mine")
    result = run_cli("import", MLP, "--out", out)
    assert result.returncode == 1 and "notes.md" in result.stderr
    assert (out / "notes.md").read_text() == "mine"


@pytest.mark.parametrize("where", [".", ".."])
def test_out_refuses_the_current_folder_and_its_parents(tmp_path, where):
    project = _precious(tmp_path / "proj")
    cwd = project if where == "." else project / "sub"
    cwd.mkdir(exist_ok=True)
    result = run_cli("import", MLP, "--out", where, "--force", cwd=cwd)
    assert result.returncode == 1 and "current folder" in result.stderr
    assert (project / "thesis.tex").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no hidden .proj.old.*


def test_out_refuses_the_folder_holding_the_input(tmp_path):
    folder = _precious(tmp_path / "models")
    model = folder / "mlp.onnx"
    model.write_bytes(MLP.read_bytes())
    result = run_cli("import", model, "--out", folder, "--force")
    assert result.returncode == 1 and "holds the input" in result.stderr
    assert model.exists() and (folder / "thesis.tex").exists()


def test_a_failed_write_leaves_the_old_artifact_and_no_temp_folders(tmp_path):
    out = tmp_path / "art"
    assert run_cli("import", MLP, "--out", out).returncode == 0
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("fault injected mid-write")
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_out_that_is_a_file_or_under_a_file_is_a_clear_error(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out in (afile, afile / "sub"):
        result = run_cli("import", MLP, "--out", out)
        assert result.returncode == 1 and str(afile) in result.stderr
        assert afile.read_text() == "mine"
    with pytest.raises(MlcError):
        with atomic_directory(afile / "sub"):
            pass


def test_empty_npz_is_bad_input_not_ctrl_c(tmp_path):
    empty = tmp_path / "in.npz"
    empty.write_bytes(b"")
    result = run_cli("run", MLP, "--inputs", empty)
    assert result.returncode == 1 and result.stderr.startswith("error:"), result.stderr


def test_a_bug_exits_70_and_asks_for_a_report(monkeypatch):
    import mlc.cli.inspect_cmd as inspect_cmd

    def broken(*args, **kwargs):
        raise ZeroDivisionError("injected bug")

    monkeypatch.setattr(inspect_cmd, "load_model", broken)
    result = run_cli("inspect", MLP)
    assert result.returncode == 70
    assert "internal error: ZeroDivisionError: injected bug" in result.stderr
    assert "please report" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run_cli("inspect").returncode == 2
    out = tmp_path / "out"
    assert run_cli("optimize", MLP, "--out", out, "--budget", "nan").returncode == 2
    assert not out.exists()


def test_ctrl_c_during_imports_is_one_line_and_130(tmp_path):
    """SIGINT while the command modules import (the first ~1.5 s): exit 130, no traceback.
    (The first ~0.15 s are the interpreter's own start-up, before any mlc code runs.)"""
    mlc = Path(sys.executable).with_name("mlc")
    for delay in (0.4, 0.8):
        process = subprocess.Popen([str(mlc), "inspect", str(MLP)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        if process.returncode == 0:
            continue  # finished before the signal: nothing to judge
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and stderr.strip() == (
            "mlc: interrupted (nothing was written)")


def test_npz_roundtrip_still_runs(tmp_path):
    """The checks above must not refuse good input."""
    np.savez(tmp_path / "in.npz", x=np.zeros((4, 64), np.float32))
    result = run_cli("run", MLP, "--inputs", tmp_path / "in.npz")
    assert result.returncode == 0, result.stderr


def test_an_artifact_holding_another_mlc_artifact_is_replaced_but_not_a_user_file(tmp_path):
    """`mlc serve PLAN` writes PLAN/serve/: replanning into PLAN may replace both (mlc wrote
    them), but not a user's file inside the nested artifact."""
    out = tmp_path / "art"
    assert run_cli("import", MLP, "--out", out).returncode == 0
    assert run_cli("import", MLP, "--out", out / "nested").returncode == 0
    assert run_cli("import", MLP, "--out", out).returncode == 0
    assert not (out / "nested").exists()
    assert run_cli("import", MLP, "--out", out / "nested").returncode == 0
    (out / "nested" / "mine.txt").write_text("mine")
    result = run_cli("import", MLP, "--out", out)
    assert result.returncode == 1 and "nested/mine.txt" in result.stderr
    assert (out / "nested" / "mine.txt").read_text() == "mine"
