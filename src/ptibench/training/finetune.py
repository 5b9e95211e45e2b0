"""Stage 2, pivotal tuning: freeze the stage-1 embedding (the pivot) and tune the UNet around it,
either a LoRA on its attention projections ("finetune") or every weight ("finetune-full").

The pivot is the stage-1 embedding of the same world, concept, method, seed, batch and steps
at `spec.pivot_lr` (DEFAULT_PIVOT_LR when unset). It is trained once per cache and shared by
every stage-2 case: a file lock makes concurrent workers wait for the first one, and the file is
written atomically, so none trains it twice or reads it half-written.

The text embedding is frozen here, so the captions are encoded once, not per step.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ptibench.errors import PtibenchError
from ptibench.io import file_lock
from ptibench.models.artifacts import load_embedding, save_embedding
from ptibench.models.diffusion import diffusion_loss
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.compiling import training_unet
from ptibench.training.loop import (
    EXPLOSION_FACTOR,
    BatchStream,
    StageContext,
    TrainOutcome,
    is_finite,
    progress_bar,
    show_loss,
    take_step,
)

DEFAULT_PIVOT_LR = 5e-3
"""Stage-1 lr of the pivot when the spec gives none (until the plugin supplies the knee of the
stored inversion baseline). See the README for how it was chosen on the tiny world."""


def pivot_spec(spec: CaseSpec) -> CaseSpec:
    """The stage-1 case whose embedding is the pivot; only training fields matter, so the
    evaluation settings are normalised away and every stage-2 case of a grid shares one pivot."""
    lr = spec.pivot_lr if spec.pivot_lr is not None else DEFAULT_PIVOT_LR
    return spec.with_(stage="inversion", lr=lr, pivot_lr=None, eval=EvalConfig(), eval_every=None)


def get_pivot(ctx: StageContext, method, path: Path) -> tuple[torch.Tensor, bool]:
    """The pivot embedding, trained now (and saved to `path`) unless already there.

    Returns (vector, trained_here)."""
    with file_lock(path.with_name(path.name + ".lock")):
        if path.is_file():
            return load_embedding(path).to(ctx.bundle.device), False
        spec = pivot_spec(ctx.spec)
        inner = StageContext(spec, ctx.concept, ctx.bundle, ctx.data, progress=ctx.progress)
        outcome = method.train("inversion", inner)
        if outcome.status != "ok":
            raise PtibenchError(
                f"the pivot (stage 1 at {spec.lr_id}) diverged at step {outcome.diverged_at}; "
                "choose a lower pivot_lr"
            )
        save_embedding(path, ctx.concept.placeholder, outcome.vector)
        return outcome.vector, True


def lora_distance(unet) -> float:
    """Sum over adapted layers of ||scale * B @ A||_F: how far the LoRA moved the weights."""
    from peft.tuners.lora import LoraLayer

    total = 0.0
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, LoraLayer):
                for name, down in module.lora_A.items():
                    up = module.lora_B[name]
                    delta = up.weight.double().flatten(1) @ down.weight.double().flatten(1)
                    total += float(delta.norm() * module.scaling[name])
    return total


def weight_distance(unet, base: dict[str, torch.Tensor]) -> float:
    """||W - W0|| over all of the UNet's parameters (one global Frobenius norm)."""
    total = 0.0
    with torch.no_grad():
        for name, param in unet.named_parameters():
            total += float((param.double() - base[name].double()).pow(2).sum())
    return total**0.5


def train(ctx: StageContext, method, *, full: bool) -> TrainOutcome:
    bundle, spec, data = ctx.bundle, ctx.spec, ctx.data
    stage = "finetune-full" if full else "finetune"
    if ctx.pivot is None:
        raise ValueError("stage 2 needs ctx.pivot")
    pivot = ctx.pivot.to(bundle.device)
    with torch.no_grad():
        hidden_all = bundle.encode_ids(data.ids, data.mask, pivot)
    unet = copy.deepcopy(bundle.unet)
    if full:
        unet.requires_grad_(True)
        base = {n: p.detach().clone() for n, p in unet.named_parameters()}
    else:
        torch.manual_seed(spec.seed)  # peft draws LoRA A from the global RNG (forked by runner)
        unet.add_adapter(method.lora_config())
        base = None
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    optimizer = method.optimizer(stage, params, spec.lr)
    stream = BatchStream(
        data, spec.batch_size, spec.seed, bundle.train_scheduler.config.num_train_timesteps
    )
    outcome = TrainOutcome(
        status="ok", vector=pivot, initial=pivot, losses=[], unet=unet, lora=not full
    )
    scale = max(sum(float(p.detach().norm()) for p in bundle.unet.parameters()), 1e-6)
    forward = training_unet(bundle, unet)
    bar = progress_bar(spec.steps, f"{stage} {spec.lr_id}", ctx.progress)
    for step in bar:
        batch = stream.next()
        latents = data.latents[batch.images]
        hidden = hidden_all[batch.templates.to(hidden_all.device)]
        loss = diffusion_loss(
            bundle, forward, latents, batch.noise.to(latents.device), batch.timesteps, hidden
        )
        if not take_step(loss, method.regulariser(stage), optimizer, outcome, step):
            break
        if step % 25 == 0 or step == spec.steps:
            with torch.no_grad():
                moved = sum(float(p.detach().norm()) for p in params)
            if not is_finite(moved) or moved > EXPLOSION_FACTOR * scale:
                outcome.mark_diverged(step)
                break
        if ctx.due(step):
            unet.eval()
            with torch.no_grad():
                metrics = ctx.checkpoint(step, pivot, unet)
            outcome.curves.append({"step": step, "loss": outcome.losses[-1], **metrics})
        show_loss(bar, outcome, step)
    bar.close()
    unet.requires_grad_(False)
    if outcome.status == "ok":
        distance = weight_distance(unet, base) if full else lora_distance(unet)
        outcome.metrics = {"distance": distance, "pivot_distance": pivot_distance(ctx)}
    return outcome


def pivot_distance(ctx: StageContext) -> float:
    """||pivot - e0||: how far the pivot that stage 2 started from lies from the initializer's
    embedding. Stage 2 can make up for a wrong pivot in its samples, so the case records which
    pivot it started from, and a baseline check sees a pivot that changed."""
    initial = ctx.bundle.word_embedding(ctx.concept.initializer).to(ctx.bundle.device)
    pivot = ctx.pivot.to(ctx.bundle.device).reshape(initial.shape)
    return float((pivot.double() - initial.double()).norm())
