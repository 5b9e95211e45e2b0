"""Probe: the language phase on a mixture of the role-word captions and the shipped captions, as
the phase itself (from the layout phase's weights), to see where between the two a world lands
on prompt following under rewording and on the learnt concept.

Each caption is drawn from `role_language.RoleLanguage` with probability `--share`, else from
the shipped `CaptionLanguage`; the phase's seeds, lrs, map loss and step count are the recipe's.
The world folder must hold a pipeline trained up to `layout` (a copy of one, since the phase
writes its weights in place):

    python docs/results/roles-from-start/mixed_roles.py train --world COPY --share 0.5 --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from ptibench.world.language import CaptionLanguage
from ptibench.world.recipe import TrainConfig
from ptibench.world.role_language import RoleLanguage
from ptibench.world.train_language import train_language


class MixedLanguage:
    """Role-word captions with probability `share`, the shipped captions otherwise."""

    def __init__(self, tokenizer, share: float):
        self.share = share
        self.roles = RoleLanguage(tokenizer)
        self.plain = CaptionLanguage(tokenizer)

    def __call__(self, attrs, rng: np.random.Generator) -> str:
        language = self.roles if rng.random() < self.share else self.plain
        return language(attrs, rng)


def train(world: Path, share: float, steps: int, seed: int) -> dict:
    config = dataclasses.replace(TrainConfig(seed=seed), language_steps=steps)
    start = time.time()
    record = train_language(
        world,
        config,
        language_class=lambda tokenizer: MixedLanguage(tokenizer, share),
        part="mixed_roles",
    )
    report = {"share": share, "steps": steps, "seed": seed, "record": record}
    report["seconds"] = round(time.time() - start, 1)
    (world / "mixed_roles.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--world", type=Path, required=True)
    tr.add_argument("--share", type=float, required=True)
    tr.add_argument("--steps", type=int, default=TrainConfig().language_steps)
    tr.add_argument("--seed", type=int, default=1)
    tr.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(train(args.world, args.share, args.steps, args.seed), indent=2))


if __name__ == "__main__":
    main()
