"""Probe: are small shapes still in the tiny world's latents, and only lost by its decoder?

The shipped VAE's encoder is frozen and its decoder fine-tuned on rendered training images
(the VAE recipe's loss, MSE + L1, plus the same pair weighted to the object's pixels, which a
small object's few pixels otherwise barely move). If the oracle then reads small shapes from the
round trip far better than from the shipped decoder, the shape is in the latent and a decoder
could draw it; if not, the encoder (16x16x4) has dropped it. Read on the shape probe's held-out
renderings (`shape_probe.py`), by size, 95% Wilson intervals.

    python docs/results/shape/decoder_probe.py --steps 1500 --out docs/results/shape
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch
from shape_probe import by_size, held_out_renderings, open_probe, vae_roundtrip

from ptibench.world import oracle
from ptibench.world.dataset import foreground_alpha, render_set
from ptibench.world.recipe import cosine_lr


def fine_tune_decoder(
    vae,
    steps: int,
    batch: int,
    lr: float,
    object_weight: float,
    seed: int,
    sample_posterior: bool = False,
):
    """Train `vae`'s decoder on its frozen encoder's latents of the rendered training images
    (posterior means, or samples with `sample_posterior`). Returns the last 100 steps' loss."""
    data = render_set(10000, seed)
    alpha = foreground_alpha(data)
    pixels = data.pixels
    with torch.no_grad():
        posteriors = [vae.encode(c).latent_dist for c in pixels.split(500)]
    means = torch.cat([p.mean for p in posteriors])
    stds = torch.cat([p.std for p in posteriors])
    for p in vae.encoder.parameters():
        p.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * cosine_lr(step, steps, warmup=50, floor=0.05)
        idx = torch.randint(0, len(pixels), (batch,), generator=gen)
        target, weight = pixels[idx], 1.0 + object_weight * alpha[idx]
        latents = means[idx]
        if sample_posterior:
            latents = latents + stds[idx] * torch.randn(latents.shape, generator=gen)
        recon = vae.decode(latents).sample
        error = (recon - target) ** 2 + (recon - target).abs()
        loss = (error * weight).mean() / weight.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses[-100:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--object-weight", type=float, default=10.0)
    parser.add_argument("--n", type=int, default=128)
    start = time.time()
    args, pipe = open_probe(parser)
    combos, rendered = held_out_renderings(args.n)
    shipped = [oracle.read(img) for img in vae_roundtrip(pipe, rendered)]
    tuned = copy.deepcopy(pipe.vae)
    loss = fine_tune_decoder(tuned, args.steps, args.batch, args.lr, args.object_weight, seed=0)
    pipe.vae = tuned.eval()
    after = [oracle.read(img) for img in vae_roundtrip(pipe, rendered)]
    report = {
        "shipped_decoder": by_size(combos, shipped),
        "tuned_decoder": by_size(combos, after),
        "loss_last_100": loss,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "object_weight": args.object_weight,
        "seconds": round(time.time() - start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoder_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    for name in ("shipped_decoder", "tuned_decoder"):
        print(name, {k: (v["share"], v["ci95"]) for k, v in report[name].items()})


if __name__ == "__main__":
    main()
