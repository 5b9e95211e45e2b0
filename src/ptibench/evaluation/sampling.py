"""Sampling for the metrics: every prompt of a case in as few pipeline calls as possible.

Prompt embeddings are computed once per case (with the learned vector spliced in) and passed to
the pipeline as prompt_embeds; the unconditional embedding is computed once per process. Sample
j of every prompt starts from the noise of seed `eval.seed + j` (one generator per image), so
all prompts and all cases share their starting noise, and a prompt sampled more often (the
reconstruction prompt) adds samples after the same first ones: differences between cases come
from the models, not from the draw. The scheduler is the pipeline's own (DPM-Solver multistep).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ptibench.models.bundle import ModelBundle, pipe_inputs, sampling_autocast
from ptibench.spec import EvalConfig


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[0, 1] NCHW float -> NHWC uint8 (what a PNG holds; metrics are computed from this)."""
    array = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def generate(
    bundle: ModelBundle,
    prompt_embeds: torch.Tensor,
    config: EvalConfig,
    *,
    unet=None,
    progress: bool = False,
) -> np.ndarray:
    """Images for each prompt embedding: uint8 array [P, samples_per_prompt, H, W, 3]."""
    counts = [config.samples_per_prompt] * len(prompt_embeds)
    return np.stack(
        generate_rows(bundle, prompt_embeds, counts, config, unet=unet, progress=progress)
    )


@torch.no_grad()
def generate_rows(
    bundle: ModelBundle,
    prompt_embeds: torch.Tensor,
    counts: list[int],
    config: EvalConfig,
    *,
    unet=None,
    progress: bool = False,
    labels: list[int] | None = None,
    route: Callable[[list[int]], None] | None = None,
) -> list[np.ndarray]:
    """counts[i] images of prompt embedding i, as uint8 arrays [counts[i], H, W, 3]. Sample j of
    every prompt starts from the noise of seed `config.seed + j`, whatever the other counts.
    With `route`, each batch's samples' labels (labels[i] for prompt embedding i) are handed to
    it before the batch is sampled (a routed UNet picks each sample's adapter by them)."""
    embeds = torch.cat(
        [e.unsqueeze(0).expand(n, *e.shape) for e, n in zip(prompt_embeds, counts, strict=True)]
    )
    seeds = [config.seed + j for n in counts for j in range(n)]
    sample_labels: list[int] = []
    if route is not None:
        if labels is None or len(labels) != len(counts):
            raise ValueError("routed sampling needs one label per prompt embedding")
        sample_labels = [label for label, n in zip(labels, counts, strict=True) for _ in range(n)]
    uncond = bundle.unconditional()
    pipe = bundle.sampling_pipeline(unet)
    pipe.set_progress_bar_config(disable=True)
    chunk = max(1, bundle.config.sample_batch)
    device = bundle.device
    out = []
    starts = range(0, len(embeds), chunk)
    for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress, leave=False):
        cond = embeds[start : start + chunk]
        generators = [torch.Generator(device).manual_seed(s) for s in seeds[start : start + chunk]]
        if route is not None:
            route(sample_labels[start : start + chunk])
        with sampling_autocast(device, bundle.dtype):
            result = pipe(
                **pipe_inputs(bundle, cond, uncond.expand(len(cond), -1, -1)),
                num_inference_steps=config.sample_steps,
                guidance_scale=config.guidance_scale,
                generator=generators,
                height=bundle.resolution,
                width=bundle.resolution,
                output_type="pt",
            )
        out.append(to_uint8(result.images))
    images = np.concatenate(out)
    bounds = np.cumsum([0, *counts])
    return [images[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@torch.no_grad()
def generate_cases(
    bundle: ModelBundle,
    case_embeds: list[torch.Tensor],
    counts: list[int],
    config: EvalConfig,
    *,
    unet=None,
    route: Callable[[list[int]], None] | None = None,
    progress: bool = False,
) -> list[list[np.ndarray]]:
    """Several cases' rows (generate_rows with the same `counts` for each case's prompt
    embeddings) sampled in shared batches: sample j of every prompt of every case keeps the
    seed `config.seed + j`, so each case gets the images it gets sampled alone, up to the
    rounding of a different batch. `route` gets the case index of each batch's samples (a
    routed UNet holding one adapter per case)."""
    labels = [case for case in range(len(case_embeds)) for _ in counts]
    rows = generate_rows(
        bundle,
        torch.cat(list(case_embeds)),
        list(counts) * len(case_embeds),
        config,
        unet=unet,
        progress=progress,
        labels=labels,
        route=route,
    )
    per_case = len(counts)
    return [rows[k * per_case : (k + 1) * per_case] for k in range(len(case_embeds))]
