"""The tiny world's novel concepts, written as ordinary concept folders (images + concept.json).

Both concepts are absent from the training captions: `yellow-ring` is a held-out shape x colour
pair (inversion can reach it by composing known words), `green-star` is a shape the model never
saw (inversion can only approximate it; fine-tuning has to teach it). Every image puts the object
at its own position on its own background, so a model that copies a training image's context
instead of following the prompt is caught by the oracle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ptibench.world.render import Attributes, render

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
}


def write_concept(out: Path, name: str, seed: int = 0) -> Path:
    spec = CONCEPTS[name]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for i, (background, position) in enumerate(CONTEXTS):
        attrs = Attributes(spec["shape"], spec["colour"], background, position, "large")
        file = f"{i:02d}.png"
        Image.fromarray(render(attrs, rng)).save(folder / file)
        images.append({"file": file, "background": background, "position": position})
    colour = spec["colour"]
    appearance = {"shape": spec["shape"], "colour": colour, "size": "large"}
    edits = []
    for prompt, expect in EDIT_PROMPTS:
        if expect.get("background") == colour:
            continue
        edits.append({"prompt": prompt, "expect": expect})
    concept = {
        "name": name,
        "placeholder": f"<{name}>",
        "class_noun": spec["class_noun"],
        "initializer": spec["initializer"],
        "reconstruction_prompt": "a {}",
        "edit_prompts": edits,
        "appearance": appearance,
        "images": images,
    }
    (folder / "concept.json").write_text(json.dumps(concept, indent=2) + "\n")
    return folder
