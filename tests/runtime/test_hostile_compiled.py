"""A compiled artifact (`mlc compile`) runs kernels mlc renders again from its µGraph JSON:
the kernels/mugraph.py it carries is never imported, so editing it runs nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from mlc.cli.testing import run_cli
from mlc.compiler.ir import interpret
from mlc.runtime.compiled import compiled_inputs
from mlc.specs.workloads import get_workload

FIXTURE, WORKLOAD = "fixture:rmsnorm_matmul_small", "rmsnorm_matmul:small"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "rms"
    result = run_cli("compile", FIXTURE, "--out", out, "--no-nvcc")
    assert result.returncode == 0, result.stderr
    return out


def _hostile_kernel_file(marker) -> str:
    """Python that creates `marker` on import and would return wrong outputs if it were run."""
    return (f"open({str(marker)!r}, 'w').write('pwned')\n"
            "import torch\n"
            "def run(*inputs):\n"
            "    return (torch.zeros(1),)\n")


def test_edited_kernel_file_is_never_executed(artifact, tmp_path):
    marker = tmp_path / "pwned"
    (artifact / "kernels" / "mugraph.py").write_text(_hostile_kernel_file(marker))
    output = tmp_path / "o.npz"
    # a fresh process: Triton's interpreter flag must be set before triton is imported
    result = subprocess.run([sys.executable, "-m", "mlc.cli.main", "run", str(artifact),
                             "--random", "--seed", "3", "--output", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "mlc run imported the artifact's kernels/mugraph.py"
    workload = get_workload(WORKLOAD)
    rng = np.random.default_rng(3)  # the feeds `mlc run --random --seed 3` draws
    feeds = {name: rng.standard_normal(shape).astype(np.float32)
             for name, shape in compiled_inputs(artifact).items()}
    (want,) = interpret(workload, feeds, float64=True).values()
    (got,) = np.load(output).values()
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def test_run_without_the_kernel_file_still_works_in_process(artifact, tmp_path, monkeypatch):
    """The loader is handed mlc's rendering, never the artifact's file (which is absent here)."""
    import mlc.kernels.triton as triton_backend
    from mlc.kernels.triton import render_triton
    from mlc.runtime import compiled

    copy = tmp_path / "copy"
    (copy / "kernels").mkdir(parents=True)
    (copy / "kernels" / "mugraph.json").write_bytes(
        (artifact / "kernels" / "mugraph.json").read_bytes())
    seen = []

    def fake_loader(source, directory=None):
        seen.append(source)
        raise RuntimeError("stop before running kernels")

    monkeypatch.setattr(triton_backend, "load_triton_module", fake_loader)
    monkeypatch.setattr(compiled, "_device", lambda: "cpu")
    feeds = {name: np.zeros(shape, np.float32) for name, shape in compiled_inputs(copy).items()}
    with pytest.raises(RuntimeError, match="stop before"):
        compiled.run_compiled(copy, feeds)
    graph = compiled._load_graph(copy)
    assert seen == [render_triton(graph)]


@pytest.mark.parametrize("content, words", [
    ("import os\n", "not valid JSON"),
    ('{"format_version": 1, "kind": "mugraph"}', "mugraph.json"),
])
def test_bad_mugraph_json_is_one_line_error(artifact, tmp_path, content, words):
    copy = tmp_path / "bad"
    (copy / "kernels").mkdir(parents=True)
    (copy / "kernels" / "mugraph.json").write_text(content)
    result = run_cli("run", copy, "--random")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "internal error" not in lines[0], lines


def test_kernel_modules_are_written_to_a_private_folder():
    from mlc.kernels import triton as triton_backend
    folder = triton_backend._default_folder()
    assert folder == triton_backend._default_folder()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert folder.stat().st_uid == os.getuid()
