"""Probe: does the `language` phase carry colour and background over to held-out phrasings when
its captions also hold words the world has no meaning for?

On the shipped world, held-out phrasings that open with the background colour and mark its role
only with a word the world never saw ("black canvas showing ...", "imagine black, then ...")
are read with the first colour as the object's (colour 0.02-0.25). In every held-out phrasing of
the three sets the object's colour is the one next to the shape word, and the background's is
elsewhere; a world that had learnt that, and to pass over words it does not know, would follow
them. `NoisyLanguage` teaches both: a share of captions are assembled from segments (object,
background, position) in any order, where the background and position segments mark their word
with a *noise word* (a random word of the tokenizer's vocabulary that neither the language nor
any held-out set uses) instead of the language's own, and the object's colour sits next to its
shape, before it or one noise word or comma after it; the other captions are the language's,
with one noise word inserted at a random place in some of them.

The variant is chosen by reading the first three held-out sets, so it is judged on a fourth,
`FOURTH_PHRASINGS`, written before any variant was trained or read.

    python docs/results/noise-words/noise_words.py train --world COPY_OF_PRE_LANGUAGE_WORLD
    python docs/results/noise-words/noise_words.py measure --world DIR --out OUT   # all four sets
    python docs/results/noise-words/noise_words.py measure --world shipped --sets fourth --out OUT

`train` runs the recipe's `language` phase (`python -m ptibench.world train --part language`)
with `NoisyLanguage` on the folder, in place: give it a copy of the world before its language
phase (`git archive 3252eee^ src/ptibench/fixtures/tiny-world`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rewording"))

from grammar_finetune import (  # noqa: E402
    THIRD_CONSTRUCTIONS,
    THIRD_PHRASINGS,
    check_no_held_out,
    measure,
)

from ptibench.assets import tiny_world_path  # noqa: E402
from ptibench.world import language as language_module  # noqa: E402
from ptibench.world import quality  # noqa: E402
from ptibench.world.language import CaptionLanguage  # noqa: E402
from ptibench.world.recipe import TrainConfig  # noqa: E402
from ptibench.world.render import COLOURS, POSITIONS, SHAPES, SIZES  # noqa: E402
from ptibench.world.train_language import train_language  # noqa: E402

FOURTH_PHRASINGS = (
    "{background} wallpaper with one {size} {colour} {shape} off to the {position}",
    "over {background} tiles, a {colour} {size} {shape} lies {position}",
    "{size} {colour} {shape} located {position}, {background} backing",
    "my drawing: {background} fills it, {colour} {shape}, {size}, {position}",
    "{background}! {colour} {shape}! {size}! {position}!",
    "in {background} light, a {shape} that is {colour} and {size}, {position} most",
)
"""Held-out phrasings written before any noise-word world was trained or read."""

FOURTH_CONSTRUCTIONS = (
    r"\b(wallpaper|off|tiles|lies|located|backing|my|drawing|fills|light|most)\b",
    r"!",
)
"""Words and constructions of FOURTH_PHRASINGS no training caption may use."""

BANNED = tuple(
    re.compile(c)
    for c in (*quality.HELD_OUT_CONSTRUCTIONS, *THIRD_CONSTRUCTIONS, *FOURTH_CONSTRUCTIONS)
)

NOISE_SHARE = 0.4
"""Share of captions assembled from segments with noise words."""
INSERT_SHARE = 0.3
"""Share of the other captions that get one noise word inserted."""


def language_words() -> set[str]:
    """Every word the caption language or the world's vocabulary uses."""
    templates = (
        *language_module.OBJECT_FORMS,
        *language_module.DETERMINERS,
        *language_module.POSITION_PHRASES,
        *language_module.POSITION_CLAUSES,
        *language_module.BACKGROUND_PHRASES,
        *language_module.BACKGROUND_CLAUSES,
    )
    words = set(re.findall(r"[a-z]+", " ".join(templates)))
    return words | set(COLOURS) | set(SHAPES) | set(POSITIONS) | set(SIZES) | {"an"}


def noise_pool(tokenizer) -> list[str]:
    """Whole-word tokens of the vocabulary that no caption of the language and no held-out
    phrasing uses (each is one token, so a noise word never splits into known pieces)."""
    taken = language_words()
    pool = []
    for token in tokenizer.get_vocab():
        if not token.endswith("</w>"):
            continue
        word = token[: -len("</w>")]
        if not (word.isascii() and word.isalpha() and word.islower() and 3 <= len(word) <= 10):
            continue
        if word in taken or any(b.search(word) for b in BANNED):
            continue
        pool.append(word)
    return sorted(pool)


class NoisyLanguage(CaptionLanguage):
    """The caption language with noise-word captions (module docstring)."""

    def __init__(self, tokenizer, max_tokens: int | None = None):
        super().__init__(tokenizer, max_tokens)
        self.pool = noise_pool(tokenizer)

    def __call__(self, attrs, rng: np.random.Generator) -> str:
        while True:
            if rng.random() < NOISE_SHARE:
                text = self.segments(attrs, rng)
            else:
                text = language_module.draw_caption(attrs, rng)
                if rng.random() < INSERT_SHARE:
                    words = text.split()
                    words.insert(int(rng.integers(len(words) + 1)), self.noise(rng))
                    text = " ".join(words)
            if len(self.tokenizer.tokenize(text)) <= self.max_tokens and not any(
                b.search(text) for b in BANNED
            ):
                return text

    def noise(self, rng: np.random.Generator) -> str:
        return self.pool[int(rng.integers(len(self.pool)))]

    def segments(self, attrs, rng: np.random.Generator) -> str:
        keep = {name: rng.random() < share for name, share in language_module.KEEP.items()}
        parts = [self.object_segment(attrs, keep["size"], keep["colour"], rng)]
        for name in ("background", "position"):
            if keep[name]:
                word = getattr(attrs, name)
                form = int(rng.integers(3))
                parts.append(
                    (
                        f"{word} {self.noise(rng)}",
                        f"{self.noise(rng)} {word}",
                        f"{self.noise(rng)} {word} {self.noise(rng)}",
                    )[form]
                )
        order = rng.permutation(len(parts))
        joins = (", ", "; ", " and ", " ")
        text = parts[order[0]]
        for i in order[1:]:
            text += joins[int(rng.integers(len(joins)))] + parts[i]
        return text

    def object_segment(self, attrs, size: bool, colour: bool, rng: np.random.Generator) -> str:
        """The object phrase with its colour before the shape (the language's forms) or just
        after it (one noise word or a comma between)."""
        if not colour or rng.random() < 0.5:
            return language_module._object_phrase(attrs, size, colour, rng)
        head = language_module._object_phrase(attrs, size, False, rng)
        link = f" {self.noise(rng)} " if rng.random() < 0.5 else ", "
        return head + link + attrs.colour


def train(world: Path, seed: int) -> None:
    from ptibench.world.dataset import render_set

    config = TrainConfig(seed=seed)
    language = NoisyLanguage(CLIPTokenizer.from_pretrained(world / "pipeline" / "tokenizer"))
    attributes = render_set(2000, 0).attributes
    distinct = check_no_held_out(language, attributes, third=True, extra=FOURTH_CONSTRUCTIONS)
    rng = np.random.default_rng(1)
    examples = [language(attributes[i], rng) for i in range(12)]
    record = train_language(world, config, language_class=NoisyLanguage)
    report = {
        "record": record,
        "noise_pool_words": len(language.pool),
        "distinct_captions_in_100k_draws": distinct,
        "examples": examples,
        "noise_share": NOISE_SHARE,
        "insert_share": INSERT_SHARE,
        "seed": seed,
    }
    (world / "noise_words.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


SETS = {
    "first": quality.HELD_OUT_PHRASINGS,
    "confirmation": quality.CONFIRMATION_PHRASINGS,
    "third": THIRD_PHRASINGS,
    "fourth": FOURTH_PHRASINGS,
}


def measure_all(
    world: str, out: Path, prompts: int, names: list[str], sets: dict | None = None
) -> None:
    """Each named set of `sets` (default SETS) measured on `world`, one JSON file per set."""
    sets = sets or SETS
    folder = tiny_world_path() if world == "shipped" else Path(world)
    pipe = quality.load_pipeline(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        phrasings = sets[name]
        start = time.time()
        result = measure(pipe, prompts, phrasings)
        result["seconds"] = round(time.time() - start, 1)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(name, json.dumps(result["held_out_mean"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--world", type=Path, required=True)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=2)
    me = sub.add_parser("measure")
    me.add_argument("--world", required=True, help='"shipped" or a world folder')
    me.add_argument("--out", type=Path, required=True)
    me.add_argument("--prompts", type=int, default=64)
    me.add_argument("--threads", type=int, default=1)
    me.add_argument("--sets", default="first,confirmation,third,fourth")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "train":
        train(args.world, args.seed)
    else:
        measure_all(args.world, args.out, args.prompts, args.sets.split(","))


if __name__ == "__main__":
    main()
