"""An unseen vocabulary word in the shape's place, as a textual-inversion token stands there:
does the world still draw an object, and in which colour? 32 words of the noise-word pool, one
sample each per template and world.

    python docs/results/roles-world/unseen_word.py NAME=WORLD [NAME=WORLD ...] > unseen-word.md
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch
from transformers import CLIPTokenizer

from ptibench.world import quality
from ptibench.world.oracle import read
from ptibench.world.role_language import unseen_words

TEMPLATES = (
    "a yellow ring on a red background at the right",
    "a yellow {w} on a red background at the right",
    "a {w} on a red background at the right",
    "a {w} on a green background",
    "a yellow {w} on a blue background",
    "a yellow {w} on a white background",
    "a {w} at the top",
)
WORDS = 32


def parse_worlds(description: str) -> dict[str, str]:
    """The probes' command line: NAME=FOLDER worlds (in order) and --threads, which it applies."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("worlds", nargs="+", help="NAME=FOLDER")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return dict(item.split("=", 1) for item in args.worlds)


def main() -> None:
    worlds = parse_worlds(__doc__.splitlines()[0])
    first = Path(next(iter(worlds.values())))
    words = unseen_words(CLIPTokenizer.from_pretrained(first / "pipeline" / "tokenizer"), WORDS)
    print("| world | prompt | no object | object colours (most common) |")
    print("|---|---|---|---|")
    for name, folder in worlds.items():
        pipe = quality.load_pipeline(Path(folder))
        for template in TEMPLATES:
            prompts = [template.format(w=w) for w in words]
            readings = [read(image) for image in quality.sample(pipe, prompts, seed=100)]
            empty = sum(r.colour is None for r in readings)
            colours = collections.Counter(r.colour for r in readings if r.colour)
            shown = ", ".join(f"{c} {n}" for c, n in colours.most_common(4))
            print(f"| {name} | {template} | {empty}/{WORDS} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
