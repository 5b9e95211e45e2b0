"""Tolerances from the seed spread (ptibench.results.baselines, version 3): the summary of the
seeds recorded at each lr, the pooled spread and the prediction bound it gives, and checks of a
new seed against it.

The false-alarm rate is the documented promise: a new training seed, drawn like the recorded
ones, fails about FALSE_ALARM of the metric checks; a shift of a few pooled standard deviations
fails. Both are measured here on simulated seeds, so a wrong formula (no sqrt(1 + 1/n), the
per-lr instead of the pooled spread, a flipped side) shows as a rate far from the promise.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from ptibench.results import baselines
from ptibench.spec import CaseResult, CaseSpec

LRS = (1e-3, 1e-2, 1e-1, 1.0)
SEEDS = (0, 1, 2)


def record(root, values_by_lr_seed, status_by=None):
    """Write entries through baselines.update, as --update-baselines does."""
    for (lr, seed), metrics in values_by_lr_seed.items():
        status = (status_by or {}).get((lr, seed), "ok")
        spec = CaseSpec(stage="inversion", lr=lr, seed=seed)
        result = CaseResult(
            spec=spec,
            status=status,
            metrics=metrics if status == "ok" else {},
            diverged_at=None if status == "ok" else 7,
        )
        baselines.update(root, result, {"world_version": "w", "device": "cpu"})
    return baselines.baseline_path(root, CaseSpec(stage="inversion", lr=LRS[0]))


def simulated(rng, sd=0.02, centers=None):
    centers = centers or {lr: 0.5 + 0.1 * i for i, lr in enumerate(LRS)}
    return {
        (lr, seed): {
            "clip_i": float(rng.normal(centers[lr], sd)),
            "distance": float(math.exp(rng.normal(math.log(10 * lr), 0.1))),
        }
        for lr in LRS
        for seed in SEEDS
    }


def test_summary_holds_mean_sd_n_and_the_pooled_prediction_bound(tmp_path):
    values = simulated(np.random.default_rng(0))
    path = record(tmp_path, values)
    stored = json.loads(path.read_text())
    assert stored["version"] == 3
    (settings,) = stored["summaries"]["1e-02"]
    summary = stored["summaries"]["1e-02"][settings]
    assert summary["seeds"] == [0, 1, 2]
    assert summary["statuses"] == {"ok": 3}
    clip = summary["metrics"]["clip_i"]
    at_lr = [values[(1e-2, s)]["clip_i"] for s in SEEDS]
    assert clip["mean"] == pytest.approx(np.mean(at_lr))
    assert clip["sd"] == pytest.approx(np.std(at_lr, ddof=1))
    assert clip["n"] == 3
    # pooled over the four lrs: df = 4 * (3 - 1)
    squares = sum(
        np.sum((np.array([values[(lr, s)]["clip_i"] for s in SEEDS]) - c) ** 2)
        for lr in LRS
        for c in [np.mean([values[(lr, s)]["clip_i"] for s in SEEDS])]
    )
    pooled = math.sqrt(squares / 8)
    assert clip["df"] == 8
    assert clip["pooled_sd"] == pytest.approx(pooled)
    bound = student_t.ppf(1 - baselines.FALSE_ALARM, 8) * pooled * math.sqrt(1 + 1 / 3)
    assert clip["allowed"] == pytest.approx(bound)
    distance = summary["metrics"]["distance"]
    assert distance["scale"] == "log"
    assert distance["center"] == pytest.approx(
        np.mean([math.log(values[(1e-2, s)]["distance"]) for s in SEEDS])
    )
    # two-sided: the false-alarm rate is split over both sides
    log_bound = student_t.ppf(1 - baselines.FALSE_ALARM / 2, 8)
    assert distance["allowed"] > log_bound * distance["pooled_sd"]


def test_a_new_seed_fails_about_the_promised_share_and_a_shift_fails(tmp_path):
    """Over many recorded seed sets and new seeds drawn like them: the false-alarm rate is
    near FALSE_ALARM per metric; a drop of 4 pooled SDs of clip_i fails most of the time."""
    rng = np.random.default_rng(1)
    false_alarms = caught = checks = 0
    sd = 0.02
    for trial in range(40):
        root = tmp_path / str(trial)
        record(root, simulated(rng, sd))
        for lr in LRS:
            found = baselines.lookup(root, CaseSpec(stage="inversion", lr=lr, seed=7))
            assert found.summary is not None and found.entry is not None
            center = found.summary["metrics"]["clip_i"]["mean"]
            for _ in range(25):
                fresh = {
                    "clip_i": float(rng.normal(0.5 + 0.1 * LRS.index(lr), sd)),
                    "distance": float(math.exp(rng.normal(math.log(10 * lr), 0.1))),
                }
                spec = CaseSpec(stage="inversion", lr=lr, seed=7)
                comparison = baselines.compare(
                    found.entry, CaseResult(spec, "ok", fresh), found.summary
                )
                false_alarms += sum(row.verdict == "FAIL" for row in comparison.rows)
                checks += len(comparison.rows)
                shifted = {**fresh, "clip_i": fresh["clip_i"] - 4 * sd}
                worse = baselines.compare(
                    found.entry, CaseResult(spec, "ok", shifted), found.summary
                )
                caught += not worse.passed
            assert abs(center - (0.5 + 0.1 * LRS.index(lr))) < 5 * sd
    rate = false_alarms / checks
    shift = caught / (40 * len(LRS) * 25)
    print(f"false alarms {rate:.4f} of {checks} checks; shift caught {shift:.3f}")
    assert rate < 3 * baselines.FALSE_ALARM, rate
    assert rate > 0.1 * baselines.FALSE_ALARM, rate
    assert caught / (40 * len(LRS) * 25) > 0.6


def test_a_check_uses_the_spread_whatever_the_seed_and_names_its_basis(tmp_path):
    record(tmp_path, simulated(np.random.default_rng(2)))
    spec = CaseSpec(stage="inversion", lr=1e-1, seed=11)
    found = baselines.lookup(tmp_path, spec)
    assert found.entry is not None  # another seed's, for the recording context
    clip = found.summary["metrics"]["clip_i"]
    bad = CaseResult(spec, "ok", {"clip_i": clip["mean"] - 2 * clip["allowed"], "distance": 1.0})
    comparison = baselines.compare(found.entry, bad, found.summary)
    assert not comparison.passed
    rows = {row.metric: row for row in comparison.rows}
    assert rows["clip_i"].verdict == "FAIL" and rows["clip_i"].basis == "3 seeds"
    assert rows["distance"].basis == "3 seeds, log"
    table = baselines.format_rows(comparison.rows)
    assert "3 seeds" in table and "x" in table


def test_one_seed_per_lr_keeps_the_fixed_tolerances(tmp_path):
    values = {(lr, 0): {"clip_i": 0.5} for lr in LRS}
    record(tmp_path, values)
    found = baselines.lookup(tmp_path, CaseSpec(stage="inversion", lr=1e-2, seed=0))
    assert found.summary is None
    other = baselines.lookup(tmp_path, CaseSpec(stage="inversion", lr=1e-2, seed=1))
    assert other.entry is None and "seed=1" in other.reason
    spec = CaseSpec(stage="inversion", lr=1e-2)
    comparison = baselines.compare(found.entry, CaseResult(spec, "ok", {"clip_i": 0.47}))
    (row,) = comparison.rows
    assert row.allowed == pytest.approx(0.02) and row.verdict == "FAIL"


def test_shares_never_allow_less_than_one_sample(tmp_path):
    values = {(lr, s): {"appearance": 1.0} for lr in LRS for s in SEEDS}
    record(tmp_path, values)
    found = baselines.lookup(tmp_path, CaseSpec(stage="inversion", lr=1e-2, seed=5))
    samples = found.summary["samples_per_prompt"]
    assert found.summary["metrics"]["appearance"]["allowed"] == pytest.approx(1 / samples)
    spec = CaseSpec(stage="inversion", lr=1e-2, seed=5)
    one_less = CaseResult(spec, "ok", {"appearance": 1.0 - 1 / samples})
    two_less = CaseResult(spec, "ok", {"appearance": 1.0 - 2 / samples})
    assert baselines.compare(found.entry, one_less, found.summary).passed
    assert not baselines.compare(found.entry, two_less, found.summary).passed


def test_status_against_the_recorded_seeds(tmp_path):
    values = simulated(np.random.default_rng(3))
    record(tmp_path, values, status_by={(1.0, 2): "diverged"})
    spec = CaseSpec(stage="inversion", lr=1.0, seed=9)
    found = baselines.lookup(tmp_path, spec)
    assert found.summary["statuses"] == {"ok": 2, "diverged": 1}
    diverged = CaseResult(spec, "diverged", {}, diverged_at=5)
    assert baselines.compare(found.entry, diverged, found.summary).passed
    calm = baselines.lookup(tmp_path, spec.with_(lr=1e-3))
    verdict = baselines.compare(
        calm.entry, diverged.__class__(spec, "diverged", {}, 5), calm.summary
    )
    assert not verdict.passed and "ok in 3 of 3 seeds" in verdict.status_note


def test_version_2_files_read_with_summaries_and_rewrite_as_3(tmp_path):
    record(tmp_path, {(lr, s): {"clip_i": 0.5 + s / 100} for lr in LRS for s in SEEDS})
    path = baselines.baseline_path(tmp_path, CaseSpec(stage="inversion", lr=1e-3))
    data = json.loads(path.read_text())
    data["version"] = 2
    del data["summaries"]
    path.write_text(json.dumps(data))
    loaded = baselines.load_file(path)
    assert loaded["version"] == 3
    assert loaded["summaries"]["1e-03"]
    spec = CaseSpec(stage="inversion", lr=1e-3, seed=4)
    assert baselines.lookup(tmp_path, spec).summary["metrics"]["clip_i"]["n"] == 3


def test_a_break_does_not_widen_the_other_lrs_allowance(tmp_path):
    """A broken lr, where the seeds collapse differently, has a spread far above the rest:
    it keeps its own, and the others' allowance stays what their spread gives."""
    rng = np.random.default_rng(4)
    values = simulated(rng, sd=0.01)
    calm = baselines.summarise(json.loads(record(tmp_path / "calm", values).read_text())["entries"])
    for seed, value in zip(SEEDS, (0.1, 0.5, 0.9), strict=True):
        values[(1.0, seed)]["clip_i"] = value
    path = record(tmp_path / "broken", values)
    summaries = baselines.load_file(path)["summaries"]
    (settings,) = summaries["1e+00"]
    broken = summaries["1e+00"][settings]["metrics"]["clip_i"]
    assert broken["pooled"] is False and broken["df"] == 2
    for lr in ("1e-03", "1e-02", "1e-01"):
        kept = summaries[lr][settings]["metrics"]["clip_i"]
        before = calm[lr][settings]["metrics"]["clip_i"]
        assert kept["pooled"] is True and kept["df"] == 6
        assert kept["allowed"] < 0.1
        assert kept["allowed"] < before["allowed"] * 1.5
