"""Reports: results.json is written as cases finish, and `ptibench report DIR` re-renders it."""

from __future__ import annotations

import json

from test_plugin_support import make_project, run, subprocess_pythonpath

from ptibench.harness.cli import main
from ptibench.results.report import collect_artifacts

pytest_plugins = ["pytester"]


def test_results_and_reports_written(pytester):
    make_project(pytester)
    result = run(
        pytester,
        "--lr-grid",
        "1e-3,1e-2,3e-2,1e-1,3e-1",
        "--stage",
        "inversion",
        "--update-baselines",
        "--ptibench-out",
        "out",
    )
    assert result.ret == 0
    out = pytester.path / "out"
    document = json.loads((out / "results.json").read_text())
    assert {"machine", "commit", "versions", "cases", "options"} <= set(document)
    assert set(document["commit"]) == {"id", "dirty", "branch"}
    assert len(document["cases"]) == 5
    case = document["cases"][0]
    assert case["spec"]["stage"] == "inversion" and case["baseline"]["verdict"] == "updated"
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "tradeoff.md").read_text()
    assert "| lr | status |" in markdown and "PAST KNEE" in markdown


def test_report_command_rerenders_without_training(pytester, capsys):
    make_project(pytester)
    run(
        pytester,
        "--lr-grid",
        "1e-3,1e-2,3e-2,1e-1,3e-1",
        "--stage",
        "inversion",
        "--update-baselines",
        "--ptibench-out",
        "out",
    )
    out = pytester.path / "out"
    (out / "tradeoff.md").unlink()
    (out / "tradeoff.png").unlink()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trade-off: inversion / pti" in printed and "knee: lr=3e-02" in printed
    assert (out / "tradeoff.md").exists() and (out / "tradeoff.png").exists()


def test_report_command_on_a_bad_directory_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "results.json" in error[0]
    (tmp_path / "results.json").write_text("{oops")
    assert main(["report", str(tmp_path)]) == 2
    assert "not readable results JSON" in capsys.readouterr().err


def test_sample_grids_are_copied(pytester):
    make_project(pytester)
    grid = pytester.path / "grid.png"
    grid.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    conftest = pytester.path / "conftest.py"
    conftest.write_text(
        conftest.read_text().replace(
            'environment={"device": "cpu"})',
            f'environment={{"device": "cpu"}}, artifacts={{"samples": {str(grid)!r}}})',
        )
    )
    run(
        pytester,
        "--lr-grid",
        "1e-2",
        "--stage",
        "inversion",
        "--update-baselines",
        "--ptibench-out",
        "out",
    )
    copied = list((pytester.path / "out" / "samples").iterdir())
    assert [p.name for p in copied] == ["yellow-ring-inversion-pti-lr=1e-02-seed0-samples.png"]
    assert (
        "samples/yellow-ring-inversion-pti-lr=1e-02-seed0-samples.png"
        in (pytester.path / "out" / "tradeoff.md").read_text()
    )


def test_cases_of_two_concepts_keep_their_own_artifacts(tmp_path):
    grids = {}
    for concept in ("yellow-ring", "green-star"):
        grids[concept] = tmp_path / f"{concept}.png"
        grids[concept].write_bytes(concept.encode())
    cases = [
        {
            "spec": {"concept": c, "stage": "inversion", "method": "pti", "lr": 1e-2, "seed": 0},
            "artifacts": {"samples": str(grid)},
        }
        for c, grid in grids.items()
    ]
    out = tmp_path / "out"
    for case in cases:
        collect_artifacts(out, case)
    placed = [out / case["artifacts"]["samples"] for case in cases]
    assert len(set(placed)) == 2
    assert [p.read_bytes() for p in placed] == [b"yellow-ring", b"green-star"]


def test_killed_session_keeps_finished_cases(pytester, monkeypatch):
    subprocess_pythonpath(monkeypatch)
    make_project(pytester)
    pytester.makepyfile(
        test_zz_kill="""
import os, signal

def test_die():
    os.kill(os.getpid(), signal.SIGKILL)
"""
    )
    run(
        pytester,
        "--lr-grid",
        "1e-3,1e-2",
        "--stage",
        "inversion",
        "--update-baselines",
        "--ptibench-out",
        "out",
        subprocess=True,
    )
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    assert len(document["cases"]) == 2
