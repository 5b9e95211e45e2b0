"""Pooled prompt following of noise-word worlds against the shipped world, per held-out set:
hits over the set's six phrasings x 64 prompts, 95% Wilson intervals, and Fisher's exact test
(two-sided) against the shipped world.

    python docs/results/noise-words/compare.py docs/results/noise-words/seed0 [...] > table.md

Each folder holds `noise_words.py measure` output (`first.json` ... `fourth.json`); the shipped
world's readings are the language world's (`../language-world/prompt-following/`) and
`shipped/fourth.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy.stats import binomtest, fisher_exact

HERE = Path(__file__).resolve().parent
SHIPPED = {
    "first": HERE.parent / "language-world" / "prompt-following" / "rewording_probe.json",
    "confirmation": HERE.parent / "language-world" / "prompt-following" / "confirmation.json",
    "third": HERE.parent / "language-world" / "prompt-following" / "third.json",
    "fourth": HERE / "shipped" / "fourth.json",
}
ATTRIBUTES = ("background", "colour", "position", "size", "shape")
TRAINING = "training phrasing"
PROMPTS = 64


def counts(path: Path, training: bool = False) -> dict[str, list[int]]:
    """attribute -> [hits, readings] over a set's held-out phrasings (or its training row)."""
    rows = json.loads(path.read_text())["rows"]
    names = [TRAINING] if training else [n for n in rows if n != TRAINING]
    return {
        a: [sum(round(rows[n][a]["share"] * PROMPTS) for n in names), PROMPTS * len(names)]
        for a in ATTRIBUTES
    }


def cell(hits: int, n: int, against: list[int] | None) -> str:
    ci = binomtest(hits, n).proportion_ci(method="wilson")
    text = f"{hits / n:.2f} [{ci.low:.2f}, {ci.high:.2f}]"
    if against is not None:
        p = fisher_exact([[hits, n - hits], [against[0], against[1] - against[0]]]).pvalue
        text += f" (p = {p:.1g})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worlds", type=Path, nargs="+")
    args = parser.parse_args()
    print("| set | world | " + " | ".join(ATTRIBUTES) + " |")
    print("|---" * (len(ATTRIBUTES) + 2) + "|")
    sets = [("training wording", "first", True)]
    sets += [(name, name, False) for name in SHIPPED]
    for label, name, training in sets:
        shipped = counts(SHIPPED[name], training)
        row = [cell(*shipped[a], None) for a in ATTRIBUTES]
        print(f"| {label} | shipped | " + " | ".join(row) + " |")
        for world in args.worlds:
            path = world / f"{name}.json"
            if not path.exists():
                continue
            mine = counts(path, training)
            row = [cell(*mine[a], shipped[a]) for a in ATTRIBUTES]
            print(f"| | {world.name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
