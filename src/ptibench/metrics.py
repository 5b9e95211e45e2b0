"""The metrics of a case: reconstruction (lpips, clip_i, denoise_loss, appearance) and
editability (clip_t, edit_success). Distance metrics come from the stages.

The pairwise functions take tensors in [-1, 1] NCHW, so they can be checked on hand-made
inputs; `evaluate` runs them on a case's samples. Images are compared as the uint8 PNGs hold
them. CLIP-T replaces the placeholder by the class noun (not removed), as DreamBench does.
"""

from __future__ import annotations

from dataclasses import dataclass

import lpips as lpips_lib
import numpy as np
import torch
import torch.nn.functional as F

from .backends import MetricModels, ModelBundle
from .concept import Concept
from .sampling import generate, to_model_range
from .spec import EvalConfig
from .stages import diffusion_loss

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


def clip_i(models: MetricModels, generated: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine of CLIP image embeddings over all (generated, reference) pairs."""
    a, b = clip_image_features(models, generated), clip_image_features(models, reference)
    return float((a @ b.T).mean())


def clip_t(models: MetricModels, images_per_prompt: list[torch.Tensor], texts: list[str]) -> float:
    """Mean over prompts of the mean cosine between that prompt's images and its text."""
    text = clip_text_features(models, texts)
    scores = [
        float((clip_image_features(models, images) @ text[i]).mean())
        for i, images in enumerate(images_per_prompt)
    ]
    return float(np.mean(scores))


def oracle_share(images: np.ndarray, wanted: dict[str, str]) -> float:
    """Share of uint8 images [N, H, W, 3] in which the oracle reads every wanted attribute."""
    from .world import oracle

    return float(np.mean([oracle.read(image).matches(wanted) for image in images]))


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


@dataclass
class Evaluation:
    metrics: dict[str, float]
    prompts: list[str]
    images: np.ndarray  # [prompts, samples, H, W, 3] uint8; row 0 = reconstruction prompt


@torch.no_grad()
def evaluate(
    bundle: ModelBundle,
    models: MetricModels,
    concept: Concept,
    reference: np.ndarray,
    latents: torch.Tensor,
    vector: torch.Tensor,
    config: EvalConfig,
    *,
    unet=None,
    oracle: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Sample the reconstruction prompt and every edit prompt in one batch, then measure."""
    unet = unet if unet is not None else bundle.unet
    templates = [concept.reconstruction_prompt] + [e.prompt for e in concept.edit_prompts]
    prompts = [concept.with_placeholder(t) for t in templates]
    embeds = bundle.encode(prompts, concept.placeholder, vector)
    images = generate(bundle, embeds, config, unet=unet, progress=progress)
    recon = to_model_range(images[0])
    ref = to_model_range(reference)
    metrics = {
        "lpips": float(lpips_pairwise(models, recon, ref).mean()),
        "clip_i": clip_i(models, recon, ref),
        "denoise_loss": denoise_loss(bundle, unet, latents, embeds[:1], config.seed),
        "clip_t": clip_t(
            models,
            [to_model_range(images[i + 1]) for i in range(len(concept.edit_prompts))],
            [concept.with_class_noun(e.prompt) for e in concept.edit_prompts],
        ),
    }
    if oracle and concept.appearance:
        wanted = {k: v for k, v in concept.appearance.items() if k in ("shape", "colour")}
        metrics["appearance"] = oracle_share(images[0], wanted)
    edits = [(i, e.expect) for i, e in enumerate(concept.edit_prompts) if e.expect]
    if oracle and edits:
        shares = [oracle_share(images[i + 1], expect) for i, expect in edits]
        metrics["edit_success"] = float(np.mean(shares))
    return Evaluation(metrics, prompts, images)
