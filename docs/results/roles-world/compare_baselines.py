"""Oracle counts of two yellow-ring baseline folders side by side, per stage and lr: edits that
keep the concept (`edit_identity`), edits that take (`edit_success`) and reconstruction
(`appearance`), per training seed and pooled, with Fisher's exact test (two-sided).

    python docs/results/roles-world/compare_baselines.py baselines/tiny-world/yellow-ring/pti \
        docs/results/roles-world/baselines > docs/results/roles-world/yellow-ring-vs-previous.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy.stats import fisher_exact

READINGS = {"edit_identity": 72, "edit_success": 72, "appearance": 32}
"""Oracle readings per case and seed: 9 edit prompts x 8 samples, 32 reconstruction samples."""


def per_seed(folder: Path, stage: str) -> dict[str, dict[str, dict[str, float]]]:
    """lr -> seed -> metric -> value, for the default 1000-step, 8-sample entries."""
    raw = json.loads((folder / f"{stage}.json").read_text())
    out: dict = {}
    for lr, by_seed in raw["entries"].items():
        for seed, variants in by_seed.items():
            for key, entry in variants.items():
                if "steps=1000" in key and "samples_per_prompt=8" in key:
                    metrics = {k: v["value"] for k, v in entry["metrics"].items()}
                    out.setdefault(lr, {})[seed] = metrics
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("other", type=Path)
    args = parser.parse_args()
    for stage in ("inversion", "finetune"):
        ref, other = per_seed(args.reference, stage), per_seed(args.other, stage)
        print(f"## {stage}\n")
        print("| lr | metric | reference, per seed | other, per seed | pooled | p |")
        print("|---|---|---|---|---|---|")
        for lr in sorted(ref, key=float):
            for metric, n in READINGS.items():
                a = [round(ref[lr][s][metric] * n) for s in sorted(ref[lr])]
                b = [round(other[lr][s][metric] * n) for s in sorted(other[lr])]
                total = n * len(a)
                p = fisher_exact([[sum(a), total - sum(a)], [sum(b), total - sum(b)]])[1]
                print(
                    f"| {float(lr):g} | {metric} | {', '.join(map(str, a))} | "
                    f"{', '.join(map(str, b))} | {sum(a)}/{total} → {sum(b)}/{total} | {p:.1g} |"
                )
        print()


if __name__ == "__main__":
    main()
