"""Every case of the bad-input battery (tests/cli/hostile_battery.py) ends in a clear error:
exit 1/2/3, one `error:` line, no traceback, nothing of the user's lost."""

from __future__ import annotations

import pytest
from hostile_battery import build_fixtures, cases, run_case

from mlc.cli.testing import run_cli

CASES = cases()


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("battery")
    build_fixtures(root / "fixtures", run_cli)
    return root


@pytest.mark.parametrize("case", CASES, ids=[f"{c.command}: {c.description}" for c in CASES])
def test_bad_input_gets_a_clear_error(case, fixtures, tmp_path_factory):
    scratch = fixtures / f"case{CASES.index(case)}"
    outcome = run_case(case, scratch, run_cli)
    assert outcome["verdict"] == "clear", outcome
