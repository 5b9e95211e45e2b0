"""What the stage-1 samples that lose the concept in edits naming a background show instead, as
the oracle read them: no object, an object in the prompt's background colour, in another colour,
or a yellow object of another shape.

    python docs/results/longer-training/lost_edits.py NAME=OUT_DIR [NAME=OUT_DIR ...]

OUT_DIR: a `--ptibench-out` folder (its `results.json`), grid seed 0, every lr pooled.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

CONCEPT_COLOUR = "yellow"


def lost_samples(out_dir: Path, seed: int = 0) -> collections.Counter:
    """Per kind of miss, the samples of background edits that do not keep the concept."""
    results = json.loads((out_dir / "results.json").read_text())
    kinds: collections.Counter = collections.Counter()
    for case in results["cases"]:
        if case["spec"]["stage"] != "inversion" or case["spec"]["seed"] != seed:
            continue
        for edit in case["records"]["edits"]:
            if " background" not in edit["prompt"]:
                continue
            background = edit["prompt"].split(" background")[0].split()[-1]
            for kept, reading in zip(edit["identity"], edit["oracle"], strict=True):
                if kept:
                    continue
                if reading["colour"] is None:
                    kinds["no object"] += 1
                elif reading["colour"] == background:
                    kinds["the background's colour"] += 1
                elif reading["colour"] != CONCEPT_COLOUR:
                    kinds["another colour"] += 1
                else:
                    kinds["yellow, another shape"] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=OUT_DIR")
    args = parser.parse_args()
    columns = ("no object", "the background's colour", "another colour", "yellow, another shape")
    print("| world | lost | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for item in args.runs:
        name, folder = item.split("=", 1)
        kinds = lost_samples(Path(folder))
        cells = " | ".join(str(kinds[c]) for c in columns)
        print(f"| {name} | {sum(kinds.values())} | {cells} |")


if __name__ == "__main__":
    main()
