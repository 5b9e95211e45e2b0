"""Intervals (ptibench.results.intervals): they cover a known mean at about their nominal rate,
the paired ones between lrs use the pairing, seeds widen them, and the reports carry them.

Coverage is checked loosely (0.90-0.99 for a 95% interval over a few hundred draws): the point
is to catch an interval that is far too narrow (a percentile bootstrap at 8 samples, an
unexpanded spread) or far too wide, not to estimate the rate to the percent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_grid import STORED, draw_grid, grid, two_phase

from ptibench.results.api import tradeoff
from ptibench.results.intervals import bootstrap, case_readings, wilson
from ptibench.results.tradeoff import build_table, table_cells

KEY = ("tiny-world", "yellow-ring", "pti", "inversion")


def reading_case(lr: float, values, seed: int = 0, name: str = "lpips") -> dict:
    """A case with one metric and its per-sample readings (under records["per_sample"])."""
    values = [float(v) for v in values]
    return {
        "spec": {"lr": lr, "seed": seed, "eval": {"samples_per_prompt": len(values)}},
        "status": "ok",
        "metrics": {name: float(np.mean(values))},
        "records": {"per_sample": {name: values}},
    }


def covers(interval, truth: float) -> bool:
    return interval is not None and interval[0] <= truth <= interval[1]


@pytest.mark.parametrize(
    ("samples", "draws", "low", "high"), [(8, 400, 0.92, 0.98), (32, 300, 0.9, 0.99)]
)
def test_the_interval_of_a_mean_covers_it_at_about_95_percent(samples, draws, low, high):
    """Measured over 2000 draws: 0.949 at 8 samples, 0.953 at 32. A percentile bootstrap
    without the t quantile and the expansion covers about 0.89 at 8 samples."""
    rng = np.random.default_rng(samples)
    hits = 0
    for _ in range(draws):
        case = reading_case(1e-3, rng.normal(0.6, 0.12, samples))
        hits += covers(bootstrap([[case]], ["lpips"]).intervals["lpips"][0], 0.6)
    assert low <= hits / draws <= high


def test_wilson_covers_a_share_at_8_samples():
    rng = np.random.default_rng(1)
    draws = 400
    hits = 0
    for _ in range(draws):
        shown = rng.random(8) < 0.3
        case = reading_case(1e-3, shown, name="appearance")
        case["records"] = {"reconstruction": {"appearance": shown.tolist()}}
        hits += covers(bootstrap([[case]], ["appearance"]).intervals["appearance"][0], 0.3)
    assert 0.90 <= hits / draws <= 0.995


def test_wilson_matches_the_readme_brackets():
    assert wilson(0, 8) == pytest.approx((0.0, 0.324), abs=5e-4)
    assert wilson(2, 8) == pytest.approx((0.071, 0.591), abs=5e-4)
    assert wilson(28, 40) == pytest.approx((0.546, 0.819), abs=5e-4)


def test_the_bootstrap_standard_error_is_the_usual_one():
    """With the sqrt(n/(n-1)) expansion the replicates' spread is s / sqrt(n)."""
    values = np.random.default_rng(2).normal(0.0, 1.0, 32)
    draws = bootstrap([[reading_case(1e-3, values)]], ["lpips"]).draws["lpips"][0]
    usual = values.std(ddof=1) / np.sqrt(len(values))
    assert np.std(draws.both, ddof=1) == pytest.approx(usual, rel=0.05)


def test_at_many_samples_it_agrees_with_scipy_bootstrap():
    from scipy.stats import bootstrap as scipy_bootstrap

    values = np.random.default_rng(3).gamma(2.0, 0.1, 200)
    ours = bootstrap([[reading_case(1e-3, values)]], ["lpips"]).intervals["lpips"][0]
    theirs = scipy_bootstrap(
        (values,), np.mean, method="percentile", random_state=np.random.default_rng(0)
    ).confidence_interval
    width = theirs.high - theirs.low
    assert ours[0] == pytest.approx(theirs.low, abs=0.1 * width)
    assert ours[1] == pytest.approx(theirs.high, abs=0.1 * width)


def test_a_step_between_lrs_is_paired_by_sample_index():
    """Two lrs whose samples share most of their noise (the same sample seeds): the step's
    interval covers the true shift at about 95% and is far narrower than the two lrs' own
    intervals would suggest."""
    rng = np.random.default_rng(4)
    draws, hits, ratios = 300, 0, []
    for _ in range(draws):
        shared = rng.normal(0.0, 0.12, 16)
        low = 0.5 + shared + rng.normal(0.0, 0.03, 16)
        high = 0.55 + shared + rng.normal(0.0, 0.03, 16)
        reps = bootstrap([[reading_case(1e-3, low)], [reading_case(3e-3, high)]], ["lpips"])
        step = reps.draws["lpips"][1] - reps.draws["lpips"][0]
        interval = step.interval(float(high.mean() - low.mean()))
        hits += covers(interval, 0.05)
        own = [b - a for a, b in reps.intervals["lpips"]]
        ratios.append((interval[1] - interval[0]) / float(np.hypot(*own)))
    assert 0.90 <= hits / draws <= 0.99
    assert np.median(ratios) < 0.4


def test_training_seeds_widen_the_interval_and_are_covered():
    """Three seeds whose means differ (seed spread 0.05) around a true mean: the interval over
    samples and seeds covers it; the sampling-only interval of one seed would not."""
    rng = np.random.default_rng(5)
    draws, hits, one_seed_hits = 300, 0, 0
    for _ in range(draws):
        offsets = rng.normal(0.0, 0.05, 3)
        cases = [
            reading_case(1e-3, rng.normal(0.6 + o, 0.05, 16), seed=s) for s, o in enumerate(offsets)
        ]
        hits += covers(bootstrap([cases], ["lpips"]).intervals["lpips"][0], 0.6)
        one_seed_hits += covers(bootstrap([cases[:1]], ["lpips"]).intervals["lpips"][0], 0.6)
    assert hits / draws >= 0.90
    assert one_seed_hits / draws < 0.70


def test_records_that_do_not_reproduce_the_aggregate_are_not_used():
    case = reading_case(1e-3, [0.1, 0.2, 0.3])
    case["metrics"]["lpips"] = 0.9
    assert "lpips" not in case_readings(case).values
    assert bootstrap([[case]], ["lpips"]).intervals["lpips"][0] is None


def test_the_intervals_are_deterministic():
    cases = grid(draw_grid(list(STORED), 8, np.random.default_rng(6)))
    first, second = build_table(KEY, cases), build_table(KEY, cases)
    assert [r.intervals for r in first.rows] == [r.intervals for r in second.rows]


def test_the_table_says_what_its_intervals_cover():
    rng = np.random.default_rng(7)
    one = build_table(KEY, grid(draw_grid(list(STORED), 8, rng)))
    assert one.covers == "95% CI, sampling only, 1 training seed"
    seeds = [c for s in range(3) for c in grid(draw_grid(list(STORED), 8, rng), seed=s)]
    three = build_table(KEY, seeds)
    assert three.covers == "95% CI over samples and 3 training seeds"
    assert all(row.intervals["denoise_loss"] is not None for row in three.rows)
    assert all(row.intervals["denoise_loss"] is None for row in one.rows)
    bare = [{**c, "records": {}} for c in grid(draw_grid(list(STORED), 8, rng))]
    none = build_table(KEY, bare)
    assert none.covers.startswith("no interval") and not none.knee.tested


def test_every_metric_and_step_in_the_reports_carries_its_interval(tmp_path):
    """tradeoff.md, the terminal text and results.json show each metric with its interval and
    each step's verdict; the plot draws error bars."""
    cases = grid(draw_grid(two_phase(6, 3), 32, np.random.default_rng(8)))
    report = tradeoff(cases)
    report.write(tmp_path)
    (table,) = report.tables
    header, body = table_cells(table)
    for name in ("lpips", "clip_i", "appearance", "clip_t", "edit_success"):
        assert all("[" in cells[header.index(name)] for cells in body)
    assert {cells[header.index("step")] for cells in body[1:]} <= {"costs", "buys", "n.s."}
    assert "costs" in {cells[header.index("step")] for cells in body}
    text = report.text()
    assert "intervals: 95% CI, sampling only, 1 training seed" in text
    markdown = (tmp_path / "tradeoff.md").read_text()
    assert "intervals: 95% CI, sampling only, 1 training seed" in markdown
    document = json.loads((tmp_path / "results.json").read_text())
    (saved,) = document["tradeoff"]
    assert saved["intervals"]["covers"] == table.covers
    assert saved["knee"]["lr"] == table.knee_lr() and saved["knee"]["tested"]
    for row in saved["rows"]:
        metric = row["metrics"]["clip_i"]
        assert metric["low"] <= metric["value"] <= metric["high"]
        assert row["gain"]["low"] <= row["gain"]["value"] <= row["gain"]["high"]
    steps = [row["step"] for row in saved["rows"][1:]]
    assert all(step["verdict"] in ("costs", "buys", "n.s.") for step in steps)
    assert all(step["net"]["low"] <= step["net"]["value"] for step in steps)
    assert document["cases"][0]["metrics"]["clip_i"] == cases[0]["metrics"]["clip_i"]


def test_the_plot_draws_the_intervals_as_error_bars():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptibench.results import report

    table = build_table(KEY, grid(draw_grid(two_phase(6, 3), 16, np.random.default_rng(9))))
    figure, (left, right) = plt.subplots(1, 2)
    report._plot_tradeoff(left, table)
    report._plot_distance(right, table)
    bars = [c for c in left.containers if c.has_xerr and c.has_yerr]
    assert bars, "R and L drawn with their intervals"
    assert sum(c.has_yerr for c in right.containers) == 5, "each metric with its interval"
    assert "knee" in left.get_title()
    plt.close(figure)


def test_several_concepts_get_a_table_over_all_of_them():
    """Per concept, and one more over the concepts: its means average theirs, its intervals
    say they cover concepts, and the spread between concepts widens them."""
    from ptibench.results.tradeoff import build_tables

    rng = np.random.default_rng(5)
    levels = two_phase(6, 3)
    cases = []
    for shift, concept in ((0.0, "yellow-ring"), (0.3, "green-star")):
        for case in grid(draw_grid(levels, 16, rng)):
            case["spec"]["concept"] = concept
            case["metrics"]["denoise_loss"] += shift
            cases.append(case)
    tables = build_tables(cases)
    concepts = [t.key[1] for t in tables]
    assert concepts == ["green-star", "yellow-ring", "all concepts (2)"]
    one, other, together = tables
    for i, row in enumerate(together.rows):
        for name in ("lpips", "clip_t", "denoise_loss"):
            mean = (one.rows[i].metrics[name] + other.rows[i].metrics[name]) / 2
            assert row.metrics[name] == pytest.approx(mean)
    assert "concept x seed replicates" in together.covers
    low, high = together.rows[0].intervals["denoise_loss"]
    assert high - low > 0.3  # the concepts' 0.3 apart are in the interval
    assert one.rows[0].intervals.get("denoise_loss") is None  # one seed, one reading: none
