"""Stage 1 for a whole lr grid in one run: K placeholder vectors trained side by side.

The K cases of a batched run differ only in their lr and training seed. Each draws the batches,
noise and timesteps its own run would draw (one BatchStream per case, seeded by its spec's
seed). One step stacks the K sub-batches into one batch of K*B samples:
the text encoder runs once over every (case, template) row with that case's vector spliced in,
the UNet runs once over K*B samples, and the loss is the SUM of the K sub-batch means, so the
gradient reaching vector k is exactly the gradient its own run computes. Each vector has its own
optimizer (from the method's `optimizer` hook, with its own lr and Adam state) and its own
regulariser term. Nothing in the UNet or the text encoder mixes samples (GroupNorm and attention
are per sample, everything is in eval mode), so the batched run reproduces the K sequential runs
up to float rounding.

That rounding depends on the batch: which vectors share it, and in which order. A 1000-step run
amplifies last-bit differences into a different trajectory at lrs where training is chaotic, so
a case's numbers are reproducible exactly when its batch is. The grid runners therefore batch
one training seed's lrs at a time (`batch_group_key`): seed 0 of a `--seeds 3` recording is then
the same computation as seed 0 of a one-seed run of the same grid, and the main job reproduces
its stored baselines instead of drawing anew.

A vector that diverges stops at its step (recorded as in the sequential loop: a non-finite loss
before the update, or an exploding/non-finite vector after it) and leaves the batch; the others
continue.

`pretrain` is the cache-level entry: it trains the not-yet-cached inversion cases of a grid
batched (under one file lock per grid, so concurrent workers train it once) and leaves each
case's trained outcome in the cache (`<cache>/trained/<entry>/`), where `load_trained` finds it
and the runner evaluates and stores the case as if it had trained it itself.
"""

from __future__ import annotations

import os

import torch

from ptibench.models.diffusion import diffusion_loss
from ptibench.training.compiling import training_unet
from ptibench.training.inversion import distance_metrics
from ptibench.training.loop import (
    BatchStream,
    TrainingData,
    TrainOutcome,
    exploded,
    explosion_limit,
    progress_bar,
    sound_total,
)
from ptibench.training.methods import joins_group_run

BATCH_GRID_ENV = "PTIBENCH_BATCH_GRID"
"""Set to 0 to train every case on its own (the batched grid is the default: it measured
faster on CPU, see the README's performance section)."""


def grid_batching_enabled() -> bool:
    return os.environ.get(BATCH_GRID_ENV, "1").strip().lower() not in ("0", "false", "no", "")


def batchable(spec, method) -> bool:
    """Whether `spec` can be trained in a batched stage-1 grid (methods.joins_group_run)."""
    return joins_group_run(spec, method, "inversion")


def batch_group_key(spec) -> str:
    """The grid runners' batches: specs with the same key differ at most in lr; each training
    seed is a batch of its own (see the module docstring)."""
    return spec.with_(lr=0.0).key()


def _batch_shape_key(spec) -> str:
    return spec.with_(lr=0.0, seed=0).key()


def train_batched(bundle, concept, data: TrainingData, specs, method, *, progress=False):
    """Train stage 1 of every spec in `specs` (same everything but lr and seed) in one batched
    run.

    Returns one TrainOutcome per spec, in order, as `inversion.train` would return it."""
    if not specs:
        return []
    first = specs[0]
    if any(_batch_shape_key(s) != _batch_shape_key(first) for s in specs):
        raise ValueError("train_batched needs specs that differ only in lr and seed")
    initial = bundle.word_embedding(concept.initializer).to(bundle.device)
    run = _BatchedRun(bundle, data, specs, method, initial)
    bar = progress_bar(first.steps, f"inversion grid x{len(specs)}", progress)
    for step in bar:
        if not run.active:
            break
        run.step(step)
    bar.close()
    for vector, outcome in zip(run.vectors, run.outcomes, strict=True):
        outcome.vector = vector.detach().clone()
        if outcome.status == "ok":
            outcome.metrics = distance_metrics(outcome.vector, initial)
    return run.outcomes


class _BatchedRun:
    """The K vectors, their optimizers, batch streams and outcomes, and the ones still active."""

    def __init__(self, bundle, data: TrainingData, specs, method, initial: torch.Tensor):
        self.bundle, self.data, self.method, self.initial = bundle, data, method, initial
        self.size = specs[0].batch_size
        self.vectors = [torch.nn.Parameter(initial.clone()) for _ in specs]
        self.optimizers = [
            method.optimizer("inversion", [v], s.lr)
            for v, s in zip(self.vectors, specs, strict=True)
        ]
        timesteps = bundle.train_scheduler.config.num_train_timesteps
        self.streams = [BatchStream(data, self.size, s.seed, timesteps) for s in specs]
        self.limit = explosion_limit(initial)
        self.outcomes = [
            TrainOutcome(status="ok", vector=initial, initial=initial, losses=[]) for _ in specs
        ]
        self.active = list(range(len(specs)))
        self.unet = training_unet(bundle, bundle.unet)

    def losses(self) -> torch.Tensor:
        """Each active case's own mean loss on its own batch, from one stacked forward pass."""
        data, dim = self.data, self.initial.numel()
        ids, masks, rows, gather, latents, noise, timesteps = [], [], [], [], [], [], []
        offset = 0
        for k in self.active:
            batch = self.streams[k].next()
            used, which = torch.unique(batch.templates, return_inverse=True)
            ids.append(data.ids[used])
            masks.append(data.mask[used])
            rows.append(self.vectors[k].view(1, 1, dim).expand(len(used), 1, dim))
            gather.append(which + offset)
            offset += len(used)
            latents.append(data.latents[batch.images])
            noise.append(batch.noise)
            timesteps.append(batch.timesteps)
        hidden = self.bundle.encode_ids(torch.cat(ids), torch.cat(masks), torch.cat(rows))
        hidden = hidden[torch.cat(gather).to(hidden.device)]
        x0 = torch.cat(latents)
        noise_all = torch.cat(noise).to(x0.device)
        per_sample = diffusion_loss(
            self.bundle, self.unet, x0, noise_all, torch.cat(timesteps), hidden, reduction="none"
        )
        return per_sample.view(len(self.active), self.size).mean(1)

    def step(self, step: int) -> None:
        """One step of every active case; a case whose loss or vector is not sound stops here."""
        losses = self.losses()
        terms, live = [], []
        for row, k in enumerate(self.active):
            vector = self.vectors[k]
            extra = self.method.regulariser("inversion", vector=vector, initial=self.initial)
            sound = sound_total(losses[row], extra, self.outcomes[k], step)
            if sound is not None:
                terms.append(sound[0])
                live.append((k, sound[1]))
        if terms:
            for k, _ in live:
                self.optimizers[k].zero_grad(set_to_none=True)
            torch.stack(terms).sum().backward()
        still = []
        for k, value in live:
            self.optimizers[k].step()
            self.outcomes[k].losses.append(value)
            if exploded(self.vectors[k], self.limit):
                self.outcomes[k].mark_diverged(step)
                continue
            still.append(k)
        self.active = still
