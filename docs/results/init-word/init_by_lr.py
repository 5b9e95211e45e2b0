"""Tables: stage 1 by lr for concepts that differ only in their initializer word.

Per lr, pooled over the chosen grid seeds: distance (mean), the reconstruction prompt's samples
that draw the concept's shape / colour / both (`appearance`), the edit samples that follow the
edit (`edit_success`) and that keep the concept (`identity`), and the context-free samples that
copy a training image (leakage's copies). Then the predictions' tests: Fisher's exact test of
each concept against the first on pooled counts, and Spearman's correlation with lr over the
cases.

    python docs/results/init-word/init_by_lr.py --seeds 0,1 \\
        ring=OUT_MAIN:yellow-ring square=OUT_INIT:yellow-ring-init-square \\
        object=OUT_INIT:yellow-ring-init-object
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scipy.stats import fisher_exact, spearmanr

from ptibench.concept import load_concept

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles-world"))
from edit_prompts import inversion_cases  # noqa: E402  (roles-world/edit_prompts.py)

LOW, HIGH = (1e-3, 3e-3), (3e-1, 1.0)


def case_counts(case, wanted) -> dict[str, tuple[int, int]]:
    """(hits, samples) of one stage-1 case, by reading."""
    records = case["records"]
    oracle = records["reconstruction"]["oracle"]
    n = len(oracle)
    edits = [e for e in records["edits"] if "edit" in e]
    copies = [c for p in records["leakage"]["prompts"] for c in p["copy"]]
    return {
        "shape": (sum(r.get("shape") == wanted["shape"] for r in oracle), n),
        "colour": (sum(r.get("colour") == wanted["colour"] for r in oracle), n),
        "appearance": (sum(records["reconstruction"]["appearance"]), n),
        "edit": (sum(sum(e["edit"]) for e in edits), sum(len(e["edit"]) for e in edits)),
        "identity": (
            sum(sum(e["identity"]) for e in edits),
            sum(len(e["identity"]) for e in edits),
        ),
        "copies": (sum(copies), len(copies)),
    }


def load(source: str, seeds: set[int], wanted: dict):
    """NAME=RESULTS:CONCEPT -> (name, [(lr, seed, distance, counts)])."""
    name, rest = source.split("=", 1)
    out, concept_name = rest.rsplit(":", 1)
    rows = []
    for case in inversion_cases(Path(out)):
        spec = case["spec"]
        if spec["seed"] not in seeds:
            continue
        if Path(spec["concept"]).name != concept_name or case.get("status") != "ok":
            continue
        rows.append(
            (spec["lr"], spec["seed"], case["metrics"]["distance"], case_counts(case, wanted))
        )
    return name, sorted(rows, key=lambda row: (row[0], row[1]))


def pooled(rows, reading: str, lrs=None) -> tuple[int, int]:
    picked = [c[reading] for lr, _, _, c in rows if lrs is None or lr in lrs]
    return sum(h for h, _ in picked), sum(n for _, n in picked)


READINGS = ("shape", "colour", "appearance", "edit", "identity", "copies")


def table(name: str, rows) -> list[str]:
    lrs = sorted({lr for lr, *_ in rows})
    lines = [
        f"### {name}",
        "",
        "| lr | distance | " + " | ".join(READINGS) + " |",
        "|---|---|" + "---|" * len(READINGS),
    ]
    for lr in lrs:
        mine = [r for r in rows if r[0] == lr]
        distance = sum(r[2] for r in mine) / len(mine)
        cells = ["{}/{}".format(*pooled(mine, reading)) for reading in READINGS]
        lines.append(f"| {lr:.0e} | {distance:.3g} | " + " | ".join(cells) + " |")
    return lines + [""]


def tests(control, others) -> list[str]:
    lines = ["### Tests", ""]
    lines += ["| concept | test | result |", "|---|---|---|"]
    base_name, base_rows = control
    for name, rows in [control, *others]:
        lr = [r[0] for r in rows]
        for reading in ("shape", "appearance", "edit"):
            value = [r[3][reading][0] / r[3][reading][1] for r in rows]
            rho, p = spearmanr(lr, value)
            lines.append(f"| {name} | Spearman of {reading} with lr | {rho:+.2f} (p = {p:.2g}) |")
    for name, rows in others:
        for reading, lrs, where in (
            ("shape", LOW, "lrs 1e-3, 3e-3"),
            ("appearance", LOW, "lrs 1e-3, 3e-3"),
            ("appearance", HIGH, "lrs 3e-1, 1"),
        ):
            a, n = pooled(rows, reading, lrs)
            b, m = pooled(base_rows, reading, lrs)
            _, p = fisher_exact([[a, n - a], [b, m - b]])
            lines.append(
                f"| {name} | {reading} at {where} against {base_name} | "
                f"{a}/{n} against {b}/{m} (Fisher p = {p:.2g}) |"
            )
        for lr in sorted({r[0] for r in rows}):
            mine = [r[2] for r in rows if r[0] == lr]
            theirs = [r[2] for r in base_rows if r[0] == lr]
            if theirs:
                ratio = (sum(mine) / len(mine)) / (sum(theirs) / len(theirs))
                lines.append(f"| {name} | distance at lr {lr:.0e} / {base_name}'s | {ratio:.2f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1", help="grid seeds to pool (comma list)")
    parser.add_argument(
        "--appearance-of",
        default="yellow-ring",
        help="the shipped concept whose shape and colour the samples are read against (the "
        "probe's folders differ from it only in name and initializer)",
    )
    parser.add_argument(
        "sources",
        nargs="+",
        help="NAME=RESULTS:CONCEPT (RESULTS: an --ptibench-out folder or a results.json[.gz]); "
        "the first is the control",
    )
    args = parser.parse_args()
    seeds = {int(s) for s in args.seeds.split(",")}
    wanted = load_concept(args.appearance_of).appearance
    loaded = [load(source, seeds, wanted) for source in args.sources]
    lines = ["## Stage 1 by lr, grid seeds " + args.seeds, ""]
    for name, rows in loaded:
        lines += table(name, rows)
    lines += tests(loaded[0], loaded[1:])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
