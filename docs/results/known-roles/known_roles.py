"""Probe: segment captions whose roles are marked by the caption language's own words only.

Every caption variant that lifted background and colour under held-out phrasings (roles, object
slot, known markers with and without the cue, balanced, lone) lost a learnt concept in the
default grid's edits that name a background, and what they share is the segment captions marked
by words outside the language (docs/results/2026-12-05-balanced-roles.md). Here the segment
captions stay (object, background and position in any order, the cue kept) but each role is
marked by words the language already uses for it ("blue background", "background blue", "blue
behind it", "plain blue", "at the left", "placed left"), and no caption holds a word outside
the language: nothing teaches the world that a word it cannot read marks a role, or that an
unfamiliar word beside a colour makes that colour the background's.

    python docs/results/known-roles/known_roles.py train --world W [--slot 0.15 | --conditional]
        [--seed 0]

`--slot SHARE` also puts an unseen word in the shape word's place in SHARE of the captions (as
docs/results/object-slot/object_slot.py does, over an image that has the object): here an
unfamiliar word is never a marker, only an object, as a learnt token is. `--conditional` keeps
the roles phase's noise-word markers in captions that name the shape and puts an unseen word in
the shape's place in `SLOT_SHARE` of them, marked by known role words only: an unfamiliar word
marks a role only beside a shape word the world can read.

`W` is a copy of the shipped world; it is trained in place, as `--part roles` would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "object-slot"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles-world"))

from object_slot import (  # noqa: E402  (object-slot/object_slot.py)
    ObjectSlotLanguage,
    train_parser,
    train_phase,
)
from unseen_word import WORDS as PROBE_WORDS  # noqa: E402  (roles-world/unseen_word.py)

from ptibench.world import language as caption_language  # noqa: E402
from ptibench.world.render import COLOURS  # noqa: E402
from ptibench.world.role_language import (  # noqa: E402
    NOISE_SHARE,
    RoleLanguage,
    language_words,
    unseen_words,
)

BACKGROUND_SEGMENTS = (
    "{w} background",
    "background {w}",
    "{w} behind it",
    "{w} all around",
    "plain {w}",
)
"""A background segment, in the language's own words (a caption may not open with "{colour}
background": a held-out construction, so such a draw is redrawn)."""

POSITION_SEGMENTS = ("at the {w}", "towards the {w}", "near the {w}", "placed {w}", "{w}")
"""A position segment, in the language's own words."""
SLOT_SHARE = 0.15
"""`--slot` / `--conditional`: the share of captions with an unseen word in the shape's place."""


class KnownRoleLanguage(RoleLanguage):
    """Segment captions (a `NOISE_SHARE` of all) marked by known role words; the other captions
    are the language's own, with nothing inserted; the cue holds in every caption."""

    insert_share = 0.0

    def marked(self, word: str, rng: np.random.Generator) -> str:
        forms = BACKGROUND_SEGMENTS if word in COLOURS else POSITION_SEGMENTS
        return forms[int(rng.integers(len(forms)))].format(w=word)

    def object_segment(self, attrs, size: bool, colour: bool, rng: np.random.Generator) -> str:
        """The object phrase with its colour before the shape or just after it, behind a comma."""
        if rng.random() < 0.5:
            return caption_language._object_phrase(attrs, size, True, rng)
        return caption_language._object_phrase(attrs, size, False, rng) + ", " + attrs.colour


class KnownRoleSlotLanguage(ObjectSlotLanguage, KnownRoleLanguage):
    """Known-role captions in which an unseen word stands in the shape word's place in `share` of
    them; the unseen-word probe's draw (`unseen_words(tokenizer, PROBE_WORDS)`) is never used."""

    def __init__(self, tokenizer, *args, **kwargs):
        super().__init__(tokenizer, *args, **kwargs)
        guarded = set(unseen_words(tokenizer, PROBE_WORDS))
        self.pool = [w for w in self.pool if w not in guarded]


class ConditionalMarkerLanguage(RoleLanguage):
    """Role-word captions with noise-word markers wherever the shape is named; in `share` of
    them an unseen word takes the shape's place and the roles are marked by known words only, so
    an unfamiliar word marks a role only beside a shape word the world can read."""

    share = SLOT_SHARE

    def __init__(self, tokenizer, *args, **kwargs):
        super().__init__(tokenizer, *args, **kwargs)
        self.slotted = KnownRoleSlotLanguage(tokenizer, *args, **kwargs)
        self.slotted.share = 1.0
        self.pool = self.slotted.pool

    def __call__(self, attrs, rng: np.random.Generator) -> str:
        if rng.random() < self.share:
            return self.slotted(attrs, rng)
        return super().__call__(attrs, rng)


def outside_words(language: KnownRoleLanguage, attrs_list, rng, count: int) -> set[str]:
    """Words of `count` drawn captions that are not the language's: its templates' and attribute
    words and the "and" its joins use (none expected)."""
    known = language_words() | {"and"}
    seen: set[str] = set()
    for i in range(count):
        text = language(attrs_list[i % len(attrs_list)], rng)
        seen |= {w.strip(",;") for w in text.split()}
    return {w for w in seen if w and w not in known}


def main() -> None:
    parser, tr = train_parser(__doc__.splitlines()[0])
    tr.add_argument(
        "--slot",
        type=float,
        default=0.0,
        help="share of captions with an unseen word in the shape's place",
    )
    tr.add_argument(
        "--conditional",
        action="store_true",
        help="noise-word markers beside a shape word; known role words around a slot word",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    facts = {"segment_share": NOISE_SHARE, "markers": "the language's own role words"}
    language = KnownRoleLanguage
    if args.conditional:
        language, facts["conditional_share"] = ConditionalMarkerLanguage, SLOT_SHARE
        facts["markers"] = "noise words beside a shape word, known role words in slot captions"
    elif args.slot:
        KnownRoleSlotLanguage.share = args.slot
        language, facts["slot_share"] = KnownRoleSlotLanguage, args.slot
    report = train_phase(args.world, language, "known_roles", args.seed, args.steps, **facts)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
