"""Probe: role-word captions in which a colour after the shape, behind a marker, is the
background's as often as the object's.

The roles phase lifts background and colour under held-out phrasings and costs a learnt concept
in edits that name a background (docs/results/2026-12-05-roles-world.md). Its segment captions
put the object's colour after the shape behind a comma or a noise word ("ring zork yellow") in
about a quarter of them, and the contrary pattern, the background's colour there, is rarer, so
the world may learn "a colour after the shape is the object's" instead of the cue's comparison
of distances (docs/results/2026-12-04-role-words.md, "Per phrasing"). Here a segment caption
that names the object's colour before the shape and keeps the background puts the background's
colour right after the shape behind the same links ("yellow ring zork black"), as often as the
object's colour goes there: the two patterns are equally frequent and only the distance, which
the cue keeps, says which colour is whose.

    python docs/results/balanced-roles/balanced_roles.py train --world W [--seed 0]

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

from ptibench.world import language as caption_language  # noqa: E402
from ptibench.world.role_language import RoleLanguage  # noqa: E402

LONE_OBJECT_COLOUR_SHARE = 0.7
"""`--lone`: the share of segment captions that name the object's colour. Over all captions a
lone colour is then the background's in 0.52 of them (roles: 0.28; the language's own: 0.41)."""


class BalancedRoleLanguage(RoleLanguage):
    """Role-word captions whose object segment ends, behind a link, in the object's colour or,
    about as often over all captions (where the background is named and differs), in the
    background's."""

    background_share = 0.9
    """Of the object segments that end in a colour and could end in the background's, the
    share that do: with the object colours other captions put after the shape, the two
    patterns come about equally often (roles: 1,336 against 49 in 6,000 captions; here about
    380 against 360)."""

    object_colour_share = 1.0
    """Share of segment captions that name the object's colour (the roles phase: all of them);
    `--lone` lowers it, so that a lone colour is the background's as often as in the language's
    own captions."""

    def segments(self, attrs, rng: np.random.Generator) -> str:
        keep = {name: rng.random() < share for name, share in caption_language.KEEP.items()}
        if self.object_colour_share < 1 and rng.random() >= self.object_colour_share:
            return self.colourless_segments(attrs, keep, rng)
        shape_then_colour = rng.random() < 0.5
        link = f" {self.noise(rng)} " if rng.random() < 0.5 else ", "
        background_after = (
            shape_then_colour
            and keep["background"]
            and attrs.background != attrs.colour
            and rng.random() < self.background_share
        )
        if background_after:
            head = caption_language._object_phrase(attrs, keep["size"], True, rng)
            parts = [head + link + attrs.background]
        elif shape_then_colour:
            head = caption_language._object_phrase(attrs, keep["size"], False, rng)
            parts = [head + link + attrs.colour]
        else:
            parts = [caption_language._object_phrase(attrs, keep["size"], True, rng)]
        names = ("position",) if background_after else ("background", "position")
        return self.with_marked(parts, attrs, keep, names, rng)

    def colourless_segments(self, attrs, keep, rng: np.random.Generator) -> str:
        """A segment caption that leaves the object's colour out: a colour it names is the
        background's, wherever it stands."""
        parts = [caption_language._object_phrase(attrs, keep["size"], False, rng)]
        return self.with_marked(parts, attrs, keep, ("background", "position"), rng)

    def with_marked(self, parts, attrs, keep, names, rng: np.random.Generator) -> str:
        """`parts` and the marked segments of `names` (where kept), joined in a random order."""
        parts = list(parts)
        for name in names:
            if keep[name]:
                parts.append(self.marked(getattr(attrs, name), rng))
        return self.joined(parts, rng)


def main() -> None:
    parser, tr = train_parser(__doc__.splitlines()[0])
    tr.add_argument(
        "--lone",
        action="store_true",
        help=f"segment captions name the object's colour at {LONE_OBJECT_COLOUR_SHARE} only",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.lone:
        BalancedRoleLanguage.object_colour_share = LONE_OBJECT_COLOUR_SHARE
    facts = {"object_colour_share": BalancedRoleLanguage.object_colour_share}
    report = train_phase(
        args.world, BalancedRoleLanguage, "balanced_roles", args.seed, args.steps, **facts
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
