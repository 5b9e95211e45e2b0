"""Probe: role-word captions whose markers are a fixed set of words, not any unseen word.

The roles phase marks the background and the position with words drawn from the whole pool of
vocabulary no caption uses; its write-up explained the learnt concept it costs by that: the world
would learn that an unseen word marks a role and read a textual-inversion token as one
(docs/results/2026-12-05-roles-world.md). This probe tests that explanation. Here the markers come
from a fixed draw of `MARKERS` words of that pool, which the captions therefore teach as known
words; the rest of the pool (and the quality test's unseen-word draw) stays unseen. What is left
of the roles phase is its cue, the object's colour nearest the shape, and markers the world
knows: held-out phrasings mark their roles with words it has never seen.

    python docs/results/known-markers/known_markers.py train --world W [--no-cue] [--seed 0]

`W` is a copy of the shipped world; it is trained in place, as `--part roles` would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "object-slot"))

from object_slot import train_parser, train_phase  # noqa: E402  (object-slot/object_slot.py)

from ptibench.world.role_language import (  # noqa: E402
    NoisyLanguage,
    RoleLanguage,
    unseen_words,
)

MARKERS = 24
"""How many words of the noise pool the captions use as markers."""
GUARDED = 32
"""The quality test's unseen-word draw (role_language.unseen_words, seed 0): never a marker."""


def marker_words(tokenizer, pool: list[str]) -> list[str]:
    """A fixed draw of `MARKERS` pool words, none of the quality test's unseen words."""
    guarded = set(unseen_words(tokenizer, GUARDED))
    free = [w for w in pool if w not in guarded]
    picks = np.random.default_rng(1).choice(len(free), MARKERS, replace=False)
    return sorted(free[i] for i in picks)


class KnownMarkers:
    """Mixed in before a noise-word language: its noise words come from `marker_words` only."""

    def __init__(self, tokenizer, *args, **kwargs):
        super().__init__(tokenizer, *args, **kwargs)
        self.pool = marker_words(tokenizer, self.pool)


class KnownMarkerLanguage(KnownMarkers, RoleLanguage):
    """Role-word captions (the cue kept) with the fixed markers."""


class KnownMarkerNoCueLanguage(KnownMarkers, NoisyLanguage):
    """The same markers without the cue: noise-word captions, the object's colour anywhere."""


def main() -> None:
    parser, tr = train_parser(__doc__.splitlines()[0])
    tr.add_argument("--no-cue", action="store_true", help="noise-word captions without the cue")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    language = KnownMarkerNoCueLanguage if args.no_cue else KnownMarkerLanguage
    facts = {"markers": MARKERS, "cue": not args.no_cue}
    report = train_phase(args.world, language, "known_markers", args.seed, args.steps, **facts)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
