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
from tqdm.auto import tqdm

from ptibench.concept import Concept
from ptibench.models.bundle import ModelBundle
from ptibench.spec import CaseSpec

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

    def mark_diverged(self, step: int) -> None:
        self.status, self.diverged_at = "diverged", step

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


def progress_bar(steps: int, desc: str, show: bool) -> tqdm:
    """Steps 1..steps, with a bar only when the caller asked for progress."""
    return tqdm(range(1, steps + 1), desc=desc, disable=not show, mininterval=1.0, leave=False)


def explosion_limit(initial: torch.Tensor) -> float:
    """The norm past which a trained vector that started at `initial` has diverged."""
    return EXPLOSION_FACTOR * max(float(initial.norm()), 1e-6)


@torch.no_grad()
def exploded(vector: torch.Tensor, limit: float) -> bool:
    """The divergence guard on a trained vector: non-finite, or its norm past `limit`."""
    return not is_finite(vector) or float(vector.norm()) > limit


def sound_total(loss, extra, outcome: TrainOutcome, step: int):
    """(loss plus the method's regulariser `extra`, the loss's value), or None when either is
    not finite: the outcome is then marked diverged at `step`, before any update. One rule for
    the single-case loop and the batched runs."""
    value = loss.detach().item()
    total = loss if extra is None else loss + extra
    if not is_finite(value) or not is_finite(total):
        outcome.mark_diverged(step)
        return None
    return total, value


def take_step(loss, extra, optimizer, outcome: TrainOutcome, step: int) -> bool:
    """One optimizer step on `loss` plus the method's regulariser `extra`, the loss recorded.
    A non-finite loss marks the outcome diverged at `step` before any update; returns False."""
    sound = sound_total(loss, extra, outcome, step)
    if sound is None:
        return False
    total, value = sound
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    outcome.losses.append(value)
    return True


def show_loss(bar: tqdm, outcome: TrainOutcome, step: int) -> None:
    if step % 50 == 0:
        bar.set_postfix(loss=f"{sum(outcome.losses[-50:]) / 50:.4f}", refresh=False)
