"""The tiny world's VAE (32x32x3 <-> 16x16x4), trained on rendered images."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ptibench.world.recipe import TrainConfig, cosine_lr, merge_manifest

from . import components
from .dataset import render_set


def train_vae(out: Path, config: TrainConfig) -> dict:
    """Train the 32x32x3 <-> 16x16x4 autoencoder and set its latent scaling factor."""
    torch.manual_seed(config.seed)
    data = render_set(config.images, config.seed).pixels
    vae = components.build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(config.seed)
    start = time.time()
    for step in tqdm(range(config.vae_steps), desc="vae", mininterval=10):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * cosine_lr(step, config.vae_steps, floor=0.05)
        batch = data[torch.randint(0, len(data), (config.vae_batch,), generator=gen)]
        posterior = vae.encode(batch).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(latents).sample
        kl = posterior.kl().mean() / latents[0].numel()
        # L1 keeps small objects' edges and holes sharp where MSE alone blurs them.
        loss = F.mse_loss(recon, batch) + F.l1_loss(recon, batch) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        latents = torch.cat([vae.encode(c).latent_dist.mean for c in data[:2000].split(250)])
        recon_mse = F.mse_loss(vae.decode(latents[:500]).sample, data[:500]).item()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    folder = out / "vae"
    vae.save_pretrained(folder)
    record = {
        "steps": config.vae_steps,
        "seconds": round(time.time() - start, 1),
        "final_loss": float(loss),
        "recon_mse": recon_mse,
        "scaling_factor": vae.config.scaling_factor,
    }
    merge_manifest(out, "vae", record)
    return record
