"""What the stage-1 samples that lose the concept in edits naming a background show instead, as
the oracle read them: no object, an object in the edit's background colour, in another colour,
or an object in the concept's colour with another shape.

    python docs/results/longer-training/lost_edits.py [--seed N] NAME=OUT_DIR [NAME=OUT_DIR ...]

OUT_DIR: a `--ptibench-out` folder (its `results.json`); one grid seed (default 0), every lr
pooled.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles-world"))

from edit_prompts import inversion_edits  # noqa: E402  (roles-world/edit_prompts.py)

CONCEPT = Path("src/ptibench/fixtures/concepts/yellow-ring")


def kinds_of_miss(concept: dict) -> tuple[str, ...]:
    """The table's columns, the last named by the concept's colour."""
    colour = concept["appearance"]["colour"]
    return ("no object", "the background's colour", "another colour", f"{colour}, another shape")


def lost_samples(out_dir: Path, concept: dict, seed: int = 0) -> collections.Counter:
    """Per kind of miss (`kinds_of_miss`), the samples of background edits that do not keep the
    concept."""
    no_object, background, other_colour, other_shape = kinds_of_miss(concept)
    backgrounds = [e.get("expect", {}).get("background") for e in concept["edit_prompts"]]
    kinds: collections.Counter = collections.Counter()
    for i, edit in inversion_edits(out_dir, seed):
        if backgrounds[i] is None:
            continue
        for kept, reading in zip(edit["identity"], edit["oracle"], strict=True):
            if kept:
                continue
            if reading["colour"] is None:
                kinds[no_object] += 1
            elif reading["colour"] == backgrounds[i]:
                kinds[background] += 1
            elif reading["colour"] != concept["appearance"]["colour"]:
                kinds[other_colour] += 1
            else:
                kinds[other_shape] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=OUT_DIR")
    parser.add_argument("--seed", type=int, default=0, help="the grid seed (default 0)")
    args = parser.parse_args()
    concept = json.loads((CONCEPT / "concept.json").read_text())
    columns = kinds_of_miss(concept)
    print("| world | lost | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for item in args.runs:
        name, folder = item.split("=", 1)
        kinds = lost_samples(Path(folder), concept, args.seed)
        cells = " | ".join(str(kinds[c]) for c in columns)
        print(f"| {name} | {sum(kinds.values())} | {cells} |")


if __name__ == "__main__":
    main()
