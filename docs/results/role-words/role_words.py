"""Probe: does the world follow colour and background under held-out phrasings once its captions
make one cue unambiguous, "the colour word nearest the shape word is the object's"?

In every phrasing of the four earlier held-out sets the object's colour is nearer the shape word
than the background's, on either side. The noise-word variant
(docs/results/2026-12-02-noise-words.md) taught that cue only in part: its captions put a
colour right after the shape behind an unknown word both as the object's colour and as the
background's (a background segment joined by a space after an object without its colour), so
"ring against black" stayed ambiguous. `RoleLanguage` keeps the noise-word captions and draws
every caption, the language's own included, until the object's colour is strictly nearer the
shape word than the background's (counted in words); a segment caption always names the
object's colour, before the shape or after it behind a comma or a noise word.

The cue was read off the earlier sets, so the probe is judged on a fifth set, `FIFTH_PHRASINGS`,
written before any role-word world was trained, and on all the earlier sets.

Both worlds here continue the shipped world's `language` phase for `--steps` steps (the phase's
lrs, batch and map loss; its last-state map fitted again on the phase's captions): one with
`RoleLanguage`, one with the shipped `CaptionLanguage` (the control: the same extra training
without the cue).

    python docs/results/role-words/role_words.py train --world COPY --language role|plain --steps N
    python docs/results/role-words/role_words.py measure --world DIR|shipped --out OUT
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "noise-words"))
sys.path.insert(0, str(HERE.parent / "rewording"))

import noise_words  # noqa: E402
from grammar_finetune import check_no_held_out  # noqa: E402

from ptibench.world import role_language  # noqa: E402
from ptibench.world.language import CaptionLanguage  # noqa: E402
from ptibench.world.quality import FIFTH_CONSTRUCTIONS, FIFTH_PHRASINGS  # noqa: E402
from ptibench.world.recipe import TrainConfig  # noqa: E402
from ptibench.world.train_language import train_language  # noqa: E402

noise_words.BANNED = (*noise_words.BANNED, *(re.compile(c) for c in FIFTH_CONSTRUCTIONS))

SETS = {**noise_words.SETS, "fifth": FIFTH_PHRASINGS}


class RoleLanguage(role_language.RoleLanguage):
    """The role-word language (`ptibench.world.role_language`), banning noise_words.BANNED as it
    stands when the language is built (the sets written by then)."""

    def __init__(self, tokenizer, max_tokens: int | None = None):
        super().__init__(tokenizer, max_tokens, banned=noise_words.BANNED)


class PlainLanguage(CaptionLanguage):
    """The shipped caption language (the control)."""


LANGUAGES = {"role": RoleLanguage, "plain": PlainLanguage}


def cue_share(language, attributes, draws: int = 20_000) -> float:
    """How often `language`'s captions that name both colours follow the cue."""
    rng = np.random.default_rng(0)
    hits = total = 0
    for _ in range(draws):
        attrs = attributes[rng.integers(len(attributes))]
        text = language(attrs, rng)
        words = re.findall(r"[a-z]+", text)
        if attrs.colour != attrs.background and attrs.colour in words and attrs.background in words:
            total += 1
            hits += role_language.object_colour_is_nearest(text, attrs)
    return hits / max(total, 1)


def train(world: Path, kind: str, steps: int, seed: int) -> None:
    from transformers import CLIPTokenizer

    from ptibench.world.dataset import render_set

    config = dataclasses.replace(TrainConfig(seed=seed), language_steps=steps)
    language_class = LANGUAGES[kind]
    language = language_class(CLIPTokenizer.from_pretrained(world / "pipeline" / "tokenizer"))
    attributes = render_set(2000, 0).attributes
    distinct = check_no_held_out(
        language,
        attributes,
        third=True,
        extra=(*noise_words.FOURTH_CONSTRUCTIONS, *FIFTH_CONSTRUCTIONS),
    )
    rng = np.random.default_rng(1)
    examples = [language(attributes[i], rng) for i in range(12)]
    start = time.time()
    record = train_language(world, config, language_class=language_class)
    report = {
        "language": kind,
        "steps": steps,
        "seed": seed,
        "record": record,
        "seconds": round(time.time() - start, 1),
        "distinct_captions_in_100k_draws": distinct,
        "cue_share_of_two_colour_captions": cue_share(language, attributes),
        "examples": examples,
    }
    (world / "role_words.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--world", type=Path, required=True)
    tr.add_argument("--language", choices=sorted(LANGUAGES), required=True)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=1)
    me = sub.add_parser("measure")
    me.add_argument("--world", required=True, help='"shipped" or a world folder')
    me.add_argument("--out", type=Path, required=True)
    me.add_argument("--prompts", type=int, default=64)
    me.add_argument("--threads", type=int, default=1)
    me.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "train":
        train(args.world, args.language, args.steps, args.seed)
    else:
        noise_words.measure_all(args.world, args.out, args.prompts, args.sets.split(","), SETS)


if __name__ == "__main__":
    main()
