"""Held-out prompt following phrasing by phrasing, over the 36 held-out phrasings (six sets),
from the background share of each phrasing's 64 readings.

    python docs/results/bidirectional/phrasing_tables.py agreement A=DIR_A:B=DIR_B [...]
    python docs/results/bidirectional/phrasing_tables.py order NAME=DIR [...]
    python docs/results/bidirectional/phrasing_tables.py shift A=DIR_A:B=DIR_B [...]

`agreement`: per pair of worlds, the Pearson correlation of their shares, its p value and the
mean absolute difference. Two training seeds of one recipe that agree closely say a phrasing's
reading is set by the recipe; a change of recipe that keeps a set's mean but not this agreement
moves which phrasings are read right, not how many.

`order`: per world, the mean share over the phrasings that name the object's colour before the
background's and over those that name the background's first, each with a 95% t interval over
its phrasings, and the lowest / highest phrasing.

`shift`: per pair, B's change from A on each of the two kinds of phrasing, paired by phrasing:
the mean change with a 95% t interval and the Wilcoxon signed-rank test's p.

Each folder holds `measure` output (`first.json` ... `sixth.json`), as compared by
docs/results/role-words/compare.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from ptibench.world.quality import HELD_OUT_SETS


def background_shares(folder: Path, sets=HELD_OUT_SETS) -> dict[str, float]:
    """The background share of every phrasing (its template) of the named `sets`, set by set."""
    shares = {}
    for name in sets:
        rows = json.loads((folder / f"{name}.json").read_text())["rows"]
        shares |= {key: row["background"]["share"] for key, row in rows.items()}
    shares.pop("training phrasing")
    return shares


def paired(pair: str) -> tuple[str, str, list[str], np.ndarray, np.ndarray]:
    """Both worlds' names, the phrasings, and their shares in the same order."""
    (name_a, dir_a), (name_b, dir_b) = (side.split("=", 1) for side in pair.split(":"))
    a, b = background_shares(Path(dir_a)), background_shares(Path(dir_b))
    keys = list(a)
    return name_a, name_b, keys, np.array([a[k] for k in keys]), np.array([b[k] for k in keys])


def object_colour_first(keys: list[str]) -> np.ndarray:
    """Per phrasing: whether it names the object's colour before the background's."""
    return np.array([k.index("{colour}") < k.index("{background}") for k in keys])


def agreement(pairs: list[str]) -> None:
    print("| world A | world B | phrasings | Pearson r | p | mean abs difference |")
    print("|---|---|---|---|---|---|")
    for pair in pairs:
        name_a, name_b, _, x, y = paired(pair)
        r, p = stats.pearsonr(x, y)
        diff = float(np.abs(x - y).mean())
        print(f"| {name_a} | {name_b} | {len(x)} | {r:.2f} | {p:.1g} | {diff:.2f} |")


def mean_interval(values: np.ndarray, share: bool = True) -> str:
    """The mean with its 95% t interval: of shares (clipped to [0, 1]) or of signed changes. One
    value has no interval; values that do not spread have a point one."""
    mean = values.mean()
    if len(values) < 2:
        return f"{mean:.2f}" if share else f"{mean:+.2f}"
    sem = stats.sem(values)
    low, high = (mean, mean) if sem == 0 else stats.t.interval(0.95, len(values) - 1, mean, sem)
    if share:
        return f"{mean:.2f} [{max(low, 0.0):.2f}, {min(high, 1.0):.2f}]"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def order(worlds: list[str]) -> None:
    print("| world | object's colour first: mean | lowest | background's first: mean | highest |")
    print("|---|---|---|---|---|")
    for item in worlds:
        name, folder = item.split("=", 1)
        shares = background_shares(Path(folder))
        first = object_colour_first(list(shares))
        values = np.array(list(shares.values()))
        obj, bg = values[first], values[~first]
        print(
            f"| {name} | {mean_interval(obj)} (n = {len(obj)}) | {obj.min():.2f} "
            f"| {mean_interval(bg)} (n = {len(bg)}) | {bg.max():.2f} |"
        )


def shift(pairs: list[str]) -> None:
    print(
        "| world A | world B | object's colour first: change | p | background's first: change | p |"
    )
    print("|---|---|---|---|---|---|")
    for pair in pairs:
        name_a, name_b, keys, x, y = paired(pair)
        first = object_colour_first(keys)
        cells = []
        for kind in (first, ~first):
            change = y[kind] - x[kind]
            p = stats.wilcoxon(y[kind], x[kind]).pvalue
            cells += [mean_interval(change, share=False), f"{p:.1g}"]
        print(f"| {name_a} | {name_b} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("agreement").add_argument("pairs", nargs="+", help="NAME_A=DIR_A:NAME_B=DIR_B")
    sub.add_parser("order").add_argument("worlds", nargs="+", help="NAME=DIR")
    sub.add_parser("shift").add_argument("pairs", nargs="+", help="NAME_A=DIR_A:NAME_B=DIR_B")
    args = parser.parse_args()
    if args.command == "agreement":
        agreement(args.pairs)
    elif args.command == "order":
        order(args.worlds)
    else:
        shift(args.pairs)


if __name__ == "__main__":
    main()
