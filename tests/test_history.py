"""Run history and comparison: per-sample records behind every metric, --ptibench-autosave,
`ptibench compare` with significance, and the --report-to tensorboard export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_plugin_support import BENCHMARK_TEST, plugin_args, run

from ptibench.harness.cli import main
from ptibench.models.random_weights import write_random_world
from ptibench.results.document import case_record
from ptibench.results.history import (
    compare_runs,
    format_comparison,
    resolve_run,
    sample_readings,
    saved_runs,
)
from ptibench.results.significance import fisher, welch
from ptibench.run.runner import run_case
from ptibench.spec import CaseSpec, EvalConfig

pytest_plugins = ["pytester"]

RECORDED_CONFTEST = """
'''Synthetic cases with per-sample records: 8 samples per prompt around the case's metric,
shifted by SHIFT (lpips) and CLIP_SHIFT (clip_i); appearance hits from HITS.'''

import pytest

from ptibench.spec import CaseResult

SHIFT = {shift!r}
CLIP_SHIFT = {clip_shift!r}
HITS = {hits!r}
SPREAD = [-0.03, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.03]


@pytest.hookimpl(tryfirst=True)
def pytest_ptibench_run_case(spec, config):
    lpips = [0.4 + SHIFT + s for s in SPREAD]
    clip_i = [0.7 + CLIP_SHIFT + s for s in SPREAD]
    appearance = [i < HITS for i in range(8)]
    records = {{
        "seeds": list(range(1234, 1242)),
        "reconstruction": {{"lpips": lpips, "clip_i": clip_i, "appearance": appearance}},
        "edits": [{{"prompt": "a x", "clip_t": [0.3 + s for s in SPREAD],
                    "edit": [True, False] * 4}}],
    }}
    metrics = {{
        "lpips": sum(lpips) / 8,
        "clip_i": sum(clip_i) / 8,
        "appearance": HITS / 8,
        "clip_t": 0.3,
        "edit_success": 0.5,
        "distance": 10.0 * spec.lr,
    }}
    return CaseResult(spec=spec, status="ok", metrics=metrics, records=records,
                      environment={{"device": "cpu"}})
"""


def recorded_project(pytester, shift=0.0, clip_shift=0.0, hits=4) -> None:
    text = RECORDED_CONFTEST.format(shift=shift, clip_shift=clip_shift, hits=hits)
    pytester.makeconftest(text)
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")


def test_per_sample_records_average_to_the_stored_metrics(world, tmp_path):
    spec = CaseSpec(
        stage="inversion",
        lr=1e-3,
        world=world.name,
        steps=3,
        eval=EvalConfig(samples_per_prompt=3, sample_steps=2),
    )
    result = run_case(spec, cache_dir=tmp_path, progress=False)
    records, metrics = result.records, result.metrics
    assert records["seeds"] == list(range(1234, 1234 + 12))  # the reconstruction prompt's 4 x 3
    recon = records["reconstruction"]
    assert len(recon["lpips"]) == len(recon["clip_i"]) == len(recon["appearance"]) == 12
    assert np.mean(recon["lpips"]) == pytest.approx(metrics["lpips"], rel=1e-6)
    assert np.mean(recon["clip_i"]) == pytest.approx(metrics["clip_i"], rel=1e-6)
    assert float(np.mean(recon["appearance"])) == metrics["appearance"]
    assert set(recon["oracle"][0]) == {"background", "colour", "position", "size", "shape"}
    edits = records["edits"]
    assert len(edits) == 9 and all(len(edit["clip_t"]) == 3 for edit in edits)
    clip_t = np.mean([np.mean(edit["clip_t"]) for edit in edits])
    assert clip_t == pytest.approx(metrics["clip_t"], rel=1e-6)
    shares = [np.mean(edit["edit"]) for edit in edits if "edit" in edit]
    assert float(np.mean(shares)) == metrics["edit_success"]
    cached = run_case(spec, cache_dir=tmp_path, progress=False)
    assert cached.from_cache and cached.records == records
    case = json.loads(json.dumps(case_record(cached, "x")))
    readings = sample_readings(case)
    assert set(readings) == {"lpips", "clip_i", "appearance", "clip_t", "edit_success", "leakage"}
    assert len(readings["clip_t"]) == 27
    leak = records["leakage"]
    assert [len(row["copy"]) for row in leak["prompts"]] == [
        12,
        3,
        3,
    ]  # a {}, a small {}, a large {}
    assert np.mean(readings["leakage"]) - leak["base"]["share"] == pytest.approx(metrics["leakage"])


def test_the_tests_say_what_they_should():
    assert fisher([True] * 8, [True] * 8).p == 1.0
    assert fisher([True] * 16, [False] * 16).p < 1e-6
    assert welch([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]).p == 1.0
    assert welch([0.1, 0.2, 0.3], [0.11, 0.21, 0.29]).p > 0.5
    assert welch([0.1, 0.11, 0.12, 0.1], [0.5, 0.51, 0.52, 0.5]).p < 1e-4


def test_autosave_keeps_numbered_runs_and_compare_reads_them(pytester, capsys):
    grid = ("--lr-grid", "1e-2,1e-1", "--stage", "inversion")
    recorded_project(pytester, hits=1)
    first = run(pytester, *grid, "--ptibench-autosave")
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["*saved this run as *runs/0001_nocommit"])
    recorded_project(pytester, shift=0.2, clip_shift=0.005, hits=8)
    second = run(pytester, *grid, "--ptibench-autosave")
    second.stdout.fnmatch_lines(
        ["*saved this run as *runs/0002_nocommit", "*compare it: ptibench compare *0001_nocommit *"]
    )
    out = pytester.path / "ptibench-out"
    runs = saved_runs(out)
    assert [r.name for r in runs] == ["0001_nocommit", "0002_nocommit"]
    for saved in runs:
        assert {"results.json", "tradeoff.md", "tradeoff.png"} <= {p.name for p in saved.iterdir()}
    assert json.loads((runs[0] / "results.json").read_text())["cases"][0]["metrics"][
        "lpips"
    ] == pytest.approx(0.4)
    assert resolve_run("1", out) == runs[0] and resolve_run("-1", out) == runs[1]
    assert resolve_run("0002_nocommit", out) == runs[1]

    comparison = compare_runs(runs[0], runs[1])
    verdicts = {(c.lr, d.metric): d.verdict for c in comparison.cases for d in c.metrics}
    assert verdicts[(1e-2, "lpips")] == "significant: B worse"
    assert verdicts[(1e-2, "clip_i")] == "not significant"
    assert verdicts[(1e-2, "appearance")] == "significant: B better"
    assert verdicts[(1e-2, "clip_t")] == "not significant"
    assert verdicts[(1e-2, "distance")] == "one reading, no test"
    text = format_comparison(comparison)
    assert "4 significant difference(s) at p < 0.05" in text

    assert main(["compare", "1", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "inversion / pti (tiny-world, yellow-ring)" in printed
    assert "significant: B worse" in printed and "fisher" in printed and "welch" in printed
    assert main(["compare", "1", "9", "--out", str(out)]) == 2
    assert "no run 9" in capsys.readouterr().err


def test_report_to_tensorboard(pytester):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorded_project(pytester)
    result = run(
        pytester, "--lr-grid", "1e-2,1e-1,1", "--stage", "inversion", "--report-to", "tensorboard"
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*tensorboard: tensorboard --logdir *tensorboard"])
    logs = pytester.path / "ptibench-out" / "tensorboard"
    case = EventAccumulator(str(logs / "inversion-pti" / "lr=1e-01")).Reload()
    (point,) = case.Scalars("metrics/lpips")
    assert point.value == pytest.approx(0.4) and point.step == 1000
    top = EventAccumulator(str(logs)).Reload()
    assert "tradeoff" in top.Tags()["images"]


def test_report_to_an_unknown_tracker_is_a_usage_error(pytester):
    recorded_project(pytester)
    result = pytester.runpytest(*plugin_args(), "--lr-grid", "1e-2", "--report-to", "wandb")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--report-to: invalid choice: 'wandb'*"])
