"""Training does what the spec says: the loss is the world's diffusion objective (checked against
diffusers' own scheduler), each stage steps at the spec's lr, stage 2 trains around the pivot,
and pti-normreg pulls the embedding toward its start.

On a random-weight world of the tiny world's shape: these are properties of the code, not of
trained weights. Adam's first step is `lr * g / (|g| + eps)`, so every coordinate with a
non-negligible gradient moves by exactly `lr`: that is what the lr checks measure.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ptibench import concept, spec
from ptibench.evaluation.functional import DENOISE_TIMESTEPS, denoise_loss
from ptibench.models.diffusion import diffusion_loss
from ptibench.models.loading import load_bundle
from ptibench.training import batched, finetune
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import NORMREG_WEIGHT, get_method

EVAL = spec.EvalConfig(samples_per_prompt=1, sample_steps=2)


@pytest.fixture(scope="module")
def setup(world):
    bundle = load_bundle(world)
    ring = concept.load_concept("yellow-ring")
    pixels, _ = ring.pixels(bundle.resolution)
    return bundle, ring, TrainingData.build(bundle, ring, pixels)


def context(setup, world, stage="inversion", **changes):
    bundle, ring, data = setup
    case = spec.CaseSpec(stage=stage, lr=1e-3, world=world.name, steps=1, eval=EVAL)
    return StageContext(case.with_(**changes), ring, bundle, data)


def moved_by(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    return (after.detach().double() - before.detach().double()).abs().flatten()


# --- the loss --------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon", "sample"])
def test_diffusion_loss_is_diffusers_objective(setup, prediction):
    """diffusion_loss computes the target from alphas_cumprod itself; it must equal the loss
    built with the scheduler's add_noise and (for v) get_velocity."""
    from diffusers import DDPMScheduler

    bundle, _, data = setup
    world_scheduler = bundle.train_scheduler
    assert world_scheduler.config.prediction_type == "v_prediction"  # what the tiny world uses
    probe = copy.copy(bundle)
    probe.train_scheduler = DDPMScheduler.from_config(
        world_scheduler.config, prediction_type=prediction
    )
    generator = torch.Generator().manual_seed(0)
    latents = data.latents[:3]
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.tensor([0, 500, 999])
    hidden = bundle.encode(["a red ring", "a ring", "a blue square"])
    ours = diffusion_loss(probe, bundle.unet, latents, noise, timesteps, hidden)
    scheduler = probe.train_scheduler
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = {
        "v_prediction": lambda: scheduler.get_velocity(latents, noise, timesteps),
        "epsilon": lambda: noise,
        "sample": lambda: latents,
    }[prediction]()
    with torch.no_grad():
        pred = bundle.unet(noisy, timesteps, encoder_hidden_states=hidden).sample
    theirs = F.mse_loss(pred, target)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    per_sample = diffusion_loss(
        probe, bundle.unet, latents, noise, timesteps, hidden, reduction="none"
    )
    expected = F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)
    torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=1e-7)


def test_denoise_loss_is_the_objective_at_the_documented_timesteps(setup):
    """The metric: the v-loss on the concept latents at DENOISE_TIMESTEPS bin centres, noise
    drawn from `seed` (one [T * n] batch, timestep-major), built here from diffusers."""

    bundle, _, data = setup
    latents = data.latents[:2]
    hidden = bundle.encode(["a ring"])
    value = denoise_loss(bundle, bundle.unet, latents, hidden, seed=3)
    steps = DENOISE_TIMESTEPS
    total = bundle.train_scheduler.config.num_train_timesteps
    grid = [int((k + 0.5) * total / steps) for k in range(steps)]
    assert grid[0] == total // (2 * steps) and grid[-1] == total - total // (2 * steps)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn((steps * len(latents), *latents.shape[1:]), generator=generator)
    x0 = latents.repeat(steps, 1, 1, 1)
    timesteps = torch.tensor(grid).repeat_interleave(len(latents))
    scheduler = bundle.train_scheduler
    with torch.no_grad():
        pred = bundle.unet(
            scheduler.add_noise(x0, noise, timesteps),
            timesteps,
            encoder_hidden_states=hidden.expand(len(x0), -1, -1),
        ).sample
    expected = F.mse_loss(pred, scheduler.get_velocity(x0, noise, timesteps))
    assert value == pytest.approx(float(expected), rel=1e-5)


# --- the lr ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [1e-3, 3e-2])
def test_stage1_first_step_moves_each_coordinate_by_lr(setup, world, lr):
    outcome = get_method("pti").train("inversion", context(setup, world, lr=lr))
    moved = moved_by(outcome.vector, outcome.initial)
    assert float(moved.median()) == pytest.approx(lr, rel=1e-3)
    assert float(moved.max()) <= lr * (1 + 1e-3)


def test_batched_stage1_first_step_moves_each_vector_by_its_lr(setup, world):
    bundle, ring, data = setup
    lrs = [1e-3, 1e-2]
    specs = [context(setup, world, lr=lr).spec for lr in lrs]
    outcomes = batched.train_batched(bundle, ring, data, specs, get_method("pti"))
    for lr, outcome in zip(lrs, outcomes, strict=True):
        moved = moved_by(outcome.vector, outcome.initial)
        assert float(moved.median()) == pytest.approx(lr, rel=1e-3), lr


def _lora_b(unet) -> torch.Tensor:
    from peft.tuners.lora import LoraLayer

    weights = [
        module.lora_B[name].weight.detach().flatten()
        for module in unet.modules()
        if isinstance(module, LoraLayer)
        for name in module.lora_B
    ]
    return torch.cat(weights).double()


@pytest.mark.parametrize("lr", [1e-3, 3e-2])
def test_stage2_lora_first_step_moves_b_by_lr(setup, world, lr):
    """LoRA B starts at zero, so after one step |B| is the step itself: lr per coordinate."""
    ctx = context(setup, world, "finetune", lr=lr)
    ctx.pivot = setup[0].word_embedding(ctx.concept.initializer)
    outcome = get_method("pti").train("finetune", ctx)
    moved = _lora_b(outcome.unet).abs()
    assert float(moved.median()) == pytest.approx(lr, rel=1e-3)
    assert float(moved.max()) <= lr * (1 + 1e-3)


def test_stage2_full_first_step_moves_weights_by_lr(setup, world):
    lr = 1e-4
    ctx = context(setup, world, "finetune-full", lr=lr)
    ctx.pivot = setup[0].word_embedding(ctx.concept.initializer)
    outcome = get_method("pti").train("finetune-full", ctx)
    before = dict(setup[0].unet.named_parameters())
    moved = torch.cat([moved_by(p, before[n]) for n, p in outcome.unet.named_parameters()])
    assert float(moved.median()) == pytest.approx(lr, rel=1e-3)
    assert float(moved.max()) <= lr * (1 + 1e-3)


# --- the pivot -------------------------------------------------------------------------------


def test_stage2_evaluates_and_trains_around_the_pivot(setup, world):
    """The outcome carries the pivot it was given (not the initializer), and the LoRA it trains
    depends on that pivot."""
    bundle = setup[0]
    generator = torch.Generator().manual_seed(1)
    initial = bundle.word_embedding("ring")
    lora = {}
    for name, pivot in {
        "initial": initial,
        "pivot": initial + torch.randn(initial.shape, generator=generator),
    }.items():
        ctx = context(setup, world, "finetune", lr=1e-2, steps=2)
        ctx.pivot = pivot
        outcome = get_method("pti").train("finetune", ctx)
        torch.testing.assert_close(outcome.vector, pivot, rtol=0, atol=0)
        lora[name] = _lora_b(outcome.unet)
    assert not torch.equal(lora["initial"], lora["pivot"])


def test_the_pivot_is_the_stage1_case_at_pivot_lr():
    pivot = finetune.pivot_spec(spec.CaseSpec(stage="finetune", lr=1e-4, pivot_lr=1e-2, seed=3))
    assert pivot == spec.CaseSpec(stage="inversion", lr=1e-2, seed=3)
    default = finetune.pivot_spec(spec.CaseSpec(stage="finetune", lr=1e-4))
    assert default.lr == finetune.DEFAULT_PIVOT_LR and default.stage == "inversion"


# --- the regulariser -------------------------------------------------------------------------


def test_normreg_is_a_pull_toward_the_start():
    """loss += w * ||e - e0||^2: positive, and its gradient points away from e0 (so a descent
    step moves toward it)."""
    method = get_method("pti-normreg")
    start = torch.zeros(8)
    offset = torch.arange(8, dtype=torch.float32) - 3.5
    vector = (start + offset).requires_grad_(True)
    term = method.regulariser("inversion", vector=vector, initial=start)
    expected = NORMREG_WEIGHT * float(offset.pow(2).sum())
    assert float(term.detach()) == pytest.approx(expected)
    term.backward()
    torch.testing.assert_close(vector.grad, 2 * NORMREG_WEIGHT * offset)
    assert get_method("pti").regulariser("inversion", vector=vector, initial=start) is None


def test_normreg_keeps_the_embedding_closer_to_its_start(setup, world):
    """Measured: the same 10 steps at lr 0.1 end closer to the initializer with the pull."""
    distances = {}
    for name in ("pti", "pti-normreg"):
        ctx = context(setup, world, lr=0.1, steps=10, method=name)
        outcome = get_method(name).train("inversion", ctx)
        distances[name] = float((outcome.vector - outcome.initial).norm())
    assert distances["pti-normreg"] < 0.5 * distances["pti"], distances
