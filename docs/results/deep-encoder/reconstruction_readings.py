"""Table: what the reconstruction prompts' samples draw, attribute by attribute, per stage-1 case.

`appearance` counts a sample only when the oracle reads both the concept's colour and its
shape; this splits it, so a token that learns one and not the other shows which. Per lr, the
three grid seeds' counts (of 32 samples each) for the right colour and the right shape.

    python docs/results/deep-encoder/reconstruction_readings.py W1=OUT_W1 W1-DEEP=OUT_W1-DEEP
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptibench.concept import load_concept

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles-world"))
from edit_prompts import inversion_cases  # noqa: E402  (roles-world/edit_prompts.py)


def readings(out: Path) -> dict[float, list[tuple[int, int, int]]]:
    """lr -> per grid seed (colour right, shape right, samples) of the reconstruction prompts."""
    by_lr: dict[float, dict[int, tuple[int, int, int]]] = {}
    for case in inversion_cases(out):
        spec = case["spec"]
        if case.get("status") != "ok":
            continue
        concept = load_concept(spec["concept"])
        oracle = case["records"]["reconstruction"]["oracle"]
        wanted = concept.appearance or {}
        colour = sum(1 for r in oracle if r.get("colour") == wanted.get("colour"))
        shape = sum(1 for r in oracle if r.get("shape") == wanted.get("shape"))
        by_lr.setdefault(spec["lr"], {})[spec["seed"]] = (colour, shape, len(oracle))
    return {lr: [seeds[s] for s in sorted(seeds)] for lr, seeds in sorted(by_lr.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", nargs="+", help="NAME=OUT_DIR (a stage-1 grid's --ptibench-out)")
    args = parser.parse_args()
    tables = []
    for item in args.outs:
        name, _, out = item.partition("=")
        if not (name and out):
            raise SystemExit(f"error: expected NAME=OUT_DIR, got {item!r}")
        tables.append((name, readings(Path(out))))
    lrs = sorted({lr for _, table in tables for lr in table})
    head = " | ".join(f"{name}: colour / shape per grid seed" for name, _ in tables)
    print(f"| lr | {head} |")
    print("|---" * (len(tables) + 1) + "|")
    for lr in lrs:
        cells = []
        for _, table in tables:
            seeds = table.get(lr, [])
            cells.append(", ".join(f"{c}/{s} of {n}" for c, s, n in seeds) or "-")
        print(f"| {lr:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
