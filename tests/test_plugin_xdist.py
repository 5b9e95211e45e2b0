"""Under pytest-xdist the controller merges the workers' cases: same table as a serial run."""

from __future__ import annotations

import json
import re

import pytest
from test_plugin_support import make_project, run, subprocess_pythonpath

pytest_plugins = ["pytester"]

GRID = "1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1"


def summary(result: pytest.RunResult) -> list[str]:
    """The ptibench section of the output, without the report paths (they differ per run)."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "= ptibench =" in line)
    return [line for line in lines[start + 1 :] if not line.startswith(("reports:", "====="))]


def test_two_workers_give_the_serial_table(pytester, monkeypatch):
    subprocess_pythonpath(monkeypatch)
    make_project(pytester)
    common = ["--lr-grid", GRID, "--stage", "inversion", "--seeds", "2", "-p", "xdist"]
    update = run(pytester, *common, "-n", "2", "--update-baselines", subprocess=True)
    assert update.ret == 0
    stored = json.loads(
        (pytester.path / "baselines/tiny-world/yellow-ring/pti/inversion.json").read_text()
    )
    assert {lr: sorted(seeds) for lr, seeds in stored["entries"].items()} == {
        lr: ["0", "1"] for lr in ("1e-03", "3e-03", "1e-02", "3e-02", "1e-01", "3e-01", "1e+00")
    }, "workers updating one file under the lock must not drop each other's entries"

    serial = run(pytester, *common, "--ptibench-out", "serial")
    parallel = run(pytester, *common, "-n", "2", "--ptibench-out", "parallel", subprocess=True)

    serial.assert_outcomes(passed=14)
    parallel.assert_outcomes(passed=14)
    assert summary(parallel) == summary(serial)
    assert any("PAST KNEE" in line for line in summary(serial))
    assert "intervals: 95% CI over 2 training seeds only (no per-sample records)" in summary(serial)
    cases = [
        json.loads((pytester.path / d / "results.json").read_text())["cases"]
        for d in ("serial", "parallel")
    ]
    assert [c["nodeid"] for c in cases[0]] == [c["nodeid"] for c in cases[1]]
    assert [c["metrics"] for c in cases[0]] == [c["metrics"] for c in cases[1]]
    assert_progress_lines(parallel.stdout.lines, cases=14)


START = re.compile(r"^ptibench: \[(gw[01])\] start (inversion-\S+) \(\d running, \d+/(\d+) done")
DONE = re.compile(
    r"^ptibench: \[(gw[01])\] done  (inversion-\S+): passed in \d+:\d\d "
    r"\((\d+)/(\d+) done, \d+:\d\d elapsed(?:, ETA (\d+:\d\d))?\)$"
)


def assert_progress_lines(lines: list[str], cases: int) -> None:
    """Under xdist the controller prints each case as a worker starts it and as it finishes:
    worker, case, time taken, cases done of the total, elapsed time and, from the third
    finish of two workers on, the ETA."""
    starts = [m.groups() for m in map(START.match, lines) if m]
    dones = [m.groups() for m in map(DONE.match, lines) if m]
    assert len(starts) == len(dones) == cases, "\n".join(lines)
    assert {total for *_, total in starts} | {total for _, _, _, total, _ in dones} == {str(cases)}
    assert sorted(int(done) for _, _, done, _, _ in dones) == list(range(1, cases + 1))
    assert {(worker, case) for worker, case, _ in starts} == {(w, c) for w, c, *_ in dones}
    with_eta = {int(done) for _, _, done, _, eta in dones if eta is not None}
    assert with_eta == set(range(3, cases + 1)), "\n".join(lines)
