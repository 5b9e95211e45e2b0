"""A case's metrics: reconstruction (lpips, clip_i, denoise_loss, appearance) and editability
(clip_t, edit_success), from one batched sampling of the reconstruction and edit prompts.
Images are compared as the uint8 PNGs hold them. Distance metrics come from the stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ptibench.concept import Concept
from ptibench.evaluation.functional import (
    clip_i,
    clip_t,
    denoise_loss,
    lpips_pairwise,
    oracle_share,
)
from ptibench.evaluation.sampling import generate, to_model_range
from ptibench.models.bundle import ModelBundle
from ptibench.models.metric_models import MetricModels
from ptibench.spec import EvalConfig


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
