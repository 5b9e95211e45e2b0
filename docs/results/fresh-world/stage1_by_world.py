"""Per world, the stage-1 grid's reconstruction and editability against distance: the mean over
grid seeds per lr, and Spearman's rank correlation of each metric with the lr over every case
(with its p): does pushing the token further buy reconstruction and cost editability?

    python docs/results/fresh-world/stage1_by_world.py NAME=OUT_DIR [...]
    python docs/results/fresh-world/stage1_by_world.py --paired BASE=OUT_DIR NAME=OUT_DIR [...]

`--paired`: each later world against the first, case by case (the same lr and grid seed):
the mean change of every metric, its 95% t interval and Wilcoxon's signed-rank p.

OUT_DIR: a `--ptibench-out` folder (its `results.json`) with the yellow-ring stage-1 grid.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles-world"))

from edit_prompts import inversion_cases  # noqa: E402  (roles-world/edit_prompts.py)

METRICS = ("distance", "clip_i", "lpips", "appearance", "edit_success", "edit_identity", "leakage")


def table(name: str, out_dir: Path) -> None:
    runs = inversion_cases(out_dir)
    by_lr = collections.defaultdict(list)
    for case in runs:
        by_lr[case["spec"]["lr"]].append(case["metrics"])
    print(f"### {name}\n")
    print("| lr | seeds | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 2) + "|")
    for lr in sorted(by_lr):
        rows = by_lr[lr]
        means = [sum(r[m] for r in rows) / len(rows) for m in METRICS]
        print(f"| {lr:g} | {len(rows)} | " + " | ".join(f"{v:.3g}" for v in means) + " |")
    lrs = [c["spec"]["lr"] for c in runs]
    cells = []
    for m in METRICS[1:]:
        rho, p = spearmanr(lrs, [c["metrics"][m] for c in runs])
        cells.append(f"{m} {rho:+.2f} (p = {p:.2g})")
    print(f"\nSpearman with lr over {len(runs)} cases: " + "; ".join(cells) + "\n")


def paired(worlds: list[tuple[str, Path]]) -> None:
    """Each later world minus the first, paired by (lr, grid seed)."""
    metrics = {
        name: {(c["spec"]["lr"], c["spec"]["seed"]): c["metrics"] for c in inversion_cases(folder)}
        for name, folder in worlds
    }
    base = worlds[0][0]
    print("| world | against | metric | mean | base mean | change [95% t] | Wilcoxon p |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in worlds[1:]:
        keys = sorted(metrics[base].keys() & metrics[name].keys())
        for m in METRICS:
            a = np.array([metrics[base][k][m] for k in keys])
            b = np.array([metrics[name][k][m] for k in keys])
            d = b - a
            low, high = stats.t.interval(0.95, len(d) - 1, d.mean(), stats.sem(d))
            print(
                f"| {name} | {base} | {m} | {b.mean():.3g} | {a.mean():.3g} | "
                f"{d.mean():+.3g} [{low:+.3g}, {high:+.3g}] | {stats.wilcoxon(d).pvalue:.2g} |"
            )
    print(f"\n{len(keys)} cases paired by lr and grid seed.")


def main(argv: list[str]) -> None:
    worlds = [
        (name, Path(folder))
        for name, _, folder in (a.partition("=") for a in argv if a != "--paired")
    ]
    if "--paired" in argv:
        if len(worlds) < 2:
            sys.exit("error: --paired needs a base world and at least one more")
        paired(worlds)
        return
    for name, folder in worlds:
        table(name, folder)


if __name__ == "__main__":
    main(sys.argv[1:])
