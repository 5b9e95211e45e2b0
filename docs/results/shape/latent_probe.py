"""Probe: can a small object's shape be read from the tiny world's latent at all?

A small convolutional classifier (two 3x3 convolutions, global max pooling, a linear layer) is
trained to name the shape from the VAE encoder's posterior mean (16x16x4) of rendered training
images, and the same classifier, trained the same way, from the rendered pixels (32x32x3) as the
reference; both are read on the held-out combinations (`quality.held_out_combinations`, rendered
with jitter), by size, 95% Wilson intervals. If the latent classifier reads small shapes about as
well as the pixel one, the latent keeps the shape and the decoder or the UNet loses it; if it
falls to the decoder's level, the encoder has dropped it.

`--generated` reads instead the UNet's own final latents for the 128 held-out prompts of
`shape_probe.py` (training wording, its seeds) with the latent classifier: does the UNet put the
shape into its latents at all?

    python docs/results/shape/latent_probe.py --out docs/results/shape
    python docs/results/shape/latent_probe.py --generated --out docs/results/shape
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from shape_probe import open_probe, share
from wide_decoder_probe import unet_latents

from ptibench.world import quality
from ptibench.world.dataset import render_set, to_model_range
from ptibench.world.render import SHAPES, render


def classifier(channels: int, classes: int = len(SHAPES)) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 64, 3, padding=1),
        torch.nn.GELU(),
        torch.nn.Conv2d(64, 64, 3, padding=1),
        torch.nn.GELU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, classes),
    )


def fit(
    inputs: torch.Tensor, labels: torch.Tensor, steps: int, seed: int, classes: int = len(SHAPES)
) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = classifier(inputs.shape[1], classes)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(inputs), (128,), generator=gen)
        loss = F.cross_entropy(model(inputs[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def encode(vae, pixels: torch.Tensor) -> torch.Tensor:
    return torch.cat([vae.encode(c).latent_dist.mean for c in pixels.split(500)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--generated", action="store_true")
    start = time.time()
    args, pipe = open_probe(parser)
    vae = pipe.vae
    train = render_set(10000, 0)
    labels = torch.tensor([SHAPES.index(a.shape) for a in train.attributes])
    if args.generated:
        generated(pipe, train, labels, args)
        return
    combos = quality.held_out_combinations()
    jitter = np.random.default_rng(1)
    test_pixels = to_model_range(np.stack([render(a, jitter) for a in combos]))
    test_labels = torch.tensor([SHAPES.index(a.shape) for a in combos])
    report = {"held_out_images": len(combos), "steps": args.steps}
    for name, train_x, test_x in (
        ("pixels", train.pixels, test_pixels),
        ("latent", encode(vae, train.pixels), encode(vae, test_pixels)),
    ):
        model = fit(train_x, labels, args.steps, seed=0)
        with torch.no_grad():
            hits = (model(test_x).argmax(1) == test_labels).tolist()
        report[name] = {
            size: share([h for h, a in zip(hits, combos, strict=True) if size in ("all", a.size)])
            for size in ("small", "large", "all")
        }
        print(name, {k: (v["share"], v["ci95"]) for k, v in report[name].items()}, flush=True)
    report["seconds"] = round(time.time() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latent_probe.json").write_text(json.dumps(report, indent=2) + "\n")


def generated(pipe, train, labels, args) -> None:
    """The latent classifier on the UNet's latents of the shape probe's held-out prompts."""
    start = time.time()
    combos = quality.held_out_prompts(128)
    latents = unet_latents(pipe, combos) / pipe.vae.config.scaling_factor
    model = fit(encode(pipe.vae, train.pixels), labels, args.steps, seed=0)
    wanted = torch.tensor([SHAPES.index(a.shape) for a in combos])
    with torch.no_grad():
        hits = (model(latents).argmax(1) == wanted).tolist()
    report = {
        size: share([h for h, a in zip(hits, combos, strict=True) if size in ("all", a.size)])
        for size in ("small", "large", "all")
    }
    print("generated latents", {k: (v["share"], v["ci95"]) for k, v in report.items()})
    report["seconds"] = round(time.time() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latent_probe_generated.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
