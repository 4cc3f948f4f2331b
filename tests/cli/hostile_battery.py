"""A battery of bad inputs and faults across every `mlc` command (issue 15).

Each `Case` builds its inputs in a scratch folder, runs `mlc ARGS` in-process (cli.testing's
run_cli: the same exit codes as a subprocess) and is judged by `judge`:

- clear: exit 1 (bad input), 2 (usage) or 3 (verdict), stderr ends in one `error:` / `Error:`
  line, no traceback, no "internal error", and the case's own post-condition holds (a file the
  user owns still exists, no half-written --out, ...);
- bad: anything else (exit 0 on nonsense, exit 70, a traceback, a hang past the alarm).

Used by tests/cli/test_hostile_battery.py (every case) and bench/hostile.py (the table).
"""

from __future__ import annotations

import json
import resource
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MUGRAPHS = ROOT / "specs" / "mugraphs"


@dataclass
class Case:
    """One bad input: `build(scratch)` returns the argv (after `mlc`); `check(scratch)` returns
    an error string when a post-condition fails (None when fine)."""

    command: str
    description: str
    build: Callable[[Path], list]
    check: Callable[[Path], str | None] | None = None
    codes: tuple = (1, 2, 3)
    needs: tuple = field(default_factory=tuple)  # names of shared fixtures (see FIXTURES)


# ---- shared fixtures: valid artifacts that bad options are tried against ----------------------

def _partition_plan(folder: Path) -> list:
    return ["partition", "workload:multibranch_small", "--devices", "2", "--batch", "8",
            "--micro-batch", "2", "--out", folder]


def _coserve_plan(folder: Path) -> list:
    return ["plan", "coserve", "--model", "llama-3.1-8b", "--gpu", "a100-80gb", "--gpus", "4",
            "--rate", "4", "--slo-tpot", "45ms", "--duration", "5", "--out", folder]


def _import_mlp(folder: Path) -> list:
    return ["import", EXAMPLES / "mlp.onnx", "--out", folder]


FIXTURES = {"partition": _partition_plan, "coserve": _coserve_plan, "mlp_artifact": _import_mlp}


def build_fixtures(root: Path, run) -> dict[str, Path]:
    """Build every shared fixture once under `root` with `run(*argv)`."""
    built = {}
    for name, argv in FIXTURES.items():
        folder = root / name
        if not folder.exists():
            result = run(*argv(folder))
            assert result.returncode == 0, f"fixture {name}: {result.stderr}"
        built[name] = folder
    return built


# ---- bad file contents -------------------------------------------------------------------------

def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BAD_FILE_CONTENTS = {
    "empty file": b"",
    "binary junk": bytes(range(256)) * 4,
    "not UTF-8": b"\xff\xfe{\"a\": 1}\xc3\x28",
    "truncated JSON": b'{"a": [1, 2',
    "JSON nested 100000 deep": _nested(100_000),
    "JSON NaN literal": b'{"x": NaN}',
    "JSON top-level number": b"42",
    "zip header only": b"PK\x03\x04" + b"\x00" * 26,
    "npz-like zip of junk": b"PK\x05\x06" + b"\x00" * 18,
    "huge numeric literal": b'{"x": 1' + b"0" * 5000 + b"}",
}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _file_cases(command: str, suffix: str, argv: Callable[[Path, Path], list],
                needs: tuple = ()) -> list[Case]:
    """Every bad file kind (plus a missing path, a folder and /dev/zero) in one file argument."""
    cases = []
    for kind, data in BAD_FILE_CONTENTS.items():
        cases.append(Case(command, f"{suffix} file: {kind}",
                          lambda s, d=data: argv(s, _write(s / f"bad{suffix}", d)), needs=needs))
    cases.append(Case(command, f"{suffix} file: missing",
                      lambda s: argv(s, s / f"missing{suffix}"), needs=needs))
    cases.append(Case(command, f"{suffix} file: a folder",
                      lambda s: argv(s, _mkdir(s / f"folder{suffix}")), needs=needs))
    cases.append(Case(command, f"{suffix} file: /dev/zero (endless)",
                      lambda s: argv(s, Path("/dev/zero")), needs=needs))
    return cases


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- bad numeric options -----------------------------------------------------------------------

BAD_FLOATS = ["nan", "inf", "-inf", "1e999", "abc", ""]
BAD_INTS = ["nan", "1.5", "abc", "", "99999999999999999999999"]


def _option_cases(command: str, option: str, values: list[str],
                  argv: Callable[[Path], list], needs: tuple = ()) -> list[Case]:
    return [Case(command, f"{option} {value!r}",
                 lambda s, v=value: [*argv(s), option, v], needs=needs) for value in values]


# ---- the battery -------------------------------------------------------------------------------

def _fx(scratch: Path, name: str) -> Path:
    """A shared fixture folder (built by build_fixtures under scratch's parent)."""
    return scratch.parent / "fixtures" / name


def cases() -> list[Case]:
    """Every case in the battery."""
    mlp, block = EXAMPLES / "mlp.onnx", EXAMPLES / "block.onnx"
    mugraph = MUGRAPHS / "rmsnorm_matmul_small.json"
    demand = EXAMPLES / "demand.json"
    out = lambda s: s / "out"  # noqa: E731
    battery: list[Case] = []

    # model files in every command that takes a MODEL
    for suffix in (".onnx", ".json", ".pt2"):
        battery += _file_cases("inspect", suffix, lambda s, f: ["inspect", f])
        battery += _file_cases("run", suffix, lambda s, f: ["run", f, "--random"])
        battery += _file_cases("import", suffix, lambda s, f: ["import", f, "--out", out(s)])
    battery += _file_cases("optimize", ".onnx",
                           lambda s, f: ["optimize", f, "--out", out(s), "--budget", "1"])
    battery += _file_cases("quantize", ".onnx", lambda s, f: ["quantize", f, "--out", out(s)])
    battery += _file_cases("partition", ".onnx", lambda s, f: [
        "partition", f, "--devices", "2", "--batch", "8", "--out", out(s)])
    # data files
    battery += _file_cases("run", ".npz", lambda s, f: ["run", mlp, "--inputs", f])
    battery += _file_cases("quantize", ".npz",
                           lambda s, f: ["quantize", mlp, "--out", out(s), "--data", f])
    battery += _file_cases("compile", ".json", lambda s, f: ["compile", f, "--out", out(s)])
    battery += _file_cases("verify", ".json",
                           lambda s, f: ["verify", f, "--against", "workload:rmsnorm_matmul"])
    battery += _file_cases("plan serve", ".json",
                           lambda s, f: ["plan", "serve", "--demand", f, "--out", out(s)])
    battery += _file_cases("plan serve", ".yaml",
                           lambda s, f: ["plan", "serve", "--demand", f, "--out", out(s)])
    battery += _file_cases("plan serve", ".gpus.json", lambda s, f: [
        "plan", "serve", "--demand", demand, "--gpus", f, "--out", out(s)])
    battery += _file_cases("plan coserve", ".jsonl", lambda s, f: [
        *_coserve_plan(out(s))[:-2], "--trace", f, "--out", out(s)])
    battery += _file_cases("serve", ".jsonl", lambda s, f: [
        "serve", _fx(s, "coserve"), "--model", "tiny-llama", "--requests", f,
        "--out", out(s), "--steps", "3"], needs=("coserve",))
    battery += _file_cases("serve", ".finetune.jsonl", lambda s, f: [
        "serve", _fx(s, "coserve"), "--model", "tiny-llama", "--requests",
        EXAMPLES / "requests.jsonl", "--finetune", f, "--out", out(s), "--steps", "3"],
        needs=("coserve",))
    battery += _file_cases("serve", ".safetensors", lambda s, f: [
        "serve", _fx(s, "coserve"), "--model", "tiny-llama", "--requests",
        EXAMPLES / "requests.jsonl", "--weights", f, "--out", out(s), "--steps", "3"],
        needs=("coserve",))
    battery += _file_cases("train", ".npz", lambda s, f: [
        "train", _fx(s, "partition"), "--steps", "1", "--data", f], needs=("partition",))
    battery += _artifact_tamper_cases()

    # numeric options
    opt = lambda s: ["optimize", block, "--out", out(s)]  # noqa: E731
    battery += _option_cases("optimize", "--budget", BAD_FLOATS + ["-1", "0"], opt)
    battery += _option_cases("optimize", "--max-block-ops", BAD_INTS + ["-1", "0"], opt)
    battery += _option_cases("optimize", "--max-kernel-ops", BAD_INTS + ["-1", "0"], opt)
    battery += _option_cases("optimize", "--target", ["abacus", ""], opt)
    battery += _option_cases("optimize", "--search", ["fast"], opt)
    battery += _option_cases("verify", "--trials", BAD_INTS + ["0", "-3"],
                             lambda s: ["verify", mugraph, "--against",
                                        "workload:rmsnorm_matmul:small"])
    battery += _option_cases("compile", "--target", ["abacus", "", "../../etc/passwd"],
                             lambda s: ["compile", mugraph, "--out", out(s), "--no-nvcc"])
    q = lambda s: ["quantize", mlp, "--out", out(s), "--no-baselines"]  # noqa: E731
    battery += _option_cases("quantize", "--bits", BAD_INTS + ["0", "9", "-1"], q)
    battery += _option_cases("quantize", "--epochs", BAD_INTS + ["-1"], q)
    battery += _option_cases("quantize", "--lr", BAD_FLOATS + ["0", "-1"], q)
    battery += _option_cases("quantize", "--tau", BAD_FLOATS + ["0", "-1"], q)
    battery += _option_cases("quantize", "--layer-bits",
                             ["nomatch*=4", "=4", "x", "*=nan", "*=0", "*=99"], q)
    p = lambda s: ["partition", "workload:multibranch_small", "--out", out(s)]  # noqa: E731
    battery += _option_cases("partition", "--devices", BAD_INTS + ["0", "-1"],
                             lambda s: [*p(s), "--batch", "8"])
    battery += _option_cases("partition", "--batch", BAD_INTS + ["0", "-1"],
                             lambda s: [*p(s), "--devices", "2"])
    battery += _option_cases("partition", "--micro-batch", BAD_INTS + ["0", "-2", "3"],
                             lambda s: [*p(s), "--devices", "2", "--batch", "8"])
    battery += _option_cases("partition", "--stages", BAD_INTS + ["0", "-1"],
                             lambda s: [*p(s), "--devices", "2", "--batch", "8"])
    battery += _option_cases("partition", "--device-memory",
                             ["0GB", "-1GB", "nanGB", "infGB", "lots", ""],
                             lambda s: [*p(s), "--devices", "2", "--batch", "8"])
    battery += _option_cases("partition", "--gpu", ["abacus"],
                             lambda s: [*p(s), "--devices", "2", "--batch", "8"])
    t = lambda s: ["train", _fx(s, "partition"), "--steps", "1"]  # noqa: E731
    battery += _option_cases("train", "--lr", BAD_FLOATS + ["0", "-1"], t, ("partition",))
    battery += _option_cases("train", "--steps", BAD_INTS + ["0", "-1"], t, ("partition",))
    battery += _option_cases("train", "--timeout", BAD_FLOATS + ["0", "-1"], t, ("partition",))
    c = lambda s: _coserve_plan(out(s))  # noqa: E731
    for option, values in {"--rate": BAD_FLOATS + ["0", "-1"],
                           "--duration": BAD_FLOATS + ["0", "-1"],
                           "--gpus": BAD_INTS + ["0", "-1"], "--tp": BAD_INTS + ["0", "-1", "3"],
                           "--lora-rank": BAD_INTS + ["0", "-1"],
                           "--slo-tpot": ["nanms", "-5ms", "0ms", "infms", "fast", ""],
                           "--model": ["no-such-llm"], "--gpu": ["abacus"]}.items():
        battery += _option_cases("plan coserve", option, values, c)
    sv = lambda s: ["serve", _fx(s, "coserve"), "--model", "tiny-llama", "--requests",  # noqa
                    EXAMPLES / "requests.jsonl", "--out", out(s), "--steps", "3"]
    for option, values in {"--lr": BAD_FLOATS, "--max-seconds": BAD_FLOATS + ["0", "-1"],
                           "--budget": BAD_INTS + ["0"], "--lora-rank": BAD_INTS + ["0"],
                           "--slo-tpot": ["nanms", "-5ms", "fast"],
                           "--model": ["no-such-llm"]}.items():
        battery += _option_cases("serve", option, values, sv, ("coserve",))
    r = lambda s: ["run", mlp, "--random"]  # noqa: E731
    battery += _option_cases("run", "--shape", ["x=-3x4", "x=2.5x4", "x=1099511627776x64",
                                                 "x=", "x=axb", "nosuch=2x64", "=2x4", "x"], r)
    battery += _option_cases("run", "--executor", ["cuda"], r)
    battery += _option_cases("inspect", "--nodes", ["-1", "abc"], lambda s: ["inspect", mlp])
    battery += _option_cases("inspect", "--shape", ["x=-1x64", "x=0.5x64",
                                                     "x=1099511627776x1099511627776"],
                             lambda s: ["inspect", mlp])
    battery += _spec_cases()
    battery += _out_cases()
    battery += _bad_onnx_model_cases()
    return battery


def _bad_onnx_model_cases() -> list[Case]:
    """Every malformed ONNX model of tests/frontends/test_hostile_onnx.py (cycles, undefined
    names, unknown types, opset 99, huge initializers, ...) in each command that imports a
    model (inspect and run are covered there)."""
    import importlib.util
    path = ROOT / "tests" / "frontends" / "test_hostile_onnx.py"
    spec = importlib.util.spec_from_file_location("hostile_onnx_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # our own test module, not a user's file

    def saved(s: Path, build) -> Path:
        import onnx
        target = s / "bad.onnx"
        onnx.save(build(), target)
        return target

    commands = {
        "import": lambda f, s: ["import", f, "--out", s / "out"],
        "optimize": lambda f, s: ["optimize", f, "--out", s / "out", "--budget", "1"],
        "quantize": lambda f, s: ["quantize", f, "--out", s / "out", "--no-baselines"],
        "partition": lambda f, s: ["partition", f, "--devices", "2", "--batch", "8",
                                   "--out", s / "out"],
    }
    cases = []
    for name, build, _pattern in module.BAD_MODELS:
        for command, argv in commands.items():
            cases.append(Case(command, f"ONNX model: {name}",
                              lambda s, b=build, a=argv: a(saved(s, b), s),
                              check=lambda s: "half-written --out" if (s / "out").exists()
                              else None))
    return cases


def _artifact_tamper_cases() -> list[Case]:
    """Artifacts a user (or an attacker) edited: graph.json, plan.json, manifests."""
    def tampered(fixture: str, file: str, edit, argv):
        def build(s):
            import shutil
            folder = s / fixture
            shutil.copytree(_fx(s, fixture), folder)
            target = folder / file
            target.write_text(edit(target.read_text()))
            return argv(folder)
        return build

    def set_field(path: list, value):
        def edit(text):
            doc = json.loads(text)
            node = doc
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            return json.dumps(doc)
        return edit

    cases = []
    graph_edits = {
        "unknown op": (["nodes", 0, "op"], "FrobnicateOp"),
        "dtype string": (["inputs", 0, "dtype"], "float99"),
        "negative dim": (["inputs", 0, "shape"], [-3, 64]),
        "fractional dim": (["inputs", 0, "shape"], [2.5, 64]),
        "boolean dim": (["inputs", 0, "shape"], [True, 64]),
        "undefined node input": (["nodes", 0, "inputs"], ["no_such_tensor"]),
        "format_version 99": (["format_version"], 99),
        "nodes not a list": (["nodes"], {"a": 1}),
        "duplicate output": (["outputs"], ["__dup__"]),
    }
    for name, (path, value) in graph_edits.items():
        for command, argv in (("run", lambda f: ["run", f, "--random"]),
                              ("inspect", lambda f: ["inspect", f])):
            edit = set_field(path, value)
            if value == ["__dup__"]:
                edit = _duplicate_first_output
            cases.append(Case(command, f"graph.json: {name}",
                              tampered("mlp_artifact", "graph.json", edit, argv),
                              needs=("mlp_artifact",)))
    plan_edits = {"NaN field": "NaN", "negative batch": -8, "string batch": "eight",
                  "nested deep": None}
    for name, value in plan_edits.items():
        def edit(text, v=value):
            doc = json.loads(text)
            if v is None:
                doc["batch"] = json.loads(_nested(500))
                return json.dumps(doc)
            doc["batch"] = v
            return json.dumps(doc).replace('"NaN"', "NaN")
        cases.append(Case("train", f"plan.json: {name}",
                          tampered("partition", "plan.json", edit,
                                   lambda f: ["train", f, "--steps", "1"]),
                          needs=("partition",)))
    return cases


def _duplicate_first_output(text: str) -> str:
    doc = json.loads(text)
    doc["nodes"].append(dict(doc["nodes"][0]))
    return json.dumps(doc)


def _spec_cases() -> list[Case]:
    """Model specs that name nothing real."""
    specs = ["workload:no_such_workload", "workload:rmsnorm_matmul:nonsense=3",
             "workload:prism_rms_norm:d=-5", "workload:prism_rms_norm:d=nan",
             "no_such_module_xyz:build", "json:loads", "os.path:join", "fixture:nope",
             "", ":", "workload:"]
    cases = []
    for spec in specs:
        cases.append(Case("inspect", f"model spec {spec!r}", lambda s, m=spec: ["inspect", m]))
        cases.append(Case("run", f"model spec {spec!r}", lambda s, m=spec: ["run", m,
                                                                              "--random"]))
    return cases


def _out_cases() -> list[Case]:
    """--out folders that replacing would lose a user's files with."""
    mlp = EXAMPLES / "mlp.onnx"

    def user_folder(s: Path) -> Path:
        folder = _mkdir(s / "precious")
        (folder / "thesis.tex").write_text("years of work")
        return folder

    def kept(s: Path) -> str | None:
        return None if (s / "precious" / "thesis.tex").exists() else "a user's file was deleted"

    def copy_model(s: Path) -> Path:
        folder = user_folder(s)
        (folder / "mlp.onnx").write_bytes(mlp.read_bytes())
        return folder / "mlp.onnx"

    writers = {
        "import": lambda m, o: ["import", m, "--out", o],
        "quantize": lambda m, o: ["quantize", m, "--out", o, "--no-baselines", "--bits", "2"],
        "optimize": lambda m, o: ["optimize", m, "--out", o, "--budget", "1"],
        "partition": lambda m, o: ["partition", m, "--devices", "2", "--batch", "8",
                                   "--out", o],
    }
    cases = []
    for command, argv in writers.items():
        cases += [
            Case(command, "--out a folder holding user files",
                 lambda s, a=argv: a(mlp, user_folder(s)), check=kept),
            Case(command, "--out the folder holding the input model",
                 lambda s, a=argv: a(copy_model(s), s / "precious"), check=kept),
            Case(command, "--out the current folder (.)",
                 lambda s, a=argv: ["--cwd", user_folder(s), *a(mlp, Path("."))], check=kept),
            Case(command, "--out a parent of the current folder",
                 lambda s, a=argv: ["--cwd", _mkdir(user_folder(s) / "sub"),
                                    *a(mlp, Path(".."))], check=kept),
            Case(command, "--out an existing file",
                 lambda s, a=argv: a(mlp, _write(s / "precious" / "notes.txt", b"mine")),
                 check=lambda s: None if (s / "precious" / "notes.txt").read_bytes() == b"mine"
                 else "the file was replaced"),
            Case(command, "--out under a path whose parent is a file",
                 lambda s, a=argv: a(mlp, _write(s / "afile", b"x") / "sub")),
        ]
    cases.append(Case("serve", "--out the plan folder it serves",
                      lambda s: _serve_into_plan(s), needs=("coserve",),
                      check=lambda s: None if (s / "plan" / "plan.json").exists()
                      else "the plan was deleted"))
    return cases


def _serve_into_plan(s: Path) -> list:
    import shutil
    shutil.copytree(_fx(s, "coserve"), s / "plan")
    return ["serve", s / "plan", "--model", "tiny-llama", "--requests",
            EXAMPLES / "requests.jsonl", "--out", s / "plan", "--steps", "2"]


# ---- running and judging -----------------------------------------------------------------------

class Hang(Exception):
    """Raised by the alarm when a case runs past its time."""


def run_case(case: Case, scratch: Path, run, seconds: int = 120) -> dict:
    """Build and run one case; returns {"verdict": "clear"|"bad", "why", "code", "stderr"}."""
    scratch.mkdir(parents=True, exist_ok=True)
    argv = [str(a) for a in case.build(scratch)]
    cwd = None
    if argv[:1] == ["--cwd"]:
        cwd, argv = argv[1], argv[2:]

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        with _memory_cap():
            result = run(*argv, cwd=cwd)
    except Hang as err:
        return {"verdict": "bad", "why": str(err), "code": None, "stderr": ""}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return judge(case, scratch, result)


@contextmanager
def _memory_cap(extra_bytes: int = 6 * 2**30):
    """Cap this process's address space at its current size + `extra_bytes` while a case runs,
    so a reader that swallows /dev/zero ends in MemoryError (judged bad) instead of taking the
    whole machine (and the battery) down with the OOM killer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * resource.getpagesize()
    cap = current + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def judge(case: Case, scratch: Path, result) -> dict:
    stderr = result.stderr.strip()
    last = stderr.splitlines()[-1] if stderr else ""
    why = None
    if result.returncode not in case.codes:
        why = f"exit {result.returncode}"
    elif "Traceback" in stderr or "internal error" in stderr:
        why = "traceback or internal error"
    elif not (last.startswith("error:") or last.startswith("Error:")):
        why = "no one-line error at the end of stderr"
    elif case.check is not None:
        why = case.check(scratch)
    return {"verdict": "bad" if why else "clear", "why": why, "code": result.returncode,
            "stderr": last[:300]}
