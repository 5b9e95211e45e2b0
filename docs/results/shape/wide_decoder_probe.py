"""Probe: does a wider decoder on the shipped latents draw the shapes the shipped decoder loses,
in round trips and in generated images?

`latent_probe.py` reads small shapes from the shipped encoder's latents perfectly, so the loss
is downstream. Here a decoder twice as wide and one layer deeper than the shipped one (64
channels, three ResNet layers per up block) is trained from scratch on the shipped encoder's
latents (posterior samples of the rendered training images; the encoder frozen, the VAE recipe's
MSE + L1 plus the same pair weighted to the object's pixels). Read by the oracle, by size, 95%
Wilson intervals:
1. the round trip of the shape probe's held-out renderings through each decoder;
2. the shipped UNet's own latents for the 128 held-out prompts of `shape_probe.py` (training
   wording, its seeds), decoded by each decoder: what a new decoder alone would change in the
   world's generated images.

    python docs/results/shape/wide_decoder_probe.py --steps 2000 --out docs/results/shape

`--world DIR` reads another world's UNet latents (the decoder is trained on the shipped VAE's
encoder either way: the worlds share it).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from decoder_probe import fine_tune_decoder
from diffusers import AutoencoderKL
from shape_probe import by_size, held_out_renderings, open_probe, vae_roundtrip

from ptibench.world import oracle, quality


def wide_vae(shipped: AutoencoderKL, width: int, layers: int) -> AutoencoderKL:
    """An AutoencoderKL whose decoder is `width` channels and `layers` + 1 ResNet layers per up
    block, carrying the shipped encoder, quantisation and scaling factor."""
    config = dict(shipped.config)
    config.update(block_out_channels=(width, width), layers_per_block=layers)
    vae = AutoencoderKL.from_config(config)
    vae.encoder, vae.quant_conv = shipped.encoder, shipped.quant_conv
    return vae


def unet_latents(pipe, combos) -> torch.Tensor:
    """The pipeline's final latents for each combination's training-wording prompt (the shape
    probe's prompts and generator seeds)."""
    with torch.no_grad():
        return quality.sample(pipe, [quality.full_prompt(a) for a in combos], output_type="latent")


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> np.ndarray:
    images = vae.decode(latents / vae.config.scaling_factor).sample
    return ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n", type=int, default=128)
    start = time.time()
    args, pipe = open_probe(parser)
    shipped = pipe.vae
    combos, rendered = held_out_renderings(args.n)
    latents = unet_latents(pipe, combos)
    wide = wide_vae(shipped, args.width, args.layers)
    loss = fine_tune_decoder(
        wide, args.steps, 32, args.lr, object_weight=10.0, seed=0, sample_posterior=True
    )
    wide.eval()
    report = {
        "roundtrip": {
            "shipped": by_size(combos, [oracle.read(i) for i in vae_roundtrip(pipe, rendered)]),
        },
        "generated": {
            "shipped": by_size(combos, [oracle.read(i) for i in decode(shipped, latents)]),
            "wide": by_size(combos, [oracle.read(i) for i in decode(wide, latents)]),
        },
    }
    pipe.vae = wide
    report["roundtrip"]["wide"] = by_size(
        combos, [oracle.read(i) for i in vae_roundtrip(pipe, rendered)]
    )
    report.update(
        loss_last_100=loss,
        steps=args.steps,
        width=args.width,
        layers=args.layers,
        lr=args.lr,
        decoder_parameters={
            "shipped": sum(p.numel() for p in shipped.decoder.parameters()),
            "wide": sum(p.numel() for p in wide.decoder.parameters()),
        },
        seconds=round(time.time() - start, 1),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wide_decoder_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    for kind in ("roundtrip", "generated"):
        for name, row in report[kind].items():
            print(kind, name, {k: (v["share"], v["ci95"]) for k, v in row.items()})


if __name__ == "__main__":
    main()
