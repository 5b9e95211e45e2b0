"""What every training stage shares: the cached training data, the deterministic batch stream,
the diffusion loss, the divergence guard and the outcome record.

The batch stream (images, captions, timesteps, noise) comes from one torch.Generator seeded by
the spec's seed, so a stage is bitwise reproducible on CPU, and stage 1 and stage 2 of the same
seed see the same data in the same order. Evaluation never draws from this generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..backends import ModelBundle
from ..concept import Concept
from ..pipelines import autocast, unet_inputs
from ..spec import CaseSpec

EXPLOSION_FACTOR = 1e4
"""A trained tensor whose norm grows past this multiple of its starting norm has diverged."""

FINAL_LOSS_WINDOW = 50


@dataclass
class TrainingData:
    """Everything about the concept that training reads and that never changes: the VAE latents
    (encoded once) and the caption templates' token ids and placeholder masks."""

    latents: torch.Tensor
    prompts: tuple[str, ...]
    ids: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def build(cls, bundle: ModelBundle, concept: Concept, pixels) -> TrainingData:
        templates = concept.templates or bundle.config.templates
        prompts = tuple(concept.with_placeholder(t) for t in templates)
        ids, mask = bundle.prompt_ids(list(prompts), concept.placeholder)
        return cls(bundle.encode_images(pixels), prompts, ids, mask)


@dataclass
class Batch:
    images: torch.Tensor
    templates: torch.Tensor
    timesteps: torch.Tensor
    noise: torch.Tensor


class BatchStream:
    """Draws (image, caption, timestep, noise) batches from a generator seeded by the spec."""

    def __init__(self, data: TrainingData, batch_size: int, seed: int, num_timesteps: int):
        self.data = data
        self.batch_size = batch_size
        self.num_timesteps = num_timesteps
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> Batch:
        n, b, gen = len(self.data.latents), self.batch_size, self.generator
        images = torch.randint(0, n, (b,), generator=gen)
        templates = torch.randint(0, len(self.data.prompts), (b,), generator=gen)
        timesteps = torch.randint(0, self.num_timesteps, (b,), generator=gen)
        noise = torch.randn((b, *self.data.latents.shape[1:]), generator=gen)
        return Batch(images, templates, timesteps, noise)


def diffusion_loss(
    bundle: ModelBundle,
    unet,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    hidden: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """The noise-prediction loss of the world's parameterisation (v, epsilon or sample).

    Computed from alphas_cumprod directly rather than through the scheduler, whose add_noise
    caches tensors on itself: this stays a pure function of its inputs.
    """
    config = bundle.train_scheduler.config
    device = latents.device
    alphas = bundle.train_scheduler.alphas_cumprod.to(device)[timesteps.to(device)]
    alphas = alphas.float().view(-1, *([1] * (latents.dim() - 1)))
    signal, sigma = alphas.sqrt(), (1 - alphas).sqrt()
    noisy = signal * latents + sigma * noise
    if config.prediction_type == "v_prediction":
        target = signal * noise - sigma * latents
    elif config.prediction_type == "epsilon":
        target = noise
    else:
        target = latents
    states, extra = unet_inputs(bundle, hidden)
    with autocast(bundle.device, bundle.dtype):
        pred = unet(
            noisy.to(bundle.dtype), timesteps.to(device), encoder_hidden_states=states, **extra
        ).sample
    if reduction == "none":
        return F.mse_loss(pred.float(), target, reduction="none").flatten(1).mean(1)
    return F.mse_loss(pred.float(), target)


def is_finite(value: float | torch.Tensor) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return math.isfinite(value)


@dataclass
class TrainOutcome:
    """What a stage produced. `vector` is the placeholder embedding the case evaluates with
    (learned in stage 1, the frozen pivot in stage 2); `unet` is None when the shared UNet is
    untouched, else the trained copy (`lora` says whether it carries a peft adapter)."""

    status: str
    vector: torch.Tensor
    initial: torch.Tensor
    losses: list[float]
    unet: Any = None
    lora: bool = False
    diverged_at: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        tail = self.losses[-FINAL_LOSS_WINDOW:]
        return float(sum(tail) / len(tail)) if tail else None


Checkpoint = Callable[[int, torch.Tensor, Any], dict[str, float]]
"""Called as checkpoint(step, vector, unet) every spec.eval_every steps; returns metrics."""


@dataclass
class StageContext:
    """The inputs of one stage run."""

    spec: CaseSpec
    concept: Concept
    bundle: ModelBundle
    data: TrainingData
    progress: bool = False
    checkpoint: Checkpoint | None = None
    pivot: torch.Tensor | None = None

    def due(self, step: int) -> bool:
        every = self.spec.eval_every
        return bool(self.checkpoint and every and step % every == 0 and step < self.spec.steps)


def progress_bar(ctx: StageContext, stage: str) -> tqdm:
    """Steps 1..spec.steps, with a bar only when the caller asked for progress."""
    return tqdm(
        range(1, ctx.spec.steps + 1),
        desc=f"{stage} {ctx.spec.lr_id}",
        disable=not ctx.progress,
        mininterval=1.0,
        leave=False,
    )


def take_step(loss, extra, optimizer, outcome: TrainOutcome, step: int) -> bool:
    """One optimizer step on `loss` plus the method's regulariser `extra`, the loss recorded.
    A non-finite loss marks the outcome diverged at `step` before any update; returns False."""
    value = loss.detach().item()
    total = loss if extra is None else loss + extra
    if not is_finite(value) or not is_finite(total):
        outcome.status, outcome.diverged_at = "diverged", step
        return False
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    outcome.losses.append(value)
    return True


def show_loss(bar: tqdm, outcome: TrainOutcome, step: int) -> None:
    if step % 50 == 0:
        bar.set_postfix(loss=f"{sum(outcome.losses[-50:]) / 50:.4f}", refresh=False)
