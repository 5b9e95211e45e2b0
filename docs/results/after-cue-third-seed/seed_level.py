"""One difference per language-phase seed, then their mean with a 95% t interval over the seeds:
how far a caption change's effect on a world holds when the language phase is drawn again.

Two readings per world: the learnt concept kept in the grid's edits that name a background
(`background_by_lr.py --total`, out of 560) and the mean background share of the 18 held-out
phrasings that name the background's colour first (`after_cue.py table`). A row pairs each
seed's world with the base world of the same seed:

    python docs/results/after-cue-third-seed/seed_level.py \\
        --row "lead 0.3 - plain" BASE_OUT:BASE_MEASURED=OUT:MEASURED ...   [--row ...]

Each pair is `BASE_OUT:BASE_MEASURED=OUT:MEASURED` (a grid's `--ptibench-out` folder or kept
results file, and an `after_cue.py measure` folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "longer-training"))
sys.path.insert(0, str(HERE.parent / "after-cue"))
sys.path.insert(0, str(HERE.parent / "bidirectional"))
sys.path.insert(0, str(HERE.parent / "held-out-vocabulary"))

from after_cue import SETS  # noqa: E402  (after-cue/after_cue.py)
from background_by_lr import counted_edits, kept_by_lr, pooled  # noqa: E402  (longer-training/)
from known_words import KNOWN_WORD_PHRASINGS  # noqa: E402  (held-out-vocabulary/)
from phrasing_tables import background_shares, object_colour_first  # noqa: E402


def concept_kept(out: Path) -> int:
    """Samples keeping the concept in the background edits, over every lr and grid seed."""
    return pooled(kept_by_lr(out, counted_edits()))[0]


def background_first(measured: Path) -> float:
    """Mean background share of the held-out phrasings that name the background's colour first."""
    shares = background_shares(measured, SETS)
    keys = [k for k in shares if k not in KNOWN_WORD_PHRASINGS and not object_colour_first([k])[0]]
    return float(np.mean([shares[k] for k in keys]))


def over_seeds(values: list[float], digits: int) -> str:
    diff = np.asarray(values)
    low, high = stats.t.interval(0.95, len(diff) - 1, diff.mean(), stats.sem(diff))
    seeds = ", ".join(f"{v:+.{digits}f}" for v in diff)
    return f"{seeds} | {diff.mean():+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--row",
        nargs="+",
        action="append",
        required=True,
        metavar="LABEL PAIR",
        help="a label, then BASE_OUT:BASE_MEASURED=OUT:MEASURED per language-phase seed",
    )
    args = parser.parse_args()
    rows = []
    for label, *pairs in args.row:
        if len(pairs) < 2:
            parser.error(f"row {label!r}: an interval over seeds needs two seeds or more")
        seeds = []
        for pair in pairs:
            sides = [side.split(":", 1) for side in pair.split("=", 1)]
            if len(sides) != 2 or any(len(side) != 2 for side in sides):
                parser.error(f"row {label!r}: {pair!r} is not BASE_OUT:BASE_MEASURED=OUT:MEASURED")
            for out, measured in sides:
                if not Path(out).exists() or not Path(measured).is_dir():
                    parser.error(f"row {label!r}: {out!r} or {measured!r} does not exist")
            seeds.append([(Path(out), Path(measured)) for out, measured in sides])
        rows.append((label, seeds))
    print(
        "| change | concept kept, background edits (of 560), per seed | mean over seeds [95% t] "
        "| 18 background-first held-out, per seed | mean over seeds [95% t] |"
    )
    print("|---|---|---|---|---|")
    for label, seeds in rows:
        counts = [concept_kept(w[0]) - concept_kept(b[0]) for b, w in seeds]
        phrasings = [background_first(w[1]) - background_first(b[1]) for b, w in seeds]
        print(f"| {label} | {over_seeds(counts, 0)} | {over_seeds(phrasings, 2)} |")


if __name__ == "__main__":
    main()
