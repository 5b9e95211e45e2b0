"""Pooled prompt following of worlds against a reference world, per held-out set: hits over the
set's phrasings x 64 prompts, 95% Wilson intervals, and Fisher's exact test (two-sided) against
the reference (the first folder).

    python docs/results/role-words/compare.py REFERENCE WORLD [WORLD ...] > table.md

Each folder holds `role_words.py measure` output (`first.json` ... `sixth.json`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "noise-words"))

from compare import ATTRIBUTES, cell, counts  # noqa: E402  (noise-words/compare.py)

from ptibench.world.quality import HELD_OUT_SETS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("worlds", type=Path, nargs="*")
    args = parser.parse_args()
    print("| set | world | " + " | ".join(ATTRIBUTES) + " |")
    print("|---" * (len(ATTRIBUTES) + 2) + "|")
    rows = [("training wording", "first", True)] + [(name, name, False) for name in HELD_OUT_SETS]
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
