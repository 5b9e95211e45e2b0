"""Probe: where is shape lost in the shipped tiny world, at the oracle, the VAE or the UNet?

For held-out combinations (`quality.held_out_prompts`) and for combinations the world trained
on, the oracle reads shape back from
1. the rendered image (with the training set's jitter): what the oracle can read at all;
2. the rendered image through the VAE (encode, decode with the posterior mean): what the
   latent space keeps;
3. one generated sample per prompt in the training wording (20 DPM-Solver++ steps, guidance 4,
   as `quality.measure_prompt_following`).
Each split by size, with 95% Wilson intervals and the generated images' confusion matrix.

    python docs/results/shape/shape_probe.py --n 128 --out docs/results/shape
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

from ptibench.assets import tiny_world_path
from ptibench.world import oracle, quality
from ptibench.world.dataset import to_model_range
from ptibench.world.render import SHAPES, is_held_out, render, sample_attributes


def share(hits: list[bool]) -> dict:
    k, n = int(sum(hits)), len(hits)
    ci = binomtest(k, n).proportion_ci(method="wilson") if n else None
    return {
        "hits": k,
        "n": n,
        "share": round(k / n, 3) if n else None,
        "ci95": [round(ci.low, 3), round(ci.high, 3)] if ci else None,
    }


def trained_prompts(n: int, seed: int = 321) -> list:
    """n distinct full combinations the world was trained on (object and background differ)."""
    rng = np.random.default_rng(seed)
    seen: dict = {}
    while len(seen) < n:
        a = sample_attributes(rng)
        if a.colour != a.background and not is_held_out(a):
            seen[a] = None
    return list(seen)


def by_size(combos, readings) -> dict:
    result = {}
    for size in ("small", "large", "all"):
        hits = [
            r.shape == a.shape
            for a, r in zip(combos, readings, strict=True)
            if size in ("all", a.size)
        ]
        result[size] = share(hits)
    return result


@torch.no_grad()
def vae_roundtrip(pipe, images: np.ndarray) -> np.ndarray:
    x = to_model_range(images)
    latents = pipe.vae.encode(x).latent_dist.mean
    out = pipe.vae.decode(latents).sample
    return ((out.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def generated(pipe, combos) -> list:
    """One sample per combination in the training wording (the quality checks' seeds)."""
    return quality.sample(pipe, [quality.full_prompt(a) for a in combos])


def held_out_renderings(n: int, jitter_seed: int = 1) -> tuple[list, np.ndarray]:
    """`quality.held_out_prompts(n)` and their renderings, jittered as the training set is."""
    combos = quality.held_out_prompts(n)
    jitter = np.random.default_rng(jitter_seed)
    return combos, np.stack([render(a, jitter) for a in combos])


def confusion(combos, readings) -> dict:
    table = {s: {t: 0 for t in (*SHAPES, "star", "none")} for s in SHAPES}
    for a, r in zip(combos, readings, strict=True):
        table[a.shape][r.shape or "none"] += 1
    return table


def probe(pipe, combos, jitter_seed: int) -> dict:
    jitter = np.random.default_rng(jitter_seed)
    rendered = np.stack([render(a, jitter) for a in combos])
    sets = {
        "rendered": [oracle.read(img) for img in rendered],
        "vae": [oracle.read(img) for img in vae_roundtrip(pipe, rendered)],
        "generated": [oracle.read(img) for img in generated(pipe, combos)],
    }
    result = {name: by_size(combos, readings) for name, readings in sets.items()}
    result["generated_confusion"] = confusion(combos, sets["generated"])
    result["generated_other_attributes"] = {
        key: share(
            [
                getattr(r, key) == getattr(a, key)
                for a, r in zip(combos, sets["generated"], strict=True)
            ]
        )
        for key in ("background", "colour", "position", "size")
    }
    return result


def open_probe(parser: argparse.ArgumentParser):
    """The shape probes' common start: `--threads`, `--out` and `--world`, torch's thread count,
    the world's pipeline (the shipped one by default). Returns the arguments and the pipeline."""
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--world", type=Path, help="a world folder (default: the shipped world)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args, quality.load_pipeline(args.world or tiny_world_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    start = time.time()
    args, pipe = open_probe(parser)
    report = {
        "held_out": probe(pipe, quality.held_out_prompts(args.n), jitter_seed=1),
        "trained": probe(pipe, trained_prompts(args.n), jitter_seed=2),
        "n": args.n,
        "seconds": round(time.time() - start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shape_probe.json").write_text(json.dumps(report, indent=2))
    for split in ("held_out", "trained"):
        for name in ("rendered", "vae", "generated"):
            row = report[split][name]
            print(split, name, {size: (v["share"], v["ci95"]) for size, v in row.items()})
    print(json.dumps(report["held_out"]["generated_confusion"], indent=1))


if __name__ == "__main__":
    main()
