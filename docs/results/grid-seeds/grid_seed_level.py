"""The learnt concept counted per grid seed, the unit a trained token is drawn at: how much of a
world's concept count is the grid seed's, and whether worlds differ beyond it.

The samples of one case share one learnt token, so the pooled Fisher tests of the earlier
write-ups count 40 correlated samples as 40 draws. Here each grid seed gives one number per world
(samples keeping the concept in the edits that name a background, summed over the grid's seven
lrs, out of 280), and the tests run over those numbers:

- per world: the grid seeds' counts, their mean with a 95% t interval, and a chi-square test of
  homogeneity across the grid seeds (do they differ beyond binomial noise?);
- per world against the first: the difference in means, Welch's t interval and p over grid seeds;
- over all worlds: one-way ANOVA (worlds as groups, grid seeds as replicates) and the share of
  the variance between worlds.

`--metric NAME` reads a case metric instead (`appearance`, `leakage`, ...): its mean over the
seven lrs per grid seed, with the same tests but the chi-square.

    python docs/results/grid-seeds/grid_seed_level.py [--metric NAME] NAME=OUT [NAME=OUT ...]

OUT: a `--ptibench-out` folder (its `results.json`) or a kept results file (`.json.gz`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "longer-training"))

from background_by_lr import counted_edits, kept_by_lr  # noqa: E402  (longer-training/)
from edit_prompts import inversion_cases  # noqa: E402  (roles-world/, on background_by_lr's path)


def per_grid_seed(out: Path) -> dict[int, tuple[int, int]]:
    """grid seed -> (samples keeping the concept, samples) over every lr, background edits."""
    seeds: dict[int, list[int]] = {}
    for by_seed in kept_by_lr(out, counted_edits()).values():
        for seed, (kept, total) in by_seed.items():
            cell = seeds.setdefault(seed, [0, 0])
            cell[0] += kept
            cell[1] += total
    return {s: (k, n) for s, (k, n) in sorted(seeds.items())}


def metric_by_grid_seed(out: Path, metric: str) -> dict[int, float]:
    """grid seed -> the case metric's mean over the grid's lrs."""
    values: dict[int, list[float]] = {}
    for case in inversion_cases(out):
        values.setdefault(case["spec"]["seed"], []).append(case["metrics"][metric])
    return {s: float(np.mean(v)) for s, v in sorted(values.items())}


def welch(base: np.ndarray, other: np.ndarray, d: int) -> tuple[str, float]:
    """other - base over grid seeds: the difference in means with Welch's 95% interval, and p."""
    test = stats.ttest_ind(other, base, equal_var=False)
    ci = test.confidence_interval(0.95)
    change = f"{other.mean() - base.mean():+.{d}f} [{ci.low:+.{d}f}, {ci.high:+.{d}f}]"
    return change, float(test.pvalue)


def mean_interval(values: np.ndarray, digits: int) -> str:
    low, high = stats.t.interval(0.95, len(values) - 1, values.mean(), stats.sem(values))
    return f"{values.mean():.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", help="a case metric instead of the concept count")
    parser.add_argument("runs", nargs="+", help="NAME=OUT (first: the base)")
    args = parser.parse_args()
    if any("=" not in run for run in args.runs):
        parser.error("each run is NAME=OUT")
    named = [run.split("=", 1) for run in args.runs]
    missing = [folder for _, folder in named if not Path(folder).exists()]
    if missing:
        parser.error(f"no such results: {', '.join(missing)}")
    if args.metric:
        values = {name: metric_by_grid_seed(Path(folder), args.metric) for name, folder in named}
        counts = {name: np.array(list(v.values())) for name, v in values.items()}
        digits = 3
    else:
        runs = {name: per_grid_seed(Path(folder)) for name, folder in named}
        counts = {name: np.array([k for k, _ in r.values()], float) for name, r in runs.items()}
        digits = 0
    if any(len(c) < 2 for c in counts.values()):
        parser.error("every run needs at least two grid seeds")

    if args.metric:
        print(f"| world | {args.metric} per grid seed (mean over lrs) | mean [95% t] |")
        print("|---|---|---|")
        for name, v in counts.items():
            cells = " ".join(f"{x:.3f}" for x in v)
            print(f"| {name} | {cells} | {mean_interval(v, digits)} |")
    else:
        print(
            "| world | per grid seed (of 280) | mean [95% t] | grid seeds differ (chi-square p) |"
        )
        print("|---|---|---|---|")
        for name, seeds in runs.items():
            table = np.array([[k, n - k] for k, n in seeds.values()])
            p = stats.chi2_contingency(table)[1]
            cells = " ".join(str(k) for k, _ in seeds.values())
            print(f"| {name} | {cells} | {mean_interval(counts[name], digits)} | {p:.1g} |")

    base = named[0][0]
    print("\n| world | against | difference in means [95% Welch t] | p |")
    print("|---|---|---|---|")
    for name, _ in named[1:]:
        change, p = welch(counts[base], counts[name], digits)
        print(f"| {name} | {base} | {change} | {p:.2g} |")

    if len(counts) > 2:
        groups = list(counts.values())
        anova = stats.f_oneway(*groups)
        every = np.concatenate(groups)
        between = sum(len(g) * (g.mean() - every.mean()) ** 2 for g in groups)
        total = ((every - every.mean()) ** 2).sum()
        print(
            f"\nOne-way ANOVA over {len(groups)} worlds, {len(every)} grid seeds: "
            f"F = {anova.statistic:.2f}, p = {anova.pvalue:.2g}; "
            f"between worlds {between / total:.2f} of the sum of squares."
        )


if __name__ == "__main__":
    main()
