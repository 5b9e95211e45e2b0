"""One caption change read across language-phase seeds: is its effect on the learnt concept the
same whichever seed trained the language phase?

A world is trained once per language-phase seed, so a caption change's effect on one seed is one
draw of it. Each seed gives the difference between the changed world's mean and the recipe's own
phase's mean over grid seeds (with Welch's interval, as `grid_seed_level.py` reports it); across
seeds, two readings of the differences:

- their mean with a one-sample 95% t interval and p (df = seeds - 1): the seeds as draws, each
  difference taken as exact. With two or three seeds it is weak, and two close differences make
  it look strong however uncertain each is;
- their inverse-variance mean (each seed weighted by its Welch standard error) with a normal 95%
  interval and p, and Cochran's Q for whether the seeds differ beyond their own uncertainty: the
  seeds as given, each difference's uncertainty kept. It summarises the seeds only where Q finds
  them alike; with four grid seeds a side each standard error is itself rough, so a p near 0.05 is
  borderline.

    python docs/results/four-grid-seeds/language_seed_level.py [--metric NAME] \
        SEED=BASE_OUT,CHANGED_OUT [SEED=BASE_OUT,CHANGED_OUT ...]

OUT: a `--ptibench-out` folder (its `results.json`) or a kept results file (`.json.gz`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grid-seeds"))

from grid_seed_level import metric_by_grid_seed, per_grid_seed, welch  # noqa: E402  (grid-seeds/)


def grid_seed_values(out: Path, metric: str | None) -> np.ndarray:
    """One number per grid seed: the concept count (of 280) or the metric's mean over lrs."""
    if metric:
        return np.array(list(metric_by_grid_seed(out, metric).values()))
    return np.array([kept for kept, _ in per_grid_seed(out).values()], float)


def p_text(p: float) -> str:
    """p to two digits; below 1e-10 the normal tail says nothing more worth printing."""
    return "< 1e-10" if p < 1e-10 else f"= {p:.2g}"


def across_seeds(values: np.ndarray, errors: np.ndarray, d: int) -> str:
    """The per-seed differences read as draws (t) and as given (inverse variance, Cochran's Q)."""
    test = stats.ttest_1samp(values, 0.0)
    ci = test.confidence_interval(0.95)
    above = int((values > 0).sum())
    lines = [
        f"Across {len(values)} language-phase seeds: mean difference {values.mean():+.{d}f} "
        f"[{ci.low:+.{d}f}, {ci.high:+.{d}f}] (one-sample t, df = {len(values) - 1}), "
        f"p = {test.pvalue:.2g}; {above} of {len(values)} seeds above zero."
    ]
    if (errors == 0).any():
        lines.append("No inverse-variance reading: a seed's grid seeds agree exactly.")
        return "\n".join(lines)
    weights = 1.0 / errors**2
    pooled = float((weights * values).sum() / weights.sum())
    error = float(1.0 / np.sqrt(weights.sum()))
    z = stats.norm.ppf(0.975)
    p_pooled = 2 * stats.norm.sf(abs(pooled) / error)
    q = float((weights * (values - pooled) ** 2).sum())
    p_q = stats.chi2.sf(q, len(values) - 1)
    lines.append(
        f"Inverse-variance mean {pooled:+.{d}f} [{pooled - z * error:+.{d}f}, "
        f"{pooled + z * error:+.{d}f}] (normal), p {p_text(p_pooled)}; seeds differ beyond their "
        f"uncertainty: Cochran's Q = {q:.2f}, df = {len(values) - 1}, p {p_text(p_q)}."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", help="a case metric instead of the concept count")
    parser.add_argument("seeds", nargs="+", help="SEED=BASE_OUT,CHANGED_OUT")
    args = parser.parse_args()
    pairs = []
    for item in args.seeds:
        seed, _, folders = item.partition("=")
        base, _, changed = folders.partition(",")
        if not (seed and base and changed):
            parser.error(f"{item!r} is not SEED=BASE_OUT,CHANGED_OUT")
        missing = [f for f in (base, changed) if not Path(f).exists()]
        if missing:
            parser.error(f"no such results: {', '.join(missing)}")
        pairs.append((seed, Path(base), Path(changed)))
    if len(pairs) < 2:
        parser.error("at least two language-phase seeds")

    digits = 3 if args.metric else 0
    what = args.metric or "concept count (of 280)"
    print(
        f"| language-phase seed | grid seeds | {what}: base, changed "
        "| changed - base [95% Welch t] | p |"
    )
    print("|---|---|---|---|---|")
    differences, errors = [], []
    d = digits
    for seed, base, changed in pairs:
        a, b = grid_seed_values(base, args.metric), grid_seed_values(changed, args.metric)
        differences.append(b.mean() - a.mean())
        errors.append(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
        change, p = welch(a, b, d)
        print(
            f"| {seed} | {len(a)}, {len(b)} | {a.mean():.{d}f}, {b.mean():.{d}f} | "
            f"{change} | {p:.2g} |"
        )

    print()
    print(across_seeds(np.array(differences), np.array(errors), digits))


if __name__ == "__main__":
    main()
