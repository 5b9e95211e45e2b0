"""The tables of docs/results/2026-12-02-caption-language.md, from the probes' JSON files.

Each world's mean over a phrasing set (6 phrasings x 64 held-out combinations = 384 readings per
attribute) with its 95% Wilson interval, and its difference from the shipped world with a 95%
Newcombe interval (Wilson-based, the two worlds treated as independent samples: wider than a
paired interval on the same prompts and seeds).

    python docs/results/rewording/language_summary.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from scipy.stats import binomtest

HERE = Path(__file__).parent
ATTRIBUTES = ("background", "colour", "position", "size", "shape")
TRAINING = "training phrasing"


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return ci.low, ci.high


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """Difference p2 - p1 and its 95% interval (Newcombe's method 10)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p2 - p1
    return (
        d,
        d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )


def counts(rows: dict, phrasings: list[str], key: str, n: int) -> tuple[int, int]:
    values = [
        rows[p][key]["share"] if isinstance(rows[p][key], dict) else rows[p][key] for p in phrasings
    ]
    return round(sum(v * n for v in values)), n * len(phrasings)


def table(worlds: dict[str, Path], n: int = 64) -> None:
    loaded = {name: json.loads(path.read_text())["rows"] for name, path in worlds.items()}
    if not loaded:
        return
    base_name = next(iter(loaded))
    base = loaded[base_name]
    phrasings = [p for p in base if p != TRAINING]
    keys = (*ATTRIBUTES, "layout_map_position")
    print("| world | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, rows in loaded.items():
        cells = []
        for key in keys:
            k, total = counts(rows, phrasings, key, n)
            low, high = wilson(k, total)
            cell = f"{k / total:.2f} [{low:.2f}, {high:.2f}]"
            if name != base_name:
                k0, t0 = counts(base, phrasings, key, n)
                d, dl, dh = newcombe(k0, t0, k, total)
                mark = "" if dl <= 0 <= dh else "**"
                cell += f"<br>{mark}{d:+.2f} [{dl:+.2f}, {dh:+.2f}]{mark}"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def per_phrasing(path: Path) -> None:
    rows = json.loads(path.read_text())["rows"]
    print("| phrasing | " + " | ".join(ATTRIBUTES) + " | map |")
    print("|---" * (len(ATTRIBUTES) + 2) + "|")
    for row in rows.values():
        cells = [f"{row[k]['share']:.2f}" for k in (*ATTRIBUTES, "layout_map_position")]
        print(f"| `{row['example']}` | " + " | ".join(cells) + " |")
    print()


def main() -> None:
    lang = HERE / "language"
    dev = {
        "shipped": HERE / "rewording_probe.json",
        "7 wordings, flat map": HERE / "phrasing" / "rewording_probe.json",
        "language, flat map": lang / "flat" / "grammar_finetune.json",
        "language, last-state map": lang / "last" / "grammar_finetune.json",
        "the same, seed 1": lang / "last-seed1" / "grammar_finetune.json",
        "the same + pooled text embedding": lang / "last-pooled" / "grammar_finetune.json",
        "`--part language`": lang / "phase" / "rewording_probe.json",
        "last-state map, `--lead-background 0.2`": lang / "lead-s0" / "grammar_finetune.json",
        "`--lead-background 0.2`, seed 1": lang / "lead-s1" / "grammar_finetune.json",
    }
    print("## Six held-out phrasings (quality.HELD_OUT_PHRASINGS), mean\n")
    table({k: v for k, v in dev.items() if v.exists()})
    confirm = {
        "shipped": lang / "shipped" / "confirmation.json",
        "language, flat map": lang / "flat" / "confirmation.json",
        "language, last-state map": lang / "last" / "confirmation.json",
        "the same, seed 1": lang / "last-seed1" / "confirmation.json",
        "the same + pooled text embedding": lang / "last-pooled" / "confirmation.json",
        "`--part language`": lang / "phase" / "confirmation.json",
        "last-state map, `--lead-background 0.2`": lang / "lead-s0" / "confirmation.json",
        "`--lead-background 0.2`, seed 1": lang / "lead-s1" / "confirmation.json",
    }
    print("## Six confirmation phrasings (quality.CONFIRMATION_PHRASINGS), mean\n")
    table({k: v for k, v in confirm.items() if v.exists()})
    third = {
        "shipped": lang / "shipped" / "third.json",
        "language, last-state map": lang / "last" / "third.json",
        "`--part language`": lang / "phase" / "third.json",
        "last-state map, `--lead-background 0.2`": lang / "lead-s0" / "third.json",
        "`--lead-background 0.2`, seed 1": lang / "lead-s1" / "third.json",
    }
    print("## Six third-set phrasings (grammar_finetune.THIRD_PHRASINGS), mean\n")
    table({k: v for k, v in third.items() if v.exists()})
    for name, path in (
        ("dev", lang / "phase" / "rewording_probe.json"),
        ("confirmation", lang / "phase" / "confirmation.json"),
    ):
        if path.exists():
            print(f"## `--part language` per phrasing ({name})\n")
            per_phrasing(path)


if __name__ == "__main__":
    main()
