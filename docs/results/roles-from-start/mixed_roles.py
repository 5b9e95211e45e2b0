"""Probe: the language phase on a mixture of the role-word captions and the shipped captions, as
the phase itself (from the layout phase's weights), to see where between the two a world lands
on prompt following under rewording and on the learnt concept.

Each caption is drawn from `role_language.RoleLanguage` with probability `--share`, else from
the shipped `CaptionLanguage`; the phase's seeds, lrs, map loss and step count (1,500) are the
recipe's. The world folder must hold a pipeline trained up to `layout` (a copy of one: the phase
writes its weights in place):

    python docs/results/roles-from-start/mixed_roles.py train --world COPY --share 0.5 --seed 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "object-slot"))

from object_slot import train_with_share  # noqa: E402  (object-slot/object_slot.py)

from ptibench.world.language import CaptionLanguage  # noqa: E402
from ptibench.world.recipe import TrainConfig  # noqa: E402
from ptibench.world.role_language import RoleLanguage  # noqa: E402


class MixedLanguage:
    """Role-word captions with probability `share`, the shipped captions otherwise."""

    share = 0.5

    def __init__(self, tokenizer):
        self.roles = RoleLanguage(tokenizer)
        self.plain = CaptionLanguage(tokenizer)

    def __call__(self, attrs, rng: np.random.Generator) -> str:
        language = self.roles if rng.random() < self.share else self.plain
        return language(attrs, rng)


def main() -> None:
    train_with_share(
        __doc__.splitlines()[0],
        MixedLanguage,
        "mixed_roles",
        seed=1,
        steps=TrainConfig().language_steps,
    )


if __name__ == "__main__":
    main()
