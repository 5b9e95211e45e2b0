"""A case's metrics: reconstruction (lpips, clip_i, denoise_loss, appearance) and editability
(clip_t, edit_success), from one batched sampling of the reconstruction and edit prompts.
Images are compared as the uint8 PNGs hold them. Distance metrics come from the stages.

Beside each aggregate, the readings it averages are kept per sample (`Evaluation.records`:
the sample seeds, per-sample LPIPS, CLIP-I and CLIP-T, the oracle's reading and hit), taken
from the same tensors, so two runs can be compared with their spread
(`ptibench compare`); the aggregates are computed exactly as without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ptibench.concept import Concept
from ptibench.evaluation.functional import (
    clip_i_pairs,
    clip_t_per_sample,
    denoise_loss,
    lpips_pairwise,
    mean_of_means,
    oracle_readings,
    share,
)
from ptibench.evaluation.sampling import generate, to_model_range
from ptibench.models.bundle import ModelBundle
from ptibench.models.metric_models import MetricModels
from ptibench.spec import EvalConfig

ORACLE_ATTRIBUTES = ("background", "colour", "position", "size", "shape")


@dataclass
class Evaluation:
    metrics: dict[str, float]
    prompts: list[str]
    images: np.ndarray  # [prompts, samples, H, W, 3] uint8; row 0 = reconstruction prompt
    records: dict[str, Any] = field(default_factory=dict)


def _floats(values: torch.Tensor) -> list[float]:
    return [float(v) for v in values.detach().cpu().double()]


def _reading(reading) -> dict[str, str | None]:
    return {name: getattr(reading, name) for name in ORACLE_ATTRIBUTES}


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
    lpips_matrix = lpips_pairwise(models, recon, ref)
    clip_matrix = clip_i_pairs(models, recon, ref)
    metrics = {
        "lpips": float(lpips_matrix.mean()),
        "clip_i": float(clip_matrix.mean()),
        "denoise_loss": denoise_loss(bundle, unet, latents, embeds[:1], config.seed),
    }
    edit_scores = clip_t_per_sample(
        models,
        [to_model_range(images[i + 1]) for i in range(len(concept.edit_prompts))],
        [concept.with_class_noun(e.prompt) for e in concept.edit_prompts],
    )
    metrics["clip_t"] = mean_of_means(edit_scores)
    reconstruction: dict[str, Any] = {
        "prompt": prompts[0],
        "lpips": _floats(lpips_matrix.mean(1)),
        "clip_i": _floats(clip_matrix.mean(1)),
    }
    edits: list[dict[str, Any]] = [
        {"prompt": prompts[i + 1], "clip_t": _floats(scores)}
        for i, scores in enumerate(edit_scores)
    ]
    if oracle and concept.appearance:
        wanted = {k: v for k, v in concept.appearance.items() if k in ("shape", "colour")}
        readings = oracle_readings(images[0])
        hits = [reading.matches(wanted) for reading in readings]
        metrics["appearance"] = share(hits)
        reconstruction.update(appearance=hits, oracle=[_reading(r) for r in readings])
    expected = [(i, e.expect) for i, e in enumerate(concept.edit_prompts) if e.expect]
    if oracle and expected:
        shares = []
        for i, expect in expected:
            readings = oracle_readings(images[i + 1])
            hits = [reading.matches(expect) for reading in readings]
            shares.append(share(hits))
            edits[i].update(edit=hits, oracle=[_reading(r) for r in readings])
        metrics["edit_success"] = float(np.mean(shares))
    records = {
        "seeds": [config.seed + j for j in range(config.samples_per_prompt)],
        "reconstruction": reconstruction,
        "edits": edits,
    }
    return Evaluation(metrics, prompts, images, records)
