"""The stacked LoRA trainer (training/stacked_lora.py) reproduces K sequential stage-2 runs over
(lr, seed) pairs: the same losses and diverged step, the same trained adapter weights, and an
exported adapter that loads through the project's path and gives the same UNet output.

Tolerances: losses and metrics agree to 1e-7 relative in practice (rtol 1e-4 asserted, as in
test_perf_batched). The weights are compared at rtol 1e-4 plus an absolute term of a few
percent of one Adam step (lr): the stacked run's batch of K*B samples rounds the frozen UNet's
matmuls differently from a batch of B, and Adam divides each element's update by its own
gradient scale, so an element whose gradients nearly cancel turns a last-bit difference into up
to ~1.5% of lr (measured; a one-case stack agrees to 3e-4 of lr)."""

from __future__ import annotations

import copy

import pytest
import torch

from ptibench.concept import load_concept
from ptibench.models.artifacts import save_lora
from ptibench.models.loading import load_bundle
from ptibench.models.random_weights import write_random_world
from ptibench.spec import CaseSpec
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import get_method
from ptibench.training.stacked_lora import StackedLoraLinear, train_stacked

STEPS = 6
LRS = (1e-2, 1e3)  # 1e3: the loss is no longer finite at step 3, mid-run
WEIGHT_ATOL_IN_LR = 5e-2
"""In Adam's first steps a gradient near zero still moves its weight by about lr, so a last-bit
difference there shows as a share of lr (2.2e-4 at LoRA lr 1e-2 after two steps on an Intel Xeon
with AMX), not as rounding."""
DIVERGING_LOSS_RTOL = 5e-2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    world = write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")
    bundle = load_bundle(world)
    concept = load_concept("yellow-ring")
    reference, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, reference)
    initial = bundle.word_embedding(concept.initializer).to(bundle.device)
    pivot = initial + 0.05 * torch.randn(initial.shape, generator=torch.Generator().manual_seed(7))
    return world, bundle, concept, data, pivot


def specs_for(world, lrs=LRS, seeds=(0, 1)):
    return [
        CaseSpec(stage="finetune", lr=lr, seed=seed, world=world.name, steps=STEPS)
        for seed in seeds
        for lr in lrs
    ]


@pytest.fixture(scope="module")
def runs(setup):
    world, bundle, concept, data, pivot = setup
    method = get_method("pti")
    specs = specs_for(world)
    sequential = [
        method.train("finetune", StageContext(s, concept, bundle, data, pivot=pivot)) for s in specs
    ]
    stacked = train_stacked(bundle, concept, data, specs, method, pivot)
    return specs, sequential, stacked


def lora_weights(unet) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in unet.named_parameters() if ".lora_" in n}


def test_stacked_cases_match_their_sequential_runs(runs):
    specs, sequential, stacked = runs
    assert [o.status for o in sequential] == ["ok", "diverged", "ok", "diverged"]
    assert sequential[1].diverged_at < STEPS  # left the batch while the others went on
    # the seeds draw their own batches and adapters
    assert sequential[0].losses != sequential[2].losses
    for spec, alone, together in zip(specs, sequential, stacked, strict=True):
        assert together.status == alone.status
        assert together.diverged_at == alone.diverged_at
        assert together.lora and together.unet is not None
        torch.testing.assert_close(together.vector, alone.vector)
        assert len(together.losses) == len(alone.losses)
        ours, theirs = lora_weights(together.unet), lora_weights(alone.unet)
        assert ours.keys() == theirs.keys() and ours
        if alone.status != "ok":
            assert together.losses[0] == pytest.approx(alone.losses[0], rel=1e-4)
            torch.testing.assert_close(
                together.losses, alone.losses, rtol=DIVERGING_LOSS_RTOL, atol=0
            )
            continue
        torch.testing.assert_close(together.losses, alone.losses, rtol=1e-4, atol=1e-6)
        for name, weight in theirs.items():
            torch.testing.assert_close(
                ours[name], weight, rtol=1e-4, atol=WEIGHT_ATOL_IN_LR * spec.lr, msg=name
            )
        assert together.metrics.keys() == alone.metrics.keys() == {"distance", "pivot_distance"}
        for name, value in alone.metrics.items():
            assert together.metrics[name] == pytest.approx(value, rel=1e-4), name


def test_stacked_start_is_the_sequential_start(setup):
    """Zero steps: each case's adapter is peft's init under its own seed, bit for bit."""
    world, bundle, concept, data, pivot = setup
    method = get_method("pti")
    specs = [s.with_(steps=0) for s in specs_for(world)]
    stacked = train_stacked(bundle, concept, data, specs, method, pivot)
    for spec, together in zip(specs, stacked, strict=True):
        alone = method.train("finetune", StageContext(spec, concept, bundle, data, pivot=pivot))
        ours, theirs = lora_weights(together.unet), lora_weights(alone.unet)
        assert all(torch.equal(ours[n], w) for n, w in theirs.items())
    seed0, seed1 = (lora_weights(o.unet) for o in (stacked[0], stacked[2]))
    assert not any(torch.equal(seed0[n], seed1[n]) for n in seed0 if ".lora_A" in n)


def test_the_shared_unet_is_left_alone_and_the_outcomes_are_independent(setup, runs):
    bundle = setup[1]
    names = {type(m).__name__ for m in bundle.unet.modules()}
    assert "StackedLoraLinear" not in names and "Linear" in names
    assert not any(".lora_" in n for n, _ in bundle.unet.named_parameters())
    _, _, stacked = runs
    first, second = (lora_weights(o.unet) for o in (stacked[0], stacked[2]))
    name = next(iter(first))
    assert first[name].untyped_storage().data_ptr() != second[name].untyped_storage().data_ptr()
    assert not any(p.requires_grad for p in stacked[0].unet.parameters())


def unet_output(bundle, unet, pivot, data) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn((2, *data.latents.shape[1:]), generator=gen).to(bundle.device)
    timesteps = torch.tensor([10, 600], device=bundle.device)
    with torch.no_grad():
        rows = torch.zeros(2, dtype=torch.long)  # the first caption, twice
        hidden = bundle.encode_ids(data.ids[rows], data.mask[rows], pivot)
        return unet(latents.to(bundle.dtype), timesteps, encoder_hidden_states=hidden).sample


def loaded(bundle, path):
    """The adapter file on a copy of the base UNet, as the evaluation tests load it."""
    unet = copy.deepcopy(bundle.unet)
    unet.load_lora_adapter(str(path), prefix="unet")
    return unet.eval()


def test_an_exported_stacked_adapter_loads_and_acts_like_the_sequential_one(setup, runs, tmp_path):
    _, bundle, _, data, pivot = setup
    _, sequential, stacked = runs
    ours = loaded(bundle, save_lora(stacked[0].unet, tmp_path / "stacked"))
    theirs = loaded(bundle, save_lora(sequential[0].unet, tmp_path / "sequential"))
    base = unet_output(bundle, bundle.unet, pivot, data)
    direct = unet_output(bundle, stacked[0].unet.eval(), pivot, data)
    out = unet_output(bundle, ours, pivot, data)
    torch.testing.assert_close(out, direct, rtol=1e-5, atol=1e-6)  # the file holds the adapter
    assert not torch.allclose(out, base, rtol=1e-3, atol=1e-4)  # and the adapter acts
    scale = float(base.abs().max())
    expected = unet_output(bundle, theirs, pivot, data)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5 * scale)


def test_specs_that_differ_beyond_lr_and_seed_are_refused(setup):
    world, bundle, concept, data, pivot = setup
    method = get_method("pti")
    spec = specs_for(world)[0]
    bad = [
        [spec, spec.with_(steps=STEPS + 1)],
        [spec, spec.with_(batch_size=2)],
        [spec, spec.with_(pivot_lr=1e-2)],
        [spec.with_(stage="finetune-full")],
        [spec.with_(stage="inversion")],
        [spec.with_(eval_every=2)],
    ]
    for specs in bad:
        with pytest.raises(ValueError):
            train_stacked(bundle, concept, data, specs, method, pivot)
    assert train_stacked(bundle, concept, data, [], method, pivot) == []


def test_the_stacked_layer_adds_each_adapter_to_its_own_group_only():
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.Linear(5, 3)
    down, up = torch.randn(3, 2, 5, generator=gen), torch.randn(3, 3, 2, generator=gen)
    layer = StackedLoraLinear(base, down, up, 0.5)
    x = torch.randn(6, 7, 5, generator=gen)  # 3 groups of 2 samples, 7 tokens each
    with torch.no_grad():
        out = layer(x)
        for k in range(3):
            group = x[2 * k : 2 * k + 2]
            expected = base(group) + (group @ down[k].T @ up[k].T) * 0.5
            torch.testing.assert_close(out[2 * k : 2 * k + 2], expected)
        layer.active = torch.tensor([0, 2])  # adapter 1 has left: the batch holds groups 0, 2
        out = layer(x[:4])
        torch.testing.assert_close(out[2:], base(x[2:4]) + (x[2:4] @ down[2].T @ up[2].T) * 0.5)
        with pytest.raises(ValueError):
            layer(x[:3])


def test_each_case_owns_only_its_adapter(setup, runs):
    """K stacked cases cost K adapters, not K UNet copies: the frozen weights are the bundle's."""
    bundle = setup[1]
    shared = {p.data_ptr() for p in bundle.unet.parameters()}
    for outcome in runs[2]:
        own = [n for n, p in outcome.unet.named_parameters() if p.data_ptr() not in shared]
        assert own, "the adapter is the case's own"
        assert all(".lora_" in name for name in own), own[:3]
