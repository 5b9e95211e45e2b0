"""A case outside its seed spread is trained again with a fresh seed before it is reported: a
new draw (another machine's rounding, a chaotic lr) passes with a note, a shift that the fresh
seed repeats fails with both tables; --ptibench-no-confirm reports at once. The cases are a test
double (the plugin's hook, no training): a metric per seed that a test sets through a file."""

from __future__ import annotations

import json

from test_plugin_support import BENCHMARK_TEST, run

from ptibench.results import baselines

pytest_plugins = ["pytester"]

DRAWS_CONFTEST = """
import json
import pathlib

import pytest

from ptibench.spec import CaseResult

HERE = pathlib.Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_ptibench_run_case(spec, config):
    draws = json.loads((HERE / "draws.json").read_text())
    with (HERE / "calls.log").open("a") as log:
        log.write(f"{spec.seed}\\n")
    clip_i = draws.get(str(spec.seed), 0.60 + 0.01 * (spec.seed % 3))
    metrics = {"clip_i": clip_i, "lpips": 0.5 + 0.01 * (spec.seed % 3)}
    return CaseResult(spec=spec, status="ok", metrics=metrics, environment={"device": "cpu"})
"""

GRID = ("--lr-grid", "1e-3", "--stage", "inversion")


def project(pytester, draws: dict[str, float]) -> None:
    pytester.makeconftest(DRAWS_CONFTEST)
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)
    (pytester.path / "draws.json").write_text(json.dumps(draws))
    (pytester.path / "calls.log").unlink(missing_ok=True)


def calls(pytester) -> list[int]:
    return [int(line) for line in (pytester.path / "calls.log").read_text().split()]


def recorded(pytester) -> None:
    project(pytester, {})
    run(pytester, *GRID, "--seeds", "3", "--update-baselines").assert_outcomes(passed=3)


def baseline_note(pytester, out: str) -> dict:
    case = json.loads((pytester.path / out / "results.json").read_text())["cases"][0]
    return case["baseline"]


def test_a_new_draw_outside_the_spread_passes_when_a_fresh_seed_is_inside(pytester):
    recorded(pytester)
    project(pytester, {"0": 0.40})
    result = run(pytester, *GRID, "--ptibench-out", "out")
    result.assert_outcomes(passed=1)
    assert calls(pytester) == [0, baselines.confirmation_seed(0)]
    note = baseline_note(pytester, "out")
    assert note["verdict"] == "passed"
    assert "outside the seed spread on clip_i" in note["note"]
    assert "a new draw, not a regression" in note["note"]


def test_a_shift_the_fresh_seed_repeats_fails_with_both_tables(pytester):
    recorded(pytester)
    fresh = str(baselines.confirmation_seed(0))
    project(pytester, {"0": 0.40, fresh: 0.41})
    result = run(pytester, *GRID, "--ptibench-out", "out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*differs from its baseline*", f"*confirmed by a fresh seed ({fresh}):*"]
    )
    assert calls(pytester) == [0, int(fresh)]
    assert baseline_note(pytester, "out")["verdict"] == "failed"


def test_the_fresh_seed_failing_elsewhere_does_not_confirm():
    def comparison(*failing: str) -> baselines.Comparison:
        rows = [
            baselines.Row(m, 1.0, 0.0, 0.1, "higher", "FAIL" if m in failing else "ok")
            for m in ("clip_i", "clip_t", "lpips")
        ]
        return baselines.Comparison(not failing, rows)

    first = comparison("clip_i")
    assert baselines.confirmed(first, comparison("clip_i", "lpips"))
    assert not baselines.confirmed(first, comparison("lpips"))
    assert not baselines.confirmed(first, comparison())
    status_change = baselines.Comparison(False, status_note="status changed")
    assert baselines.confirmed(status_change, comparison("lpips"))


def test_no_confirm_reports_at_once(pytester):
    recorded(pytester)
    project(pytester, {"0": 0.40})
    result = run(pytester, *GRID, "--ptibench-no-confirm", "--ptibench-out", "out")
    result.assert_outcomes(failed=1)
    assert calls(pytester) == [0]
