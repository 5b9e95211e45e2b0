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

from grammar_finetune import check_no_held_out, measure  # noqa: E402

from ptibench.assets import tiny_world_path  # noqa: E402
from ptibench.world import quality, role_language  # noqa: E402
from ptibench.world.quality import (  # noqa: E402
    FOURTH_CONSTRUCTIONS,
    FOURTH_PHRASINGS,
    THIRD_CONSTRUCTIONS,
    THIRD_PHRASINGS,
)
from ptibench.world.recipe import TrainConfig  # noqa: E402
from ptibench.world.train_language import train_language  # noqa: E402

BANNED = tuple(
    re.compile(c)
    for c in (*quality.HELD_OUT_CONSTRUCTIONS, *THIRD_CONSTRUCTIONS, *FOURTH_CONSTRUCTIONS)
)
"""What this probe's captions and noise words avoided: the sets written by then (a later probe
extends it before it builds its language)."""


class NoisyLanguage(role_language.NoisyLanguage):
    """The noise-word language (`ptibench.world.role_language`), banning BANNED as it stands when
    the language is built."""

    def __init__(self, tokenizer, max_tokens: int | None = None):
        super().__init__(tokenizer, max_tokens, banned=BANNED)


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
        "noise_share": role_language.NOISE_SHARE,
        "insert_share": role_language.INSERT_SHARE,
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
    world: str,
    out: Path,
    prompts: int,
    names: list[str],
    sets: dict | None = None,
    load=quality.load_pipeline,
) -> None:
    """Each named set of `sets` (default SETS) measured on `world` (its pipeline from
    `load(folder)`), one JSON file per set."""
    sets = sets or SETS
    folder = tiny_world_path() if world == "shipped" else Path(world)
    pipe = load(folder)
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
