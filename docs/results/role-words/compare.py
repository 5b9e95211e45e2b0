"""Pooled prompt following of worlds against a reference world, per held-out set: hits over the
set's phrasings x 64 prompts, 95% Wilson intervals, and Fisher's exact test (two-sided) against
the reference (the first folder).

    python docs/results/role-words/compare.py REFERENCE WORLD [WORLD ...] > table.md

Each folder holds `role_words.py measure` output (`first.json` ... `fifth.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy.stats import binomtest, fisher_exact

ATTRIBUTES = ("background", "colour", "position", "size", "shape")
SETS = ("first", "confirmation", "third", "fourth", "fifth")
TRAINING = "training phrasing"
PROMPTS = 64


def counts(path: Path, training: bool = False) -> dict[str, list[int]]:
    """attribute -> [hits, readings] over a set's held-out phrasings (or its training row)."""
    rows = json.loads(path.read_text())["rows"]
    names = [TRAINING] if training else [n for n in rows if n != TRAINING]
    return {
        a: [sum(round(rows[n][a]["share"] * PROMPTS) for n in names), PROMPTS * len(names)]
        for a in ATTRIBUTES
    }


def cell(hits: int, n: int, against: list[int] | None) -> str:
    ci = binomtest(hits, n).proportion_ci(method="wilson")
    text = f"{hits / n:.2f} [{ci.low:.2f}, {ci.high:.2f}]"
    if against is not None:
        p = fisher_exact([[hits, n - hits], [against[0], against[1] - against[0]]]).pvalue
        text += f" (p = {p:.1g})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("worlds", type=Path, nargs="*")
    args = parser.parse_args()
    print("| set | world | " + " | ".join(ATTRIBUTES) + " |")
    print("|---" * (len(ATTRIBUTES) + 2) + "|")
    rows = [("training wording", "first", True)] + [(name, name, False) for name in SETS]
    for label, name, training in rows:
        if not (args.reference / f"{name}.json").exists():
            continue
        reference = counts(args.reference / f"{name}.json", training)
        cells = [cell(*reference[a], None) for a in ATTRIBUTES]
        print(f"| {label} | {args.reference.name} | " + " | ".join(cells) + " |")
        for world in args.worlds:
            if not (world / f"{name}.json").exists():
                continue
            got = counts(world / f"{name}.json", training)
            cells = [cell(*got[a], reference[a]) for a in ATTRIBUTES]
            print(f"| | {world.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
