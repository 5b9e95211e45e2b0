"""Per world, the stage-1 grid's reconstruction and editability against distance: the mean over
grid seeds per lr, and Spearman's rank correlation of each metric with the lr over every case
(with its p): does pushing the token further buy reconstruction and cost editability?

    python docs/results/fresh-world/stage1_by_world.py NAME=OUT_DIR [...]

OUT_DIR: a `--ptibench-out` folder (its `results.json`) with the yellow-ring stage-1 grid.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

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


def main(argv: list[str]) -> None:
    for item in argv:
        name, _, folder = item.partition("=")
        table(name, Path(folder))


if __name__ == "__main__":
    main(sys.argv[1:])
