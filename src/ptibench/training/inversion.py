"""Stage 1, textual inversion: learn one embedding vector for the placeholder.

Only that vector is a parameter: it is spliced into the frozen text encoder's token embeddings
(ModelBundle.encode_ids), so there are no gradients or optimizer state for the other 49k rows
and nothing to restore. The VAE latents are encoded once (TrainingData). The caption of each
sample is encoded once per step per distinct template, not once per sample.

No augmentation: the obvious one, a horizontal flip, swaps left and right, and the tiny world's
images carry their position as an attribute (an image "at the left" flipped is "at the right"),
so flips would teach the token a position distribution the concept does not have.
"""

from __future__ import annotations

import torch

from ptibench.models.diffusion import diffusion_loss
from ptibench.training.compiling import training_unet
from ptibench.training.loop import (
    BatchStream,
    StageContext,
    TrainOutcome,
    exploded,
    explosion_limit,
    progress_bar,
    show_loss,
    take_step,
)


def distance_metrics(vector: torch.Tensor, initial: torch.Tensor) -> dict[str, float]:
    """||e - e0|| and the cosine of e to e0 (the inversion stage's distance travelled)."""
    vector, initial = vector.detach().double().flatten(), initial.detach().double().flatten()
    cosine = torch.nn.functional.cosine_similarity(vector, initial, dim=0)
    return {"distance": float((vector - initial).norm()), "cosine_to_init": float(cosine)}


def train(ctx: StageContext, method) -> TrainOutcome:
    bundle, spec, data = ctx.bundle, ctx.spec, ctx.data
    initial = bundle.word_embedding(ctx.concept.initializer).to(bundle.device)
    vector = torch.nn.Parameter(initial.clone())
    optimizer = method.optimizer("inversion", [vector], spec.lr)
    stream = BatchStream(
        data, spec.batch_size, spec.seed, bundle.train_scheduler.config.num_train_timesteps
    )
    limit = explosion_limit(initial)
    outcome = TrainOutcome(status="ok", vector=initial, initial=initial, losses=[])
    unet = training_unet(bundle, bundle.unet)
    bar = progress_bar(spec.steps, f"inversion {spec.lr_id}", ctx.progress)
    for step in bar:
        batch = stream.next()
        used, which = torch.unique(batch.templates, return_inverse=True)
        hidden = bundle.encode_ids(data.ids[used], data.mask[used], vector)[which]
        latents = data.latents[batch.images]
        loss = diffusion_loss(
            bundle, unet, latents, batch.noise.to(latents.device), batch.timesteps, hidden
        )
        extra = method.regulariser("inversion", vector=vector, initial=initial)
        if not take_step(loss, extra, optimizer, outcome, step):
            break
        if exploded(vector, limit):
            outcome.mark_diverged(step)
            break
        if ctx.due(step):
            with torch.no_grad():
                metrics = ctx.checkpoint(step, vector.detach().clone(), None)
            outcome.curves.append({"step": step, "loss": outcome.losses[-1], **metrics})
        show_loss(bar, outcome, step)
    bar.close()
    outcome.vector = vector.detach().clone()
    if outcome.status == "ok":
        outcome.metrics = distance_metrics(outcome.vector, initial)
    return outcome
