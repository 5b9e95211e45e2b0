"""Probe: does an absolute position signal in the latent let the tiny world follow position words?

The UNet shipped before commit 41dcb7e ignored position words
(docs/results/2026-11-29-position.md). A convolutional UNet has no absolute position signal but
its zero padding; this probe gives it one through the data: two
extra latent channels that always hold a horizontal and a vertical ramp. The ramps are part of
every training latent, so the model learns to denoise them too; during sampling they become
clean early and tell every cell where it is. The image is decoded from the first four channels
with the shipped VAE. Trained from scratch like the shipped text-to-image part (same data,
captions, object weighting, CFG dropout), only shorter.

    python docs/results/position/coordinate_probe.py --steps 1500 --out docs/results/position

Not part of the shipped world: the StableDiffusionPipeline format cannot carry extra latent
channels unless the VAE produces them, so shipping this means retraining the VAE too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel

from ptibench.assets import tiny_world_path
from ptibench.world import components
from ptibench.world.dataset import foreground_alpha, render_set
from ptibench.world.quality import (
    GUIDANCE,
    SAMPLE_STEPS,
    full_prompt,
    held_out_prompts,
    score_images,
)
from ptibench.world.recipe import cosine_lr
from ptibench.world.train_t2i import (
    CaptionTokens,
    ImageBatches,
    latent_loss_weights,
    text_to_image_loss,
)

LATENT = 4


def ramps(n: int, size: int) -> torch.Tensor:
    """(n, 2, size, size): x and y from -sqrt(3) to sqrt(3) (unit variance, like the latents)."""
    axis = torch.linspace(-(3**0.5), 3**0.5, size)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"))
    return grid.expand(n, -1, -1, -1)


def build_unet() -> UNet2DConditionModel:
    config = dict(components.build_unet().config)
    config.update(in_channels=LATENT + 2, out_channels=LATENT + 2)
    return UNet2DConditionModel.from_config(config)


@torch.no_grad()
def sample(unet, text_encoder, tokens, vae, prompts: list[str], seed: int) -> np.ndarray:
    scheduler = DPMSolverMultistepScheduler(**components.SCHEDULER_CONFIG, final_sigmas_type="zero")
    scheduler.set_timesteps(SAMPLE_STEPS)
    cond = text_encoder(tokens(prompts))[0]
    uncond = text_encoder(tokens([""] * len(prompts)))[0]
    size = unet.config.sample_size
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    x = torch.stack([torch.randn(LATENT + 2, size, size, generator=g) for g in gens])
    for t in scheduler.timesteps:
        both = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        u, c = both.chunk(2)
        x = scheduler.step(u + GUIDANCE * (c - u), t, x).prev_sample
    images = vae.decode(x[:, :LATENT] / vae.config.scaling_factor).sample
    return ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("docs/results/position"))
    args = parser.parse_args()
    world = tiny_world_path()
    torch.manual_seed(1)
    vae = AutoencoderKL.from_pretrained(world / "pipeline" / "vae", torch_dtype=torch.float32)
    data = render_set(10000, 0)
    with torch.no_grad():
        latents = torch.cat([vae.encode(c).latent_dist.mean for c in data.pixels.split(500)])
        latents = latents * vae.config.scaling_factor
    latents = torch.cat([latents, ramps(len(latents), latents.shape[-1])], dim=1)
    weights = latent_loss_weights(foreground_alpha(data), 10.0)
    tokens = CaptionTokens(components.build_tokenizer(Path(tempfile.mkdtemp())))
    text_encoder, unet = components.build_text_encoder(), build_unet()
    scheduler = components.build_train_scheduler()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(2)
    gen = torch.Generator().manual_seed(3)
    batches = ImageBatches(tokens, scheduler, data, latents, weights, args.batch, rng, gen)
    start, losses = time.time(), []
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * cosine_lr(step, args.steps)
        loss = text_to_image_loss(unet, text_encoder, batches)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            print(
                step + 1,
                round(float(np.mean(losses[-100:])), 4),
                round(time.time() - start),
                flush=True,
            )
    unet.eval()
    text_encoder.eval()
    combos = held_out_prompts(args.prompts)
    prompts = [full_prompt(a) for a in combos]
    images = sample(unet, text_encoder, tokens, vae, prompts, seed=0)
    score = asdict(score_images(images, combos))
    record = {
        "steps": args.steps,
        "batch": args.batch,
        "seconds": round(time.time() - start, 1),
        "loss_last_100": float(np.mean(losses[-100:])),
        "prompts": len(prompts),
        "prompt_following": score,
    }
    print(json.dumps(record, indent=2))
    (args.out / "coordinate_probe.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
