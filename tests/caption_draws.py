"""What the caption-language tests share: captions drawn for training images' attributes, and a
held-out template as a pattern that matches its prompts."""

from __future__ import annotations

import re

import numpy as np

from ptibench.world.dataset import render_set


def draw_captions(language, draws: int) -> list[tuple]:
    """`draws` (attributes, caption) pairs of 500 training images' attributes, seed 0."""
    attributes = render_set(500, 0).attributes
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(draws):
        attrs = attributes[rng.integers(len(attributes))]
        pairs.append((attrs, language(attrs, rng)))
    return pairs


def template_pattern(template: str) -> re.Pattern:
    """A held-out template as a regular expression: any word in each attribute's slot."""
    pattern = re.escape(template)
    for key in ("size", "colour", "shape", "background", "position"):
        pattern = pattern.replace(re.escape("{" + key + "}"), r"\w+")
    return re.compile(pattern + "$")
