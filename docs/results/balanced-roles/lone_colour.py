"""A known shape with no colour of its own before a named background ("a ring on a blue
background"): does the world lose the object, painting it in the background's colour (the oracle
then reads no object: a flat object on its own colour is invisible) or reading the colour as the
object's? The question a learnt concept meets in the grid's background edits, without a learnt
token. Every shape x colour of the world, `SAMPLES` seeds each, per world and template; Fisher's
exact test (two-sided) of the lost objects against the first world's.

    python docs/results/balanced-roles/lone_colour.py NAME=WORLD [NAME=WORLD ...] > lone-colour.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from scipy.stats import fisher_exact

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "roles-world"))

from unseen_word import parse_worlds  # noqa: E402  (roles-world/unseen_word.py)

from ptibench.world import quality  # noqa: E402
from ptibench.world.oracle import read  # noqa: E402
from ptibench.world.render import COLOURS, SHAPES  # noqa: E402

TEMPLATES = (
    "a {shape} on a {background} background",
    "a {shape} on a {background} background at the right",
    "a {background} {shape} at the top",
)
"""Two of the grid's background edits with a known shape in the concept's place; the last names
the colour as the object's (the control: there the named colour is the object's, so only its
last column is a success, and no test is run on it)."""
SAMPLES = 4


def tally(pipe, template: str) -> tuple[int, int, int]:
    """(objects read in the named colour, no object read, samples)."""
    prompts, backgrounds = [], []
    for shape in SHAPES:
        for background in COLOURS:
            prompts += [template.format(shape=shape, background=background)] * SAMPLES
            backgrounds += [background] * SAMPLES
    readings = [read(image) for image in quality.sample(pipe, prompts, seed=200)]
    painted = sum(r.colour == b for r, b in zip(readings, backgrounds, strict=True))
    empty = sum(r.colour is None for r in readings)
    return painted, empty, len(readings)


def main() -> None:
    worlds = parse_worlds(__doc__.splitlines()[0])
    print("| template | world | object lost | no object read | object in the named colour |")
    print("|---|---|---|---|---|")
    counts = {}
    for name, folder in worlds.items():
        pipe = quality.load_pipeline(Path(folder))
        for template in TEMPLATES:
            counts[name, template] = tally(pipe, template)
    first = next(iter(worlds))
    for template in TEMPLATES:
        ref_painted, ref_empty, ref_total = counts[first, template]
        ref_lost = ref_painted + ref_empty
        for name in worlds:
            painted, empty, total = counts[name, template]
            lost = painted + empty
            p = ""
            if name != first and "} background" in template:
                table = [[lost, total - lost], [ref_lost, ref_total - ref_lost]]
                p = f" (p = {fisher_exact(table)[1]:.1g})"
            shown = template if name == first else ""
            print(f"| {shown} | {name} | {lost}/{total}{p} | {empty}/{total} | {painted}/{total} |")


if __name__ == "__main__":
    main()
