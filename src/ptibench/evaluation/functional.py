"""The metric functions, pure over their inputs: LPIPS, CLIP-I, CLIP-T, oracle shares and the
denoising loss.

The pairwise functions take tensors in [-1, 1] NCHW, so they can be checked on hand-made inputs.
CLIP-T replaces the placeholder by the class noun (not removed), as DreamBench does.
"""

from __future__ import annotations

import lpips as lpips_lib
import numpy as np
import torch
import torch.nn.functional as F

from ptibench.models.bundle import ModelBundle
from ptibench.models.diffusion import diffusion_loss
from ptibench.models.metric_models import MetricModels
from ptibench.world import oracle

DENOISE_TIMESTEPS = 10


@torch.no_grad()
def lpips_features(models: MetricModels, images: torch.Tensor) -> list[torch.Tensor]:
    """Unit-normalised backbone features per layer (what LPIPS compares), computed once."""
    net = models.lpips
    x = net.scaling_layer(models.lpips_input(images))
    return [lpips_lib.normalize_tensor(f) for f in net.net(x)]


@torch.no_grad()
def lpips_pairwise(models: MetricModels, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS of every pair (a_i, b_j): [len(a), len(b)]; features of each image computed once.

    Equals `models.lpips(a_i, b_j)` (with or without learned linear heads)."""
    fa, fb = lpips_features(models, a), lpips_features(models, b)
    net = models.lpips
    total = torch.zeros(len(a), len(b), device=models.device)
    for layer, (x, y) in enumerate(zip(fa, fb, strict=True)):
        weight = net.lins[layer].model[-1].weight.view(1, -1, 1, 1) if net.lpips else None
        for i in range(len(x)):
            diff = (x[i : i + 1] - y) ** 2
            if weight is not None:
                diff = diff * weight
            total[i] += diff.sum(1).mean((1, 2))
    return total


@torch.no_grad()
def clip_image_features(models: MetricModels, images: torch.Tensor) -> torch.Tensor:
    return F.normalize(models.clip.encode_image(models.clip_input(images)).float(), dim=-1)


@torch.no_grad()
def clip_text_features(models: MetricModels, texts: list[str]) -> torch.Tensor:
    tokens = models.clip_tokenizer(texts).to(models.device)
    return F.normalize(models.clip.encode_text(tokens).float(), dim=-1)


def clip_i_pairs(
    models: MetricModels, generated: torch.Tensor, reference: torch.Tensor
) -> torch.Tensor:
    """CLIP image-embedding cosine of every (generated, reference) pair: [len(a), len(b)]."""
    a, b = clip_image_features(models, generated), clip_image_features(models, reference)
    return a @ b.T


def clip_i(models: MetricModels, generated: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine of CLIP image embeddings over all (generated, reference) pairs."""
    return float(clip_i_pairs(models, generated, reference).mean())


def clip_t_per_sample(
    models: MetricModels, images_per_prompt: list[torch.Tensor], texts: list[str]
) -> list[torch.Tensor]:
    """Per prompt, the cosine between each of its images and its text: [len(images)] each."""
    text = clip_text_features(models, texts)
    return [
        clip_image_features(models, images) @ text[i] for i, images in enumerate(images_per_prompt)
    ]


def mean_of_means(per_prompt: list[torch.Tensor]) -> float:
    """Mean over prompts of each prompt's mean (how clip_t aggregates its per-sample cosines)."""
    return float(np.mean([float(scores.mean()) for scores in per_prompt]))


def clip_t(models: MetricModels, images_per_prompt: list[torch.Tensor], texts: list[str]) -> float:
    """Mean over prompts of the mean cosine between that prompt's images and its text."""
    return mean_of_means(clip_t_per_sample(models, images_per_prompt, texts))


def oracle_readings(images: np.ndarray) -> list[oracle.Reading]:
    """The oracle's reading of each uint8 image [N, H, W, 3]."""
    return [oracle.read(image) for image in images]


def share(hits: list[bool]) -> float:
    return float(np.mean(hits))


def oracle_share(images: np.ndarray, wanted: dict[str, str]) -> float:
    """Share of uint8 images [N, H, W, 3] in which the oracle reads every wanted attribute."""
    return share([reading.matches(wanted) for reading in oracle_readings(images)])


@torch.no_grad()
def denoise_loss(
    bundle: ModelBundle, unet, latents: torch.Tensor, hidden: torch.Tensor, seed: int
) -> float:
    """Noise-prediction loss on the concept's latents at DENOISE_TIMESTEPS evenly spaced
    timesteps (bin centres), with noise fixed by `seed`: deterministic, no sampling."""
    steps = bundle.train_scheduler.config.num_train_timesteps
    grid = ((torch.arange(DENOISE_TIMESTEPS) + 0.5) * steps / DENOISE_TIMESTEPS).long()
    n = len(latents)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((DENOISE_TIMESTEPS * n, *latents.shape[1:]), generator=generator)
    x0 = latents.repeat(DENOISE_TIMESTEPS, 1, 1, 1)
    timesteps = grid.repeat_interleave(n)
    cond = hidden.expand(len(x0), -1, -1)
    losses = [
        diffusion_loss(bundle, unet, x, e.to(x.device), t, h, reduction="none")
        for x, e, t, h in zip(
            x0.split(64), noise.split(64), timesteps.split(64), cond.split(64), strict=True
        )
    ]
    return float(torch.cat(losses).mean())
