"""Counts behind the language world's baselines write-up: per concept, stage and lr, the hits of
the oracle-read metrics pooled over the training seeds, and Fisher's exact test (one-sided)
against the grid's lowest lr of that stage.

    python docs/results/language-world/tally.py OUT_DIR [OUT_DIR ...] > counts.md

OUT_DIR: a `--ptibench-out` folder of a `--seeds 3` grid (its `results.json`).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from scipy.stats import fisher_exact

from ptibench.results.document import load_results
from ptibench.results.history import sample_readings

COUNTED = ("appearance", "edit_success", "edit_identity", "leakage")
# the side on which a change is the cost (or the gain) the study looks for
ALTERNATIVE = {
    "appearance": "greater",
    "edit_success": "less",
    "edit_identity": "less",
    "leakage": "greater",
}


def tally(out_dirs: list[Path]) -> dict[tuple[str, str], dict[float, dict[str, list[int]]]]:
    """(concept, stage) -> lr -> metric -> [hits, samples], pooled over seeds."""
    table: dict = defaultdict(lambda: defaultdict(lambda: {m: [0, 0] for m in COUNTED}))
    for out in out_dirs:
        for case in load_results(out)["cases"]:
            spec = case["spec"]
            if case.get("status") not in ("ok", "diverged"):
                continue
            readings = sample_readings(case)
            edits = (case.get("records") or {}).get("edits") or []
            readings["edit_identity"] = [hit for edit in edits for hit in edit.get("identity", [])]
            for metric in COUNTED:
                values = readings.get(metric) or []
                cell = table[spec["concept"], spec["stage"]][spec["lr"]][metric]
                cell[0] += sum(bool(v) for v in values)
                cell[1] += len(values)
    return table


def p_value(a: list[int], b: list[int], alternative: str) -> float:
    """One-sided Fisher: is b's share `alternative` than a's?"""
    return fisher_exact([[b[0], b[1] - b[0]], [a[0], a[1] - a[0]]], alternative=alternative).pvalue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dirs", type=Path, nargs="+")
    args = parser.parse_args()
    for (concept, stage), rows in sorted(tally(args.out_dirs).items()):
        print(f"\n### {concept}, {stage}\n")
        print("| lr | " + " | ".join(COUNTED) + " |")
        print("|---|" + "---|" * len(COUNTED))
        lrs = sorted(rows)
        first = rows[lrs[0]]
        for lr in lrs:
            cells = []
            for metric in COUNTED:
                hits, n = rows[lr][metric]
                if not n:
                    cells.append("-")
                    continue
                cell = f"{hits}/{n}"
                if lr != lrs[0]:
                    p = p_value(first[metric], rows[lr][metric], ALTERNATIVE[metric])
                    cell += f" (p = {p:.2g})"
                cells.append(cell)
            print(f"| {lr:.0e} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
