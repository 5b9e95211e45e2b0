"""The public Python API for the table and the knee (ptibench.results.api): from CaseResults or
a results.json, no pytest; the plugin prints what it computes; the README's example runs."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_plugin_support import make_project, run

from ptibench.errors import PtibenchError
from ptibench.results.api import Tradeoff, tradeoff
from ptibench.spec import CaseResult, CaseSpec

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def synthetic(lr: float) -> CaseResult:
    """Reconstruction rises up to lr 3e-2, editability falls after it (the knee)."""
    x, knee = math.log10(lr), math.log10(3e-2)
    gain = min(1.0, max(0.0, (x + 3.5) / (knee + 3.5)))
    loss = min(1.0, max(0.0, (x - knee) / (1.0 - knee)))
    metrics = {
        "lpips": 0.5 - 0.3 * gain,
        "clip_i": 0.6 + 0.3 * gain,
        "clip_t": 0.32 - 0.1 * loss,
        "edit_success": 0.8 - 0.6 * loss,
        "distance": 140.0 * lr,
    }
    return CaseResult(CaseSpec(stage="inversion", lr=lr), "ok", metrics)


def test_the_table_and_knee_from_case_results():
    report = tradeoff([synthetic(lr) for lr in GRID])
    (table,) = report.tables
    assert table.key == ("tiny-world", "yellow-ring", "pti", "inversion")
    assert [row.lr for row in table.rows] == list(GRID)
    assert report.knee("inversion") == 3e-2
    assert report.knees() == {"inversion / pti (tiny-world, yellow-ring)": 3e-2}
    assert [row.past_knee for row in table.rows] == [False] * 4 + [True] * 3
    text = report.text()
    assert "trade-off: inversion / pti (tiny-world, yellow-ring)" in text
    assert "knee: lr=3e-02 by the means, untested" in text
    assert "| 1e-01 | ok |" in report.markdown()
    with pytest.raises(PtibenchError, match="no results for stage 'finetune'"):
        report.knee("finetune")


def test_results_json_cases_and_folders_give_the_same_table(tmp_path):
    report = tradeoff([synthetic(lr) for lr in GRID])
    paths = report.write(tmp_path)
    assert {p.name for p in paths} >= {"results.json", "tradeoff.md", "tradeoff.png"}
    cases = json.loads((tmp_path / "results.json").read_text())["cases"]
    for again in (tradeoff(cases), tradeoff(tmp_path), Tradeoff.from_directory(paths[0])):
        assert again.knee("inversion") == 3e-2
        assert again.summary_lines()[:4] == report.summary_lines()[:4]


def test_bad_input_is_one_line():
    with pytest.raises(PtibenchError, match="a result must be a CaseResult"):
        tradeoff([3.0])
    with pytest.raises(PtibenchError, match=r"cases\[0\] needs a \"spec\" object"):
        tradeoff([{"status": "ok"}])


def test_the_plugin_prints_what_the_api_computes(pytester):
    make_project(pytester)
    result = run(pytester, "--lr-grid", ",".join(map(str, GRID)), "--stage", "inversion")
    result.assert_outcomes(passed=7)
    report = tradeoff(pytester.path / "ptibench-out")
    table_lines = [line for line in report.summary_lines() if line and "case(s)" not in line]
    printed = result.stdout.str()
    assert all(line in printed for line in "\n".join(table_lines).splitlines())


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### The table and the knee from Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path):
    """The README's example as written: four short cases on the shipped tiny world."""
    code = readme_example()
    assert "tradeoff(" in code and "report.knee(" in code
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "src"),
        PTIBENCH_CACHE=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trade-off: inversion / pti (tiny-world, yellow-ring)" in done.stdout
    assert re.search(r"^knee: (None|[0-9.e+-]+)$", done.stdout, re.M)
    document = json.loads((tmp_path / "my-report" / "results.json").read_text())
    assert len(document["cases"]) == 4
