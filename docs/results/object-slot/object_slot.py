"""Probe: role-word captions where an unseen word sometimes stands in the shape's place.

The roles phase teaches unseen words as markers of the background and the position, and the
world then reads a textual-inversion token, an unseen word in the shape's place, as one: the
object is dropped or painted in the background's colour
(docs/results/2026-12-05-roles-world.md). Here a share of the role-word captions name no shape:
an unseen word stands where the shape word was, over an image that has the object (its shape
left free, as an omitted attribute is). The world sees unseen words both as markers (beside a
background or position word) and as the object (in the shape's place).

    python docs/results/object-slot/object_slot.py train --world W [--share 0.15] [--seed 0]

`W` is a copy of the shipped world; it is trained in place, as `--part roles` would.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from ptibench.world.quality import HELD_OUT_SETS
from ptibench.world.recipe import TrainConfig
from ptibench.world.role_language import RoleLanguage
from ptibench.world.train_language import train_language

SHARE = 0.15
"""Share of captions whose shape word is replaced by an unseen word."""


class ObjectSlotLanguage(RoleLanguage):
    """Role-word captions; in `share` of them an unseen word replaces the shape word."""

    share = SHARE

    def __call__(self, attrs, rng: np.random.Generator) -> str:
        text = super().__call__(attrs, rng)
        if rng.random() >= self.share:
            return text
        words = text.split(" ")
        slots = [i for i, w in enumerate(words) if re.sub(r"[^a-z]", "", w) == attrs.shape]
        if len(slots) != 1:
            return text
        i = slots[0]
        words[i] = words[i].replace(attrs.shape, self.noise(rng))
        replaced = " ".join(words)
        return text if any(b.search(replaced) for b in self.banned) else replaced


def train_phase(world: Path, language_class, part: str, seed: int, steps: int, **facts) -> dict:
    """The shipped world's language phase continued for `steps` on `language_class`'s captions,
    in place; its record written to `world / f"{part}.json"`, beside `facts`."""
    config = dataclasses.replace(TrainConfig(seed=seed), language_steps=steps)
    start = time.time()
    record = train_language(world, config, language_class=language_class, part=part)
    report = {**facts, "seed": seed, "steps": steps, "record": record}
    report["seconds"] = round(time.time() - start, 1)
    (world / f"{part}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def command_parsers(description: str):
    """The probe's command line, its subcommands (to add more) and its `train` command (--world,
    --seed, --steps, --threads)."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--world", type=Path, required=True)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--threads", type=int, default=2)
    return parser, sub, tr


ALL_SETS = ",".join(HELD_OUT_SETS)
"""Every held-out phrasing set, comma-joined: what `measure` reads unless told otherwise."""


def measure_parser(sub, sets: str = ALL_SETS) -> argparse.ArgumentParser:
    """The probe's `measure` command (--world, --out, --sets, --threads): prompt following on the
    held-out phrasing sets, as `noise_words.measure_all` reads it; the probe adds its own flags."""
    me = sub.add_parser("measure")
    me.add_argument("--world", type=Path, required=True)
    me.add_argument("--out", type=Path, required=True)
    me.add_argument("--sets", default=sets)
    me.add_argument("--threads", type=int, default=1)
    return me


def train_parser(description: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The probe's command line and its `train` command (see command_parsers)."""
    parser, _, tr = command_parsers(description)
    return parser, tr


def train_with_share(description: str, language_class, part: str, share=None, **defaults) -> None:
    """A probe's whole command line for a language with a `share` class attribute: `train`
    (--world, --seed, --steps, --threads, --share; `share` None makes --share required,
    `defaults` replace the others' defaults), then `train_phase`, its report printed."""
    parser, tr = train_parser(description)
    tr.add_argument("--share", type=float, default=share, required=share is None)
    tr.set_defaults(**defaults)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    language_class.share = args.share
    report = train_phase(args.world, language_class, part, args.seed, args.steps, share=args.share)
    print(json.dumps(report, indent=2))


def main() -> None:
    train_with_share(__doc__.splitlines()[0], ObjectSlotLanguage, "object_slot", SHARE)


if __name__ == "__main__":
    main()
