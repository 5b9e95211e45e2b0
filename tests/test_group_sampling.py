"""Evaluation sampled across cases (evaluation.sample_cases, run.pretrain's group sampling): the
cases of a group run sample their prompts in shared batches, stage-1 cases side by side, stage-2
adapters routed per sample over one UNet, and each case gets the images it samples alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptibench.concept import load_concept
from ptibench.evaluation.evaluate import case_plan, sample_cases
from ptibench.evaluation.sampling import generate_rows
from ptibench.models.loading import load_bundle, world_version
from ptibench.run.cache import ResultCache
from ptibench.run.pretrain import (
    GROUP_SAMPLING_ENV,
    SAMPLES_FILE,
    load_trained,
    pretrain,
    trained_dir,
)
from ptibench.run.runner import run_cases
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.methods import get_method
from ptibench.training.stacked_lora import AdapterRouter, StackedLoraLinear, adapted_unet

SMALL = EvalConfig(samples_per_prompt=2, sample_steps=3, reconstruction_factor=2)
QUICK = EvalConfig(samples_per_prompt=1, sample_steps=2)


def assert_same_images(alone: list[np.ndarray], shared: list[np.ndarray]) -> None:
    """The same images: bitwise on the CPUs tested; a last-bit difference that another batch's
    rounding carries into a pixel may flip a level in a few pixels, nothing more."""
    assert [a.shape for a in alone] == [s.shape for s in shared]
    for a, s in zip(alone, shared, strict=True):
        diff = np.abs(a.astype(np.int16) - s.astype(np.int16))
        assert diff.max() <= 2 and (diff > 0).mean() <= 1e-3


@pytest.fixture(scope="module")
def setup(world):
    return load_bundle(world), load_concept("yellow-ring")


def test_stage1_cases_sampled_together_get_the_images_they_get_alone(setup):
    bundle, concept = setup
    start = bundle.word_embedding(concept.initializer)
    gen = torch.Generator().manual_seed(0)
    vectors = [start, start + 0.5 * torch.randn(start.shape, generator=gen)]
    plan = case_plan(concept, SMALL, oracle=True)
    prompts = [concept.with_placeholder(t) for t in plan]
    shared = sample_cases(bundle, concept, SMALL, vectors, oracle=True)
    assert len(shared) == 2 and [len(r) for r in shared[0]] == list(plan.values())
    for vector, rows in zip(vectors, shared, strict=True):
        embeds = bundle.encode(prompts, concept.placeholder, vector)
        assert_same_images(generate_rows(bundle, embeds, list(plan.values()), SMALL), rows)
    assert not np.array_equal(shared[0][0], shared[1][0]), "the two vectors draw other images"


def test_stage2_adapters_routed_per_sample_get_the_images_they_get_alone(setup):
    bundle, concept = setup
    method = get_method("pti")
    unets = []
    for seed in (0, 1):
        unet = adapted_unet(bundle, CaseSpec(stage="finetune", lr=1e-3, seed=seed), method)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in unet.named_parameters():
                if "lora_B" in name:  # peft starts B at zero: give each adapter an effect
                    param.copy_(0.2 * torch.randn(param.shape, generator=gen))
        unet.requires_grad_(False)
        unets.append(unet)
    pivot = bundle.word_embedding(concept.initializer)
    router = AdapterRouter(bundle, unets)
    shared = sample_cases(
        bundle, concept, SMALL, [pivot, pivot], unet=router.unet, route=router.route
    )
    plan = case_plan(concept, SMALL, oracle=False)
    embeds = bundle.encode([concept.with_placeholder(t) for t in plan], concept.placeholder, pivot)
    for unet, rows in zip(unets, shared, strict=True):
        assert_same_images(
            generate_rows(bundle, embeds, list(plan.values()), SMALL, unet=unet), rows
        )
    assert not np.array_equal(shared[0][0], shared[1][0]), "the two adapters draw other images"


def test_a_routed_layer_gives_each_sample_its_adapter_also_under_guidance():
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.Linear(5, 3)
    down, up = torch.randn(3, 2, 5, generator=gen), torch.randn(3, 3, 2, generator=gen)
    layer = StackedLoraLinear(base, down, up, 0.5)
    layer.rows = torch.tensor([2, 0, 2])
    x = torch.randn(6, 7, 5, generator=gen)  # guidance: the 3 routed samples twice
    with torch.no_grad():
        out = layer(x)
        for i, k in enumerate([2, 0, 2, 2, 0, 2]):
            expected = base(x[i]) + (x[i] @ down[k].T @ up[k].T) * 0.5
            torch.testing.assert_close(out[i], expected)
        with pytest.raises(ValueError):
            layer(x[:4])


def test_group_sampling_leaves_images_in_the_slots_and_changes_no_metric(
    world, tmp_path, monkeypatch
):
    specs = [
        CaseSpec(stage=stage, lr=lr, world=world.name, steps=3, eval=QUICK)
        for stage in ("inversion", "finetune")
        for lr in (1e-3, 1e-2)
    ]
    monkeypatch.setenv(GROUP_SAMPLING_ENV, "1")
    assert pretrain(specs, cache_dir=tmp_path / "shared") == 4
    cache, method = ResultCache(tmp_path / "shared"), get_method("pti")
    plan = case_plan(load_concept(specs[0].concept), QUICK, oracle=world.oracle)
    for spec in specs:
        entry = cache.entry(spec, world_version(world), method)
        assert (trained_dir(cache, entry) / SAMPLES_FILE).is_file()
        trained = load_trained(cache, entry)
        assert [len(row) for row in trained.samples] == list(plan.values())
        assert trained.sample_s > 0
    shared = run_cases(specs, cache_dir=tmp_path / "shared", progress=False)
    monkeypatch.setenv(GROUP_SAMPLING_ENV, "0")
    alone = run_cases(specs, cache_dir=tmp_path / "alone", progress=False)
    for together, single in zip(shared, alone, strict=True):
        assert together.status == single.status == "ok"
        assert 0 < together.timings["batched_eval_s"] <= together.timings["eval_s"]
        assert "batched_eval_s" not in single.timings
        for name, value in single.metrics.items():
            assert together.metrics[name] == pytest.approx(value, rel=1e-3, abs=1e-3), name


def test_samples_drawn_for_another_plan_are_refused(setup):
    from ptibench.evaluation.evaluate import evaluate
    from ptibench.models.metric_models import load_metric_models

    bundle, concept = setup
    vector = bundle.word_embedding(concept.initializer)
    reference, _ = concept.pixels(bundle.resolution)
    wrong = [np.zeros((1, 4, 4, 3), np.uint8)]
    with pytest.raises(ValueError, match="another sampling plan"):
        evaluate(
            bundle,
            load_metric_models(bundle.config),
            concept,
            reference,
            torch.zeros(1),
            vector,
            QUICK,
            sampled=wrong,
        )
