"""Per edit prompt, the stage-1 samples that keep the concept (`edit_identity`'s readings) in
several runs of the yellow-ring grid, for one training seed, pooled over the grid's lrs; pooled
again by what the edit changes (the attributes its `expect` names); and Fisher's exact test
(two-sided) of each pool and total against the first run's.

    python docs/results/roles-world/edit_prompts.py NAME=OUT_DIR [NAME=OUT_DIR ...] > table.md

OUT_DIR: a `--ptibench-out` folder (its `results.json`).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
from pathlib import Path

from scipy.stats import fisher_exact


def inversion_cases(out_dir: Path):
    """The run's stage-1 cases, as `results.json` holds them: `out_dir` is its `--ptibench-out`
    folder, or a results file kept beside a write-up (`.json`, or gzipped `.json.gz`)."""
    path = out_dir if out_dir.is_file() else out_dir / "results.json"
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as handle:
            results = json.load(handle)
    else:
        results = json.loads(path.read_text())
    return [case for case in results["cases"] if case["spec"]["stage"] == "inversion"]


def inversion_edits(out_dir: Path, seed: int):
    """(edit prompt index, its record) for every edit of the run's stage-1 cases of `seed`."""
    for case in inversion_cases(out_dir):
        if case["spec"]["seed"] == seed:
            yield from enumerate(case["records"]["edits"])


def tally(out_dir: Path, seed: int):
    """Per edit prompt (by index): samples that keep the concept, edits that take, samples."""
    keep, take, total = collections.Counter(), collections.Counter(), collections.Counter()
    for i, edit in inversion_edits(out_dir, seed):
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
    kinds: dict[str, list[int]] = collections.defaultdict(list)
    for i, edit in enumerate(concept["edit_prompts"]):
        kinds[" and ".join(sorted(edit.get("expect") or {})) or "nothing"].append(i)
    rows = [(f"{kind} edits: keep the concept", 0, picked) for kind, picked in kinds.items()]
    rows += [
        ("all: keep the concept", 0, range(len(prompts))),
        ("all: edit takes", 1, range(len(prompts))),
    ]
    for label, index, picked in rows:
        sums = [
            (sum(tally_[index][i] for i in picked), sum(tally_[2][i] for i in picked))
            for tally_ in tallies.values()
        ]
        ref, ref_n = sums[0]
        cells = []
        for hits, n in sums:
            p = fisher_exact([[ref, ref_n - ref], [hits, n - hits]])[1]
            cells.append(f"{hits}/{n} (p = {p:.1g})")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
