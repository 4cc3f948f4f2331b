"""`mlc verify`: is a µGraph (ours, a compiled artifact's, or Mirage's) equivalent to a model?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlc.compiler.errors import MlcError

from .common import emit, json_option


def load_candidates(spec: str, input_names: list[str]):
    """(label, MuGraph) pairs: a µGraph JSON, fixture:NAME, an `mlc compile` artifact
    directory, or a Mirage checkpoint (a JSON list: every candidate in it)."""
    from mlc.compiler.superopt.mugraph import MuGraphError, mugraph_from_json
    from mlc.compiler.superopt.mugraph.mirage_import import mugraph_from_mirage

    from .compile_cmd import load_mugraph_spec
    path = Path(spec)
    if path.is_dir():
        path = path / "kernels" / "mugraph.json"
        if not path.is_file():
            raise MlcError(f"{spec}: not an `mlc compile` artifact (no kernels/mugraph.json)")
    if spec.startswith("fixture:"):
        return [(spec, load_mugraph_spec(spec))]
    if not path.is_file():
        raise MlcError(f"{spec}: no such file")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MlcError(f"{spec}: not a readable JSON file ({err})") from None
    try:
        if isinstance(doc, list):  # Mirage saves a list of candidates
            return [(f"{path.name}#{i}", mugraph_from_mirage(c, f"{path.stem}_{i}", input_names))
                    for i, c in enumerate(doc)]
        return [(spec, mugraph_from_json(doc))]
    except MuGraphError as err:
        raise MlcError(f"{spec}: {err}") from None


@click.command("verify")
@click.argument("candidate")
@click.option("--against", "model", required=True, metavar="MODEL",
              help="The reference program: any model spec (inputs in the candidate's order).")
@click.option("--trials", type=int, default=None, metavar="N",
              help="Finite-field trials (default: enough for a 1e-9 false-accept bound).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def verify_cmd(candidate: str, model: str, trials, seed: int, as_json: bool) -> None:
    """Check CANDIDATE against MODEL: random finite-field trials, then a float64 check.

    Exit 0 when every candidate is equivalent, 1 when one is not (the counterexample is
    printed).

    \b
    Example:
      mlc verify fixture:rmsnorm_matmul --against workload:rmsnorm_matmul
      mlc verify rmsnorm_bs1.json --against workload:rmsnorm_matmul:b=1 --json
    """
    from mlc.compiler.frontends import load_model
    from mlc.compiler.superopt.mugraph import MuGraphError
    from mlc.compiler.superopt.verify import verify_many

    reference = load_model(model)
    candidates = load_candidates(candidate, list(reference.inputs))
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
        raise SystemExit(1)
