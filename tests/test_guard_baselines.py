"""The baseline comparison, verdict by verdict: a regression in any direction must FAIL, an
improvement of a one-sided metric must read "better", and a change inside the tolerance "ok".

A flipped direction here turns every regression of the benchmark into a pass, so each direction
is checked on its own with values on both sides of the allowance, and the documented default
tolerances (the module docstring of ptibench.results.baselines) are pinned.
"""

from __future__ import annotations

import math

import pytest

from ptibench.results import baselines
from ptibench.spec import METRICS, CaseResult, CaseSpec

SPEC = CaseSpec(stage="inversion", lr=1e-3)


def entry(direction: str, value: float = 1.0, abs_tol: float = 0.1, rel: float = 0.0) -> dict:
    metric = {"value": value, "direction": direction, "abs": abs_tol, "rel": rel}
    return {"status": "ok", "metrics": {"m": metric}}


def result(value: float | None, status: str = "ok", **extra: float) -> CaseResult:
    metrics = {} if value is None else {"m": value}
    return CaseResult(spec=SPEC, status=status, metrics={**metrics, **extra})


# (direction, obtained, verdict) around a baseline of 1.0 with an allowance of 0.1
TABLE = [
    ("higher", 0.80, "FAIL"),  # dropped past the allowance: worse
    ("higher", 1.25, "better"),
    ("higher", 0.95, "ok"),
    ("higher", 1.05, "ok"),
    ("lower", 1.25, "FAIL"),  # rose past the allowance: worse
    ("lower", 0.80, "better"),
    ("lower", 1.05, "ok"),
    ("lower", 0.95, "ok"),
    ("both", 1.25, "FAIL"),  # two-sided: a move either way past the allowance fails
    ("both", 0.80, "FAIL"),
    ("both", 1.05, "ok"),
    ("both", 0.95, "ok"),
]


@pytest.mark.parametrize(("direction", "obtained", "verdict"), TABLE)
def test_compare_gives_each_verdict(direction, obtained, verdict):
    """compare() and its row: FAIL fails the case, "better" and "ok" pass it."""
    comparison = baselines.compare(entry(direction), result(obtained))
    (row,) = comparison.rows
    assert row.verdict == verdict
    assert comparison.passed is (verdict != "FAIL")
    assert comparison.improved == (["m"] if verdict == "better" else [])
    assert row.allowed == pytest.approx(0.1)
    assert row.diff == pytest.approx(obtained - 1.0)


@pytest.mark.parametrize(("direction", "obtained", "verdict"), TABLE)
def test_judge_matches_the_table(direction, obtained, verdict):
    metric = entry(direction)["metrics"]["m"]
    assert baselines._judge(metric, obtained) == verdict


@pytest.mark.parametrize("metric", ["clip_i", "clip_t", "appearance", "edit_success"])
def test_a_drop_of_a_higher_is_better_metric_fails(metric):
    """The regression the benchmark exists to catch: less reconstruction or editability."""
    tol = baselines.default_tolerance(metric)
    stored = {
        "status": "ok",
        "metrics": {metric: {"value": 0.6, "direction": tol.direction, "abs": tol.abs, "rel": 0}},
    }
    drop = 0.6 - 2 * tol.allowed(0.6)
    rise = 0.6 + 2 * tol.allowed(0.6)
    case = CaseResult(spec=SPEC, status="ok", metrics={metric: drop})
    assert baselines.compare(stored, case).rows[0].verdict == "FAIL"
    case = CaseResult(spec=SPEC, status="ok", metrics={metric: rise})
    assert baselines.compare(stored, case).rows[0].verdict == "better"


@pytest.mark.parametrize("metric", ["distance", "cosine_to_init", "final_loss"])
def test_two_sided_defaults_fail_both_ways(metric):
    """A drift in how far training moves is a change of the method, up or down."""
    tol = baselines.default_tolerance(metric)
    assert tol.direction == "both"
    value = 2.0
    stored = {
        "status": "ok",
        "metrics": {metric: {"value": value, "direction": "both", "abs": tol.abs, "rel": tol.rel}},
    }
    for moved in (value + 2 * tol.allowed(value), value - 2 * tol.allowed(value)):
        case = CaseResult(spec=SPEC, status="ok", metrics={metric: moved})
        assert baselines.compare(stored, case).rows[0].verdict == "FAIL", moved


def test_allowed_is_the_larger_of_abs_and_rel():
    tol = baselines.Tolerance(abs=0.01, rel=0.1, direction="lower")
    assert tol.allowed(5.0) == pytest.approx(0.5)
    assert tol.allowed(-5.0) == pytest.approx(0.5)
    assert tol.allowed(0.05) == pytest.approx(0.01)
    comparison = baselines.compare(entry("lower", value=5.0, abs_tol=0.01, rel=0.1), result(5.4))
    assert comparison.rows[0].verdict == "ok"
    comparison = baselines.compare(entry("lower", value=5.0, abs_tol=0.01, rel=0.1), result(5.6))
    assert comparison.rows[0].verdict == "FAIL"


# The documented defaults: (abs, rel, direction)
DEFAULTS = {
    "lpips": (0.03, 0.10, "lower"),
    "clip_i": (0.02, 0.03, "higher"),
    "clip_t": (0.02, 0.03, "higher"),
    "denoise_loss": (0.002, 0.05, "lower"),
    "distance": (1e-3, 0.10, "both"),
    "pivot_distance": (1e-3, 0.10, "both"),
    "cosine_to_init": (0.05, 0.0, "both"),
    "final_loss": (0.005, 0.10, "both"),
    "some_method_metric": (1e-6, 0.10, "both"),
}


@pytest.mark.parametrize("metric", sorted(DEFAULTS))
def test_default_tolerances_are_the_documented_ones(metric):
    abs_tol, rel, direction = DEFAULTS[metric]
    assert baselines.default_tolerance(metric) == baselines.Tolerance(abs_tol, rel, direction)


@pytest.mark.parametrize(
    ("samples", "expected"),
    # two binomial sds at p = 0.5 (sqrt(0.25 / n) * 2), clipped to [0.05, 0.25]
    [(1, 0.25), (8, 0.25), (16, 0.25), (64, 0.125), (100, 0.1), (400, 0.05), (10_000, 0.05)],
)
def test_share_tolerance_is_two_binomial_sds(samples, expected):
    for metric in ("appearance", "edit_success"):
        tol = baselines.default_tolerance(metric, samples)
        assert tol == baselines.Tolerance(pytest.approx(expected), 0.0, "higher")
        assert baselines.noise_floor(metric, samples) == pytest.approx(expected)


@pytest.mark.parametrize(
    "metric", [m for m, info in METRICS.items() if info.kind in ("reconstruction", "editability")]
)
def test_default_direction_agrees_with_the_metric_table(metric):
    """One-sided quality metrics fail in the direction spec.METRICS calls worse."""
    assert baselines.default_tolerance(metric).direction == METRICS[metric].direction


def test_missing_non_finite_and_new_metrics():
    stored = entry("higher")
    missing = baselines.compare(stored, result(None))
    assert not missing.passed and missing.rows[0].verdict == "missing"
    nan = baselines.compare(stored, result(math.nan))
    assert not nan.passed and nan.rows[0].verdict == "FAIL"
    extra = baselines.compare(stored, result(1.0, extra_metric=3.0))
    assert extra.passed
    assert [(r.metric, r.verdict) for r in extra.rows] == [("m", "ok"), ("extra_metric", "new")]


def test_diverged_compares_as_status():
    diverged = {"status": "diverged", "metrics": {}}
    assert baselines.compare(diverged, result(None, status="diverged")).passed
    changed = baselines.compare(diverged, result(1.0))
    assert not changed.passed and "baseline diverged, now ok" in changed.status_note
    now_diverged = CaseResult(spec=SPEC, status="diverged", metrics={}, diverged_at=7)
    changed = baselines.compare(entry("higher"), now_diverged)
    assert not changed.passed and "diverged at step 7" in changed.status_note


def test_make_entry_records_the_default_tolerances_and_keeps_hand_tuned_ones():
    case = CaseResult(spec=SPEC, status="ok", metrics={"clip_i": 0.5, "lpips": 2.0})
    made = baselines.make_entry(case, {})
    assert made["metrics"]["clip_i"] == {
        "value": 0.5,
        "direction": "higher",
        "abs": 0.02,
        "rel": 0.03,
    }
    tuned = {"metrics": {"lpips": {"value": 1.0, "direction": "lower", "abs": 0.5, "rel": 0.0}}}
    kept = baselines.make_entry(case, {}, previous=tuned)["metrics"]["lpips"]
    assert kept == {"value": 2.0, "direction": "lower", "abs": 0.5, "rel": 0.0}
