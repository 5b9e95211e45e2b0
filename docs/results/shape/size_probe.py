"""Probe: does the world draw shapes when its objects are larger on the same 32x32 canvas?

Small objects (radius 3.5 px) lose their shape in the VAE round trip and are drawn as blurs by
the UNet even for combinations it trained on (the shape write-up: generated small shapes 0.25
held out, 0.29 trained). This probe trains the recipe's first two parts, the VAE and the
text-to-image UNet, from scratch twice with the same seeds and budget: once at the world's sizes
(small 3.5, large 6: the control) and once with larger objects (`--small 5 --large 8`), then
reads both with the shape probe (`shape_probe.probe`: the oracle on renderings, on their VAE
round trip and on one generated sample per prompt, by size, for 128 held-out and 128 trained
combinations). The sizes are set in-process (`render.SIZES`, and the oracle's small/large
threshold between the widest small and the narrowest large object); nothing in ptibench
changes.

    python docs/results/shape/size_probe.py train --small 3.5 --large 6 --t2i-steps 2000 \
        --work /work/exp/size-3.5-6
    python docs/results/shape/size_probe.py train --small 5 --large 8 --t2i-steps 2000 \
        --work /work/exp/size-5-8
    python docs/results/shape/size_probe.py measure --work /work/exp/size-5-8 \
        --out docs/results/shape/size-5-8

A work folder that already holds a `vae/` (the same sizes and seed: copied from a shorter run)
keeps it and trains the text-to-image part only. `--seed 1` trains a second, independent run
of either (images, captions, initial weights and noise drawn anew).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from shape_probe import probe, trained_prompts

from ptibench.world import oracle, quality, render
from ptibench.world.recipe import TrainConfig
from ptibench.world.train_t2i import train_text_to_image
from ptibench.world.train_vae import train_vae


def set_sizes(small: float, large: float) -> None:
    """Render at these radii and read size with a threshold between them (the oracle's rule:
    the widest small object, a circle at +5% jitter, and the narrowest large one, a square at
    -5%)."""
    render.SIZES.update(small=small, large=large)
    oracle._SIZE_THRESHOLD = (2 * small * 1.05 + 2 * 0.85 * large * 0.95) / 2


def train(work: Path, small: float, large: float, t2i_steps: int, seed: int) -> None:
    set_sizes(small, large)
    config = TrainConfig(t2i_steps=t2i_steps, seed=seed)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    record = {
        "small": small,
        "large": large,
        "seed": seed,
        "vae": "kept" if (work / "vae").is_dir() else train_vae(work, config),
        "t2i": train_text_to_image(work, config),
        "threads": torch.get_num_threads(),
    }
    record["seconds"] = round(time.time() - start, 1)
    (work / "size_probe.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def measure(work: Path, out: Path) -> None:
    record = json.loads((work / "size_probe.json").read_text())
    set_sizes(record["small"], record["large"])
    start = time.time()
    pipe = quality.load_pipeline(work)
    report = {
        "small": record["small"],
        "large": record["large"],
        "t2i_steps": record["t2i"]["steps"],
        "seed": record.get("seed", 0),
        "held_out": probe(pipe, quality.held_out_prompts(128), jitter_seed=1),
        "trained": probe(pipe, trained_prompts(128), jitter_seed=2),
    }
    report["seconds"] = round(time.time() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "size_probe_measure.json").write_text(json.dumps(report, indent=2) + "\n")
    for split in ("held_out", "trained"):
        for stage in ("rendered", "vae", "generated"):
            print(split, stage, {k: v["share"] for k, v in report[split][stage].items()})
        other = report[split]["generated_other_attributes"]
        print(split, "generated, other", {k: v["share"] for k, v in other.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--work", type=Path, required=True)
    tr.add_argument("--small", type=float, required=True)
    tr.add_argument("--large", type=float, required=True)
    tr.add_argument("--t2i-steps", type=int, default=2000)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=1)
    me = sub.add_parser("measure")
    me.add_argument("--work", type=Path, required=True)
    me.add_argument("--out", type=Path, required=True)
    me.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "train":
        train(args.work, args.small, args.large, args.t2i_steps, args.seed)
    else:
        measure(args.work, args.out)


if __name__ == "__main__":
    main()
