"""Per stage-1 lr, the samples that keep the concept in the edits naming a background (or, with
`--edits all`, in every edit `edit_identity` reads), each grid seed apart and pooled over the
seeds, with Fisher's exact test (two-sided) of each pool against the first run's: where along
the grid a world loses the concept. `--total` adds the pool over every lr, with its 95% Wilson
interval.

    python docs/results/longer-training/background_by_lr.py [--edits all] [--total] NAME=OUT [...]

OUT: a `--ptibench-out` folder (its `results.json`) with the yellow-ring stage-1 grid.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from scipy.stats import binomtest, fisher_exact

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles-world"))

from edit_prompts import inversion_cases  # noqa: E402  (roles-world/edit_prompts.py)

CONCEPT = Path("src/ptibench/fixtures/concepts/yellow-ring")


def kept_by_lr(out_dir: Path, counted: list[bool]) -> dict[float, dict[int, tuple]]:
    """lr -> seed -> (samples keeping the concept, samples) over the edits `counted` marks."""
    table: dict[float, dict[int, tuple]] = collections.defaultdict(dict)
    for case in inversion_cases(out_dir):
        spec = case["spec"]
        edits = [
            e
            for e, named in zip(case["records"]["edits"], counted, strict=True)
            if named and "identity" in e
        ]
        table[spec["lr"]][spec["seed"]] = (
            sum(sum(e["identity"]) for e in edits),
            sum(len(e["identity"]) for e in edits),
        )
    return table


def counted_edits(edits: str = "background") -> list[bool]:
    """Per edit prompt of the concept, whether it is counted: every edit, or those that name a
    background."""
    concept = json.loads((CONCEPT / "concept.json").read_text())
    return [
        edits == "all" or "background" in (e.get("expect") or {}) for e in concept["edit_prompts"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", choices=("background", "all"), default="background")
    parser.add_argument("--total", action="store_true", help="add the pool over every lr")
    parser.add_argument("runs", nargs="+", help="NAME=OUT")
    args = parser.parse_args()
    counted = counted_edits(args.edits)
    runs = {n: kept_by_lr(Path(f), counted) for n, f in (r.split("=", 1) for r in args.runs)}
    first = next(iter(runs.values()))
    print("| lr | " + " | ".join(f"{name}: per seed / pooled" for name in runs) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for lr in sorted(first):
        cells = []
        ref = [sum(x) for x in zip(*first[lr].values(), strict=True)]
        for table in runs.values():
            seeds = [table[lr][s] for s in sorted(table[lr])]
            kept, total = (sum(x) for x in zip(*seeds, strict=True))
            p = fisher_exact([[kept, total - kept], [ref[0], ref[1] - ref[0]]])[1]
            cells.append(" ".join(f"{k}" for k, _ in seeds) + f" / {kept}/{total} (p = {p:.1g})")
        print(f"| {lr:g} | " + " | ".join(cells) + " |")
    if args.total:
        print("| all | " + " | ".join(pooled_cell(t, first) for t in runs.values()) + " |")


def pooled(table: dict[float, dict[int, tuple]]) -> tuple[int, int]:
    """(samples keeping the concept, samples) over every lr and seed."""
    cells = [c for seeds in table.values() for c in seeds.values()]
    return sum(k for k, _ in cells), sum(n for _, n in cells)


def pooled_cell(table: dict[float, dict[int, tuple]], first: dict[float, dict[int, tuple]]) -> str:
    """Samples keeping the concept over every lr and seed, Wilson 95%, Fisher against `first`."""
    kept, total = pooled(table)
    ref_kept, ref_total = pooled(first)
    ci = binomtest(kept, total).proportion_ci(method="wilson")
    p = fisher_exact([[kept, total - kept], [ref_kept, ref_total - ref_kept]])[1]
    return f"{kept}/{total}, {kept / total:.2f} [{ci.low:.2f}, {ci.high:.2f}] (p = {p:.1g})"


if __name__ == "__main__":
    main()
