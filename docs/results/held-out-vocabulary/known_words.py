"""Held-out phrasings made only of the words the world's captions use: does the world follow a
rewording when it knows every word?

`KNOWN_WORD_PHRASINGS` use no word outside the caption vocabulary (`vocabulary.py`), in
constructions no caption has: `check` draws captions as the recipe does and asserts both (each
phrasing's skeleton, slots as their attribute's words, matches none of them). `measure` reads
the shipped world on them (64 held-out combinations per phrasing, one sample each, as every
held-out set is read); `table` prints each phrasing's background share with the 95% Wilson
interval `measure` stores, against predictions 53-56 ([predictions.md](predictions.md)).

    D=docs/results/held-out-vocabulary
    python $D/known_words.py check
    python $D/known_words.py measure --out $D/shipped
    python $D/known_words.py table $D/shipped
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "noise-words"))
sys.path.insert(0, str(HERE.parent / "bidirectional"))

import noise_words  # noqa: E402  (noise-words/noise_words.py)
from phrasing_tables import object_colour_first  # noqa: E402  (bidirectional/phrasing_tables.py)
from vocabulary import training_captions, words  # noqa: E402  (held-out-vocabulary/vocabulary.py)

from ptibench.world import render  # noqa: E402

KNOWN_WORD_PHRASINGS = (
    "{background} all around and one {size} {colour} {shape} near the {position}",
    "the background {background}, the {colour} {size} {shape} at the {position}",
    "it is {background} behind it all, one {size} {colour} {shape} towards the {position}",
    "the {shape} is {colour} and {size} and the background is {background}, placed {position}",
    "{colour} {shape}, {size}, {position}, {background}",
    "a {size} {shape} whose colour is {colour} at the {position}, {background} all around",
)
"""Three name the background's colour first, three the object's (predictions.md)."""

PROMPTS = 64


SLOT_WORDS = {
    "colour": render.COLOURS,
    "background": render.COLOURS,
    "shape": render.SHAPES,
    "size": render.SIZES,
    "position": render.POSITIONS,
}


def skeleton(template: str) -> re.Pattern:
    """The phrasing with each slot as any of its attribute's words, punctuation ignored."""
    parts = [
        "(" + "|".join(SLOT_WORDS[w[1:-1]]) + ")" if w.startswith("{") else re.escape(w)
        for w in words(template)
    ]
    return re.compile(r"^\W*" + r"\W+".join(parts) + r"\W*$")


def check(count: int) -> None:
    vocabulary, captions = set(), []
    for text in training_captions(count):
        vocabulary.update(words(text))
        captions.append(text.lower())
    for template in KNOWN_WORD_PHRASINGS:
        outside = {w for w in words(template) if w[0] != "{" and w not in vocabulary}
        assert not outside, f"{template!r} uses {sorted(outside)}"
        pattern = skeleton(template)
        matched = [c for c in captions if pattern.match(c)]
        assert not matched, f"{template!r} is a caption construction: {matched[0]!r}"
    print(f"{len(KNOWN_WORD_PHRASINGS)} phrasings: caption words only, no construction among")
    print(f"{len(captions)} captions drawn as the recipe draws them")


def table(folder: Path) -> None:
    rows = json.loads((folder / "known.json").read_text())["rows"]
    print("| phrasing | names first | background | colour | position | prediction |")
    print("|---|---|---|---|---|---|")
    templates = list(KNOWN_WORD_PHRASINGS)
    for template, object_first in zip(templates, object_colour_first(templates), strict=True):
        row = rows[template]
        background_first = not object_first
        share = row["background"]["share"]
        low, high = row["background"]["ci95"]
        held = share <= 0.40 if background_first else share >= 0.80
        verdict = f"{'53' if background_first else '54'}: {'held' if held else 'failed'}"
        print(
            f"| `{template}` | {'background' if background_first else 'object'} "
            f"| {share:.2f} [{low:.2f}, {high:.2f}] | {row['colour']['share']:.2f} "
            f"| {row['position']['share']:.2f} | {verdict} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check").add_argument("--captions", type=int, default=20000)
    me = sub.add_parser("measure")
    me.add_argument("--out", type=Path, required=True)
    me.add_argument("--threads", type=int, default=1)
    sub.add_parser("table").add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "check":
        check(args.captions)
    elif args.command == "measure":
        torch.set_num_threads(args.threads)
        sets = {"known": KNOWN_WORD_PHRASINGS}
        noise_words.measure_all("shipped", args.out, PROMPTS, ["known"], sets)
    else:
        table(args.folder)


if __name__ == "__main__":
    main()
