"""`python -m ptibench.world train --out DIR [--part vae,t2i,layout,language,clip,lpips]` trains
the tiny world (`language`: the caption-language phase, `train_language`; `roles`, not a default
part and not in the shipped weights: that phase on role-word captions, `train_roles`, continued
after `language` or in its place after `layout`);
a stopped run continues its text-to-image phase from the last `save_every` step when the
same command is run again (`--part t2i,...` on), bit for bit on the same thread count;
`python -m ptibench.world concepts [--out DIR]` writes the shipped concepts;
`python -m ptibench.world concept --shape star --colour red --contexts black:left,blue:top
--out DIR` writes a new tiny-world concept folder, no code needed."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ptibench.assets import concepts_root
from ptibench.concept import load_concept
from ptibench.errors import PtibenchError
from ptibench.world.concepts import (
    CONCEPTS,
    CONTEXTS,
    concept_problem,
    is_novel,
    write_concept,
    write_tiny_concept,
)
from ptibench.world.recipe import TrainConfig, merge_manifest
from ptibench.world.render import SHAPES, SIZES
from ptibench.world.train_clip import train_clip
from ptibench.world.train_language import train_language, train_roles
from ptibench.world.train_layout import train_layout
from ptibench.world.train_lpips import train_lpips_backbone
from ptibench.world.train_t2i import train_text_to_image
from ptibench.world.train_vae import train_vae

DEFAULT_PARTS = "vae,t2i,layout,language,clip,lpips"
"""The recipe the shipped weights had, in order (`roles` is not among them)."""

PARTS = {
    "vae": train_vae,
    "t2i": train_text_to_image,
    "layout": train_layout,
    "language": train_language,
    "roles": train_roles,
    "clip": train_clip,
    "lpips": train_lpips_backbone,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptibench.world")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the tiny world's models from scratch")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--part", default=DEFAULT_PARTS)
    for field in dataclasses.fields(TrainConfig):
        train.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default))
    concepts = sub.add_parser("concepts", help="write the shipped concepts' folders")
    concepts.add_argument(
        "--out", type=Path, default=None, help="default: the packaged concepts folder"
    )
    add_concept_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "concepts":
        for name in CONCEPTS:
            print(write_concept(args.out or concepts_root(), name))
        return 0
    if args.command == "concept":
        return new_concept(args)
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name) is not None
    }
    config = TrainConfig(**overrides)
    parts = args.part.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"error: unknown part(s) {unknown}; choose from {sorted(PARTS)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for part in parts:
        try:
            print(part, PARTS[part](args.out, config), flush=True)
        except PtibenchError as error:
            print(f"python -m ptibench.world train: error: {error}", file=sys.stderr)
            return 2
    merge_manifest(args.out, "object_sizes", dict(SIZES))
    return 0


def _contexts(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        background, colon, position = item.strip().partition(":")
        if not colon or not background or not position:
            raise argparse.ArgumentTypeError(
                f"{item.strip()!r} in {text!r} is not background:position (e.g. blue:left)"
            )
        pairs.append((background, position))
    return pairs


def add_concept_parser(sub) -> None:
    concept = sub.add_parser(
        "concept",
        help="write a new tiny-world concept folder (images + concept.json)",
        description="Render a tiny-world concept: one image per context, and a concept.json "
        "(see ptibench/concept.schema.json) that --concept DIR can use.",
    )
    concept.add_argument("--shape", required=True, help=f"one of {', '.join(SHAPES)}, star")
    concept.add_argument("--colour", "--color", dest="colour", required=True)
    concept.add_argument(
        "--contexts",
        type=_contexts,
        default=None,
        metavar="BG:POS,...",
        help="one image per background:position (default: the shipped concepts' five, "
        + ",".join(f"{b}:{p}" for b, p in CONTEXTS)
        + ", less those on the object's own colour)",
    )
    concept.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write")
    concept.add_argument("--name", help="concept name (default: the folder's name)")
    concept.add_argument(
        "--initializer", help="word the placeholder starts from (default: the shape)"
    )
    concept.add_argument("--class-noun", help="the concept in words (default: the shape)")
    concept.add_argument("--size", default="large", help="small or large (default large)")
    concept.add_argument("--seed", type=int, default=0, help="rendering seed (default 0)")
    concept.add_argument("--force", action="store_true", help="overwrite an existing concept")


def new_concept(args) -> int:
    """Check the attributes, write the folder, and load it back as ptibench will."""
    if args.contexts is None:
        args.contexts = [(bg, position) for bg, position in CONTEXTS if bg != args.colour]
    problem = concept_problem(args.shape, args.colour, args.contexts, args.size)
    if not problem and args.initializer is None and args.shape not in SHAPES:
        problem = (
            f"--initializer is needed: the tiny world never saw a {args.shape}; "
            f"start from a shape it knows ({', '.join(SHAPES)})"
        )
    if not problem and (args.out / "concept.json").exists() and not args.force:
        problem = f"{args.out / 'concept.json'} exists (--force overwrites it)"
    if problem:
        print(f"python -m ptibench.world concept: error: {problem}", file=sys.stderr)
        return 2
    try:
        folder = write_tiny_concept(
            args.out,
            shape=args.shape,
            colour=args.colour,
            contexts=args.contexts,
            initializer=args.initializer or args.shape,
            class_noun=args.class_noun or args.shape,
            name=args.name,
            size=args.size,
            seed=args.seed,
        )
        concept = load_concept(folder)
    except (OSError, PtibenchError) as error:
        print(f"python -m ptibench.world concept: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {folder} ({len(concept.images)} images, {len(concept.edit_prompts)} edits)")
    if not is_novel(args.shape, args.colour):
        print(
            f"note: the world's training images show {args.colour} {args.shape}s, so the "
            "concept is not new to it (novel: a star, or a yellow ring)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
