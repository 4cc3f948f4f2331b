"""`mlc verify`: is a µGraph (ours, a compiled artifact's, or Mirage's) equivalent to a model?"""

from __future__ import annotations

from pathlib import Path

import click

from mlc.compiler.errors import EXIT_VERDICT, MlcError
from mlc.compiler.safe_io import read_json
from mlc.compiler.superopt.optimize import MAX_SEED

from .common import emit, json_option

MAX_TRIALS = 1000  # each trial re-runs candidate and reference; 4 already bound errors by 1e-9


def load_candidates(spec: str, input_names: list[str]):
    """(label, MuGraph) pairs: a µGraph JSON, fixture:NAME, an `mlc compile` artifact
    directory, or a Mirage checkpoint (a JSON list: every candidate in it)."""
    from mlc.compiler.superopt.mugraph import MuGraphError, mugraph_from_json
    from mlc.compiler.superopt.mugraph.mirage_import import convert_candidate

    from .compile_cmd import load_mugraph_spec
    path = Path(spec)
    if path.is_dir():
        path = path / "kernels" / "mugraph.json"
        if not path.is_file():
            raise MlcError(f"{spec}: not an `mlc compile` artifact (no kernels/mugraph.json)")
    if spec.startswith("fixture:"):
        return [(spec, load_mugraph_spec(spec))]
    doc = read_json(path, "µGraph JSON file or Mirage checkpoint")
    try:
        if isinstance(doc, list):  # Mirage saves a list of candidates
            return [(f"{path.name}#{i}", convert_candidate(c, i, path.stem, input_names))
                    for i, c in enumerate(doc)]
        return [(spec, mugraph_from_json(doc))]
    except MuGraphError as err:
        raise MlcError(f"{spec}: {err}") from None


@click.command("verify")
@click.argument("candidate")
@click.option("--against", "model", required=True, metavar="MODEL",
              help="The reference program: any model spec (inputs in the candidate's order).")
@click.option("--trials", type=click.IntRange(1, MAX_TRIALS), default=None, metavar="N",
              help=f"Finite-field trials, 1 to {MAX_TRIALS} (default: enough for a 1e-9 "
                   "false-accept bound).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the random trials (a non-negative integer).")
@click.option("--formal", is_flag=True,
              help="Prove equivalence symbolically (e-graph rewriting; holds for every grid, "
                   "loop and tensor size) instead of testing it.")
@json_option
def verify_cmd(candidate: str, model: str, trials, seed: int, formal: bool,
               as_json: bool) -> None:
    """Check CANDIDATE against MODEL: random finite-field trials, then a float64 check.

    Exit 0 when every candidate is equivalent, 3 when one is not (the counterexample is
    printed). With --formal: exit 0 when every candidate is proven, 3 when one is not proven
    (no proof found within the bounds, which does not mean the candidate is wrong). Exit 1
    is a bad input (an unreadable or malformed CANDIDATE or MODEL), never a verdict.

    \b
    Example:
      mlc verify fixture:rmsnorm_matmul --against workload:rmsnorm_matmul
      mlc verify rmsnorm_bs1.json --against workload:rmsnorm_matmul:b=1 --json
      mlc verify fixture:lora --against workload:lora --formal
    """
    from mlc.compiler.frontends import load_model
    from mlc.compiler.pipeline import OPTIMIZE_PASSES, run_passes
    from mlc.compiler.superopt.mugraph import MuGraphError
    from mlc.compiler.superopt.verify import verify_many

    # The same canonicalization `mlc optimize` runs, so a user's ONNX (silu spelled as
    # x * sigmoid(x), Gemm, ...) verifies like the workload it spells.
    reference = run_passes(load_model(model), OPTIMIZE_PASSES)
    candidates = load_candidates(candidate, list(reference.inputs))
    if formal:
        _formal(candidates, reference, as_json)
        return
    try:
        verdicts = verify_many([g for _, g in candidates], reference, trials=trials, seed=seed)
    except MuGraphError as err:
        raise MlcError(f"{candidate}: {err}") from None
    rows = [{"candidate": label, "equivalent": v.equivalent, "max_error": v.max_error,
             "output": v.output, "stage": v.stage, "trials": v.trials,
             "seconds": round(v.seconds, 4)} for (label, _), v in zip(candidates, verdicts)]
    lines = []
    for row in rows:
        if row["equivalent"]:
            lines.append(f"{row['candidate']}: equivalent ({row['trials']} field trials + float64"
                         f" check, max rel error {row['max_error']:.2e}, {row['seconds']:.3f} s)")
        else:
            lines.append(f"{row['candidate']}: NOT equivalent: output {row['output']!r} differs "
                         f"in the {row['stage']} check (max error {row['max_error']:.3g})")
    emit(as_json, rows, "\n".join(lines))
    if not all(row["equivalent"] for row in rows):
        raise SystemExit(EXIT_VERDICT)


def _formal(candidates, reference, as_json: bool) -> None:
    """Prove each candidate against the reference; exit 3 when one is not proven."""
    from mlc.compiler.superopt.verify.formal import prove_mugraph

    rows = []
    for label, graph in candidates:
        proof = prove_mugraph(graph, reference)
        rows.append({"candidate": label, "proven": proof.proven, "check": "formal",
                     "iterations": proof.iterations, "enodes": proof.enodes,
                     "seconds": round(proof.seconds, 4), "reason": proof.reason})
    lines = []
    for row in rows:
        if row["proven"]:
            lines.append(f"{row['candidate']}: proven equivalent (formal, symbolic grid and "
                         f"loop sizes; {row['iterations']} rewrite iterations, "
                         f"{row['seconds']:.3f} s)")
        else:
            lines.append(f"{row['candidate']}: not proven (formal: {row['reason']}; this means "
                         f"no proof was found, not that the candidate is wrong; "
                         f"{row['seconds']:.3f} s)")
    emit(as_json, rows, "\n".join(lines))
    if not all(row["proven"] for row in rows):
        raise SystemExit(EXIT_VERDICT)
