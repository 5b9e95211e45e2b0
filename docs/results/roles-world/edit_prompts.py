"""Per edit prompt, the stage-1 samples that keep the concept (`edit_identity`'s readings) in
several runs of the yellow-ring grid, for one training seed, pooled over the grid's lrs; and
Fisher's exact test (two-sided) of each run's total against the first run's.

    python docs/results/roles-world/edit_prompts.py NAME=OUT_DIR [NAME=OUT_DIR ...] > table.md

OUT_DIR: a `--ptibench-out` folder (its `results.json`).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from scipy.stats import fisher_exact


def tally(out_dir: Path, seed: int):
    """Per edit prompt (by index): samples that keep the concept, edits that take, samples."""
    results = json.loads((out_dir / "results.json").read_text())
    keep, take, total = collections.Counter(), collections.Counter(), collections.Counter()
    for case in results["cases"]:
        if case["spec"]["stage"] != "inversion" or case["spec"]["seed"] != seed:
            continue
        for i, edit in enumerate(case["records"]["edits"]):
            keep[i] += sum(edit["identity"])
            take[i] += sum(edit["edit"])
            total[i] += len(edit["identity"])
    return keep, take, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=OUT_DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--concept", type=Path, default=Path("src/ptibench/fixtures/concepts/yellow-ring")
    )
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.runs)
    concept = json.loads((args.concept / "concept.json").read_text())
    prompts = [e["prompt"] for e in concept["edit_prompts"]]
    tallies = {name: tally(Path(folder), args.seed) for name, folder in runs.items()}
    print("| edit prompt | " + " | ".join(tallies) + " |")
    print("|---" * (len(tallies) + 1) + "|")
    for i, prompt in enumerate(prompts):
        cells = [f"{keep[i]}/{total[i]}" for keep, _, total in tallies.values()]
        print(f"| {prompt} | " + " | ".join(cells) + " |")
    sums = {
        name: (sum(k.values()), sum(t.values()), sum(n.values()))
        for name, (k, t, n) in tallies.items()
    }
    ref_keep, ref_take, ref_n = next(iter(sums.values()))
    for label, index, ref in (
        ("all: keep the concept", 0, ref_keep),
        ("all: edit takes", 1, ref_take),
    ):
        cells = []
        for values in sums.values():
            n = values[2]
            p = fisher_exact([[ref, ref_n - ref], [values[index], n - values[index]]])[1]
            cells.append(f"{values[index]}/{n} (p = {p:.1g})")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
