"""The caption language of the world's `language` phase: the five attributes worded in thousands
of sentence shapes.

A world trained on `render.caption` alone follows its attributes in that one sentence shape and
loses them under rewording (docs/results/2026-12-01-rewording-and-stage1.md); a fine-tune on
seven more wordings learns those seven and little else
(docs/results/2026-12-02-phrasing-finetune.md).
Here the object phrase, the position phrase and the background phrase each come in several
wordings (prepositional phrases, relative clauses, "it is ..." clauses), in any order the
wording allows, joined by spaces, commas, semicolons or "and". Attributes are left out at the
recipe's rates, so an unnamed attribute stays free. None of it is a held-out construction
(`quality.HELD_OUT_CONSTRUCTIONS`, checked by tests/test_world_language.py).
"""

from __future__ import annotations

import numpy as np

from .render import Attributes

OBJECT_FORMS = (
    "{det} {size} {colour} {shape}",
    "{det} {colour} {size} {shape}",
    "{det} {size} {shape} coloured {colour}",
    "{det} {size} {shape} painted {colour}",
    "{det} {colour} {shape} that is {size}",
    "{det} {size} {shape} whose colour is {colour}",
    "{det} {colour} coloured {size} {shape}",
)
"""The object phrase when size and colour are both named (otherwise the first form, with the
missing word left out)."""

DETERMINERS = ("a", "one", "the", "a single")

POSITION_PHRASES = (
    "at the {position}",
    "towards the {position}",
    "near the {position}",
    "at the very {position}",
    "placed at the {position}",
    "positioned at the {position}",
    "sitting at the {position}",
)
POSITION_CLAUSES = (
    "it is at the {position}",
    "it sits at the {position}",
    "its place is the {position}",
    "placed {position}",
)
BACKGROUND_PHRASES = (
    "on a {background} background",
    "over a {background} background",
    "with a {background} background",
    "with {background} behind it",
    "with {background} all around",
    "over plain {background}",
)
BACKGROUND_CLAUSES = (
    "the background is {background}",
    "everything else is {background}",
    "behind it all is {background}",
)
CLAUSE_JOINS = (", ", "; ", " and ", ", and ")

KEEP = {"size": 0.5, "colour": 0.85, "background": 0.8, "position": 0.8}
"""How often each attribute is named (`render.caption`'s rates)."""
PHRASE_SHARE = 0.7
"""Position and background: a phrase after the object, else a clause of its own."""
LEADING_SHARE = 0.35
"""How often the first phrase comes before the object."""


class CaptionLanguage:
    """Draws captions that fit the text encoder's context (`max_tokens` without the start and
    end tokens), counted by `tokenizer`."""

    def __init__(self, tokenizer, max_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens or tokenizer.model_max_length - 2

    def __call__(self, attrs: Attributes, rng: np.random.Generator) -> str:
        """One caption of `attrs`; drawing until one fits."""
        while True:
            text = draw_caption(attrs, rng)
            if len(self.tokenizer.tokenize(text)) <= self.max_tokens:
                return text


def draw_caption(attrs: Attributes, rng: np.random.Generator) -> str:
    """One caption of `attrs` in a random construction and order, whatever its length."""
    keep = {name: rng.random() < share for name, share in KEEP.items()}
    obj = _object_phrase(attrs, keep["size"], keep["colour"], rng)
    phrases, clauses = [], []
    for name, forms, clause_forms in (
        ("position", POSITION_PHRASES, POSITION_CLAUSES),
        ("background", BACKGROUND_PHRASES, BACKGROUND_CLAUSES),
    ):
        if keep[name]:
            if rng.random() < PHRASE_SHARE:
                phrases.append(forms[rng.integers(len(forms))])
            else:
                clauses.append(clause_forms[rng.integers(len(clause_forms))])
    rng.shuffle(phrases)
    rng.shuffle(clauses)
    fill = {"position": attrs.position, "background": attrs.background}
    phrases = [p.format(**fill) for p in phrases]
    clauses = [c.format(**fill) for c in clauses]
    text = f"{phrases.pop(0)}, {obj}" if phrases and rng.random() < LEADING_SHARE else obj
    if phrases:
        text += " " + " ".join(phrases)
    for clause in clauses:
        if clause.startswith(("it ", "its ", "placed ")) or rng.random() < 0.5:
            text += CLAUSE_JOINS[rng.integers(len(CLAUSE_JOINS))] + clause
        else:
            text = clause + CLAUSE_JOINS[rng.integers(2)] + text
    return text


def _object_phrase(attrs: Attributes, size: bool, colour: bool, rng: np.random.Generator) -> str:
    det = DETERMINERS[rng.integers(len(DETERMINERS))]
    form = OBJECT_FORMS[rng.integers(len(OBJECT_FORMS))] if size and colour else OBJECT_FORMS[0]
    text = form.format(
        det=det,
        size=attrs.size if size else "",
        colour=attrs.colour if colour else "",
        shape=attrs.shape,
    )
    text = " ".join(text.split())
    if text.startswith("a ") and text[2] in "aeiou":
        text = "an " + text[2:]
    return text
