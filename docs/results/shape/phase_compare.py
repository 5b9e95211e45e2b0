"""The shape-phase worlds side by side: every reading of `shape_phase.py measure`, hits / n with
a 95% Wilson interval and Fisher's exact test (two-sided) against the control world (the
same language phase without a judge term), so a gain is the term's, not more training's.

    python docs/results/shape/phase_compare.py docs/results/shape/phase-0 \
        docs/results/shape/phase-shipped docs/results/shape/phase-0.3 [...] > table.md

The first folder is the control; each holds `shape_phase_measure.json`. A comma-separated list
of folders (one world's training seeds) is pooled: hits and readings summed.

    cd docs/results/shape
    python phase_compare.py phase-0,phase-0-seed1 phase-0.1,phase-0.1-seed1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy.stats import fisher_exact

from ptibench.results.intervals import wilson

ATTRIBUTES = ("background", "colour", "position", "size", "shape")


def pooled(folders: str) -> dict[str, dict]:
    """`readings` summed over comma-separated folders."""
    rows: dict[str, dict] = {}
    for folder in folders.split(","):
        for label, reading in readings(Path(folder)).items():
            row = rows.setdefault(label, {"hits": 0, "n": 0})
            row["hits"] += reading["hits"]
            row["n"] += reading["n"]
    return rows


def name(folders: str) -> str:
    return "+".join(Path(f).name for f in folders.split(","))


def readings(folder: Path) -> dict[str, dict]:
    """row label -> {"hits", "n"}, for every reading the measure keeps."""
    report = json.loads((folder / "shape_phase_measure.json").read_text())
    rows = {}
    for split in ("held_out", "trained"):
        for size in ("all", "small", "large"):
            rows[f"{split} prompts, shape, {size}"] = report[split]["generated"][size]
    for key, value in report["held_out"]["generated_other_attributes"].items():
        rows[f"held_out prompts, {key}"] = value
    for size in ("all", "small", "large"):
        rows[f"held-out judge on the UNet's latents, shape, {size}"] = report[
            "held_out_latents_judge_seed1"
        ][size]
    for name in ("first", "confirmation"):
        for attribute in ATTRIBUTES:
            rows[f"{name} phrasing set, {attribute}"] = report[f"phrasings_{name}"][attribute]
    return rows


def cell(reading: dict, against: dict | None) -> str:
    hits, n = reading["hits"], reading["n"]
    low, high = wilson(hits, n)
    text = f"{hits / n:.2f} [{low:.2f}, {high:.2f}]"
    if against is not None:
        table = [[hits, n - hits], [against["hits"], against["n"] - against["hits"]]]
        text += f" p={fisher_exact(table).pvalue:.1g}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("control")
    parser.add_argument("worlds", nargs="+")
    args = parser.parse_args()
    control = pooled(args.control)
    worlds = [(name(folders), pooled(folders)) for folders in args.worlds]
    header = [f"{name(args.control)} (control)"] + [n for n, _ in worlds]
    print("| reading | " + " | ".join(header) + " |")
    print("|---" * (len(worlds) + 2) + "|")
    for label, reading in control.items():
        cells = [cell(reading, None)] + [cell(rows[label], reading) for _, rows in worlds]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
