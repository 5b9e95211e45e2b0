"""The tiny world's novel concepts, written as ordinary concept folders (images + concept.json).

`yellow-ring` is a held-out shape x colour pair (inversion can reach it by composing known
words), `green-star` a shape the model never saw (inversion can only approximate it; fine-tuning
has to teach it). Each of their images puts the object at its own position on its own
background, so a model that copies a training image's context instead of following the prompt
is caught by the oracle. `red-square-one-room` is shot the way real photo sets are: all five
images in one room (a yellow background), four of them at the right, so nothing in the images
tells the object from its context; the world knows red squares, so what it has to learn is the
context it must not keep. No edit prompt asks for its background or its usual position.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ptibench.world.render import (
    COLOURS,
    HELD_OUT_PAIRS,
    NOVEL_SHAPES,
    POSITIONS,
    SHAPES,
    SIZES,
    Attributes,
    render,
)

CONTEXTS = [
    ("black", "left"),
    ("blue", "right"),
    ("red", "top"),
    ("white", "bottom"),
    ("black", "center"),
]

EDIT_PROMPTS = [
    ("a {} on a green background", {"background": "green"}),
    ("a {} on a blue background", {"background": "blue"}),
    ("a {} on a white background", {"background": "white"}),
    ("a {} at the top", {"position": "top"}),
    ("a {} at the bottom", {"position": "bottom"}),
    ("a {} at the left", {"position": "left"}),
    ("a small {}", {"size": "small"}),
    ("a {} on a red background at the right", {"background": "red", "position": "right"}),
    ("a {} on a black background at the center", {"background": "black", "position": "center"}),
]

CONCEPTS = {
    "yellow-ring": {
        "shape": "ring",
        "colour": "yellow",
        "initializer": "ring",
        "class_noun": "ring",
    },
    "green-star": {
        "shape": "star",
        "colour": "green",
        "initializer": "cross",
        "class_noun": "star",
    },
    "red-square-one-room": {
        "shape": "square",
        "colour": "red",
        "initializer": "square",
        "class_noun": "square",
        "contexts": [
            ("yellow", "right"),
            ("yellow", "right"),
            ("yellow", "right"),
            ("yellow", "center"),
            ("yellow", "right"),
        ],
    },
}


def write_concept(out: Path, name: str, seed: int = 0) -> Path:
    """One of the shipped concepts, written to out/<name>."""
    spec = CONCEPTS[name]
    return write_tiny_concept(
        out / name,
        shape=spec["shape"],
        colour=spec["colour"],
        contexts=spec.get("contexts", CONTEXTS),
        initializer=spec["initializer"],
        class_noun=spec["class_noun"],
        name=name,
        seed=seed,
    )


def concept_problem(shape: str, colour: str, contexts: list[tuple[str, str]], size: str) -> str:
    """Why these attributes cannot make a tiny-world concept ('' when they can)."""
    checks = [
        (shape in (*SHAPES, *NOVEL_SHAPES), f"shape {shape!r}", (*SHAPES, *NOVEL_SHAPES)),
        (colour in COLOURS, f"colour {colour!r}", COLOURS),
        (size in SIZES, f"size {size!r}", SIZES),
    ]
    for background, position in contexts:
        checks += [
            (background in COLOURS, f"background {background!r}", COLOURS),
            (position in POSITIONS, f"position {position!r}", POSITIONS),
        ]
    for ok, what, choices in checks:
        if not ok:
            return f"unknown {what} (the tiny world has {', '.join(choices)})"
    if not contexts:
        return "no contexts: give at least one background:position"
    for background, position in contexts:
        if background == colour:
            return f"context {background}:{position}: a {colour} object is invisible on {colour}"
    return ""


def is_novel(shape: str, colour: str) -> bool:
    """Whether the world's training images never show this shape in this colour."""
    return shape in NOVEL_SHAPES or (shape, colour) in HELD_OUT_PAIRS


def write_tiny_concept(
    folder: Path,
    *,
    shape: str,
    colour: str,
    contexts: list[tuple[str, str]],
    initializer: str,
    class_noun: str,
    name: str | None = None,
    size: str = "large",
    seed: int = 0,
) -> Path:
    """A tiny-world concept folder: one rendered image per (background, position) context, and
    a concept.json with the appearance the oracle checks, the edit prompts that do not hide the
    object (no background of its own colour), and each image's context."""
    name = name or folder.name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for i, (background, position) in enumerate(contexts):
        attrs = Attributes(shape, colour, background, position, size)
        file = f"{i:02d}.png"
        Image.fromarray(render(attrs, rng)).save(folder / file)
        images.append({"file": file, "background": background, "position": position})
    appearance = {"shape": shape, "colour": colour, "size": size}
    edits = []
    for prompt, expect in EDIT_PROMPTS:
        if expect.get("background") == colour:
            continue
        edits.append({"prompt": prompt, "expect": expect})
    concept = {
        "name": name,
        "placeholder": f"<{name}>",
        "class_noun": class_noun,
        "initializer": initializer,
        "reconstruction_prompt": "a {}",
        "edit_prompts": edits,
        "appearance": appearance,
        "images": images,
    }
    (folder / "concept.json").write_text(json.dumps(concept, indent=2) + "\n")
    return folder
