"""Permutation check of the knee rule on a run's stored per-sample data.

Reads a results.json (`--ptibench-out` of a finished run), keeps one stage's sound cases of one
concept (the broken lrs given with --drop left out), and relabels the lrs at random among each
training seed's cases. Relabelled, the lrs are exchangeable, so every knee the rule flags is a
false one; the share of permutations with a knee is the rule's false-knee rate on these data.

    .venv/bin/python tools/knee_permutation.py ptibench-out/results.json --stage inversion \
        --drop 0.3 --permutations 200

Prints the real table's knee and the share, with its 95% Clopper-Pearson interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from ptibench.results.tradeoff import build_tables


def relabelled(cases: list[dict], rng: np.random.Generator) -> list[dict]:
    """The cases with their lrs permuted among the cases of each training seed."""
    out = []
    for seed in sorted({case["spec"]["seed"] for case in cases}):
        group = [case for case in cases if case["spec"]["seed"] == seed]
        lrs = [case["spec"]["lr"] for case in group]
        for case, index in zip(group, rng.permutation(len(group)), strict=True):
            out.append({**case, "spec": {**case["spec"], "lr": lrs[index]}})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--concept", default=None)
    parser.add_argument("--drop", type=float, action="append", default=[], help="an lr left out")
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        cases = json.loads(args.results.read_text())["cases"]
    except (OSError, ValueError, KeyError) as error:
        print(f"knee_permutation: cannot read cases from {args.results}: {error}", file=sys.stderr)
        return 2
    cases = [
        case
        for case in cases
        if case["spec"]["stage"] == args.stage
        and case["status"] == "ok"
        and not any(abs(case["spec"]["lr"] - lr) <= 1e-12 * lr for lr in args.drop)
        and args.concept in (None, case["spec"]["concept"])
    ]
    concepts = {case["spec"]["concept"] for case in cases}
    if len(concepts) != 1:
        found = ", ".join(sorted(concepts)) or "none"
        print(f"knee_permutation: need one concept's cases, found {found}", file=sys.stderr)
        return 2
    real = build_tables(cases)[0]
    print(f"{concepts.pop()} {args.stage}: knee index {real.knee.index} on the real labels")
    rng = np.random.default_rng(args.seed)
    knees = sum(
        build_tables(relabelled(cases, rng))[0].knee.index is not None
        for _ in range(args.permutations)
    )
    low, high = binomtest(knees, args.permutations).proportion_ci(0.95)
    print(
        f"{knees}/{args.permutations} permutations flag a knee "
        f"({knees / args.permutations:.1%}, 95% CI {low:.1%}-{high:.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
