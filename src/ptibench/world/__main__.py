"""`python -m ptibench.world train --out fixtures/tiny-world [--part vae,t2i,layout,clip,lpips]`,
`python -m ptibench.world concepts --out fixtures/concepts`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ptibench.world.concepts import CONCEPTS, write_concept
from ptibench.world.recipe import TrainConfig
from ptibench.world.train_clip import train_clip
from ptibench.world.train_layout import train_layout
from ptibench.world.train_lpips import train_lpips_backbone
from ptibench.world.train_t2i import train_text_to_image
from ptibench.world.train_vae import train_vae

PARTS = {
    "vae": train_vae,
    "t2i": train_text_to_image,
    "layout": train_layout,
    "clip": train_clip,
    "lpips": train_lpips_backbone,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptibench.world")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the tiny world's models from scratch")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--part", default="vae,t2i,layout,clip,lpips")
    for field in dataclasses.fields(TrainConfig):
        train.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default))
    concepts = sub.add_parser("concepts", help="write the novel concepts' folders")
    concepts.add_argument("--out", type=Path, default=Path("fixtures/concepts"))
    args = parser.parse_args(argv)
    if args.command == "concepts":
        for name in CONCEPTS:
            print(write_concept(args.out, name))
        return 0
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
        print(part, PARTS[part](args.out, config), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
