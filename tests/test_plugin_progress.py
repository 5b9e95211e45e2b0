"""Progress: results.json grows as cases finish, and a serial run prints no worker lines (the
xdist lines are checked in test_plugin_xdist, on the run it already makes with two workers)."""

from __future__ import annotations

from test_plugin_support import make_project, run

from ptibench.harness.progress import clock

pytest_plugins = ["pytester"]

GRID = "1e-3,1e-2,3e-2,1e-1"


def test_a_serial_run_prints_no_worker_lines(pytester):
    make_project(pytester)
    result = run(pytester, "--lr-grid", GRID, "--stage", "inversion", "--update-baselines")
    assert result.ret == 0
    assert not any(line.startswith("ptibench: [") for line in result.stdout.lines)


def test_results_json_grows_as_cases_finish(pytester):
    make_project(pytester)
    pytester.makepyfile(
        test_zz_peek="""
import json, pathlib

def test_peek():
    cases = json.loads(pathlib.Path("ptibench-out/results.json").read_text())["cases"]
    assert len(cases) == 4
"""
    )
    result = run(pytester, "--lr-grid", GRID, "--stage", "inversion", "--update-baselines")
    result.assert_outcomes(passed=5)


def test_clock():
    assert [clock(5), clock(65.4), clock(3725)] == ["0:05", "1:05", "1:02:05"]
