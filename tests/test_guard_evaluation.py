"""Evaluation measures the trained thing: the adapter and the learned vector reach every sample
and the denoising loss, and a case's stored metrics are what a direct evaluation of its saved
artifacts gives.

On a random-weight world of the tiny world's shape (wiring, not quality). "Differs" is checked
on the uint8 samples of every prompt row and on denoise_loss, so an adapter or vector that
reaches one path but not the other is caught.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ptibench import concept, spec
from ptibench.evaluation import evaluate as evaluation_module
from ptibench.evaluation.evaluate import Evaluation
from ptibench.models.loading import load_bundle
from ptibench.models.metric_models import load_metric_models
from ptibench.run.runner import run_case
from ptibench.training.loop import TrainingData

EVAL = spec.EvalConfig(samples_per_prompt=1, sample_steps=2)
EVAL_METRICS = ("lpips", "clip_i", "denoise_loss", "clip_t", "appearance", "edit_success")


@pytest.fixture(scope="module")
def setup(world):
    bundle = load_bundle(world)
    ring = concept.load_concept("yellow-ring")
    pixels, _ = ring.pixels(bundle.resolution)
    data = TrainingData.build(bundle, ring, pixels)
    return bundle, load_metric_models(world), ring, pixels, data


def evaluate(setup, vector, unet=None) -> Evaluation:
    bundle, models, ring, pixels, data = setup
    return evaluation_module.evaluate(
        bundle, models, ring, pixels, data.latents, vector, EVAL, unet=unet, oracle=True
    )


def vector_of(result) -> torch.Tensor:
    return next(iter(load_file(result.artifacts["learned_embeds"]).values())).reshape(-1)


def rows_differ(a: Evaluation, b: Evaluation) -> list[bool]:
    return [not np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True)]


@pytest.fixture(scope="module")
def lora_case(world, tmp_path_factory):
    case = spec.CaseSpec(stage="finetune", lr=1e-2, world=world.name, steps=3, eval=EVAL)
    cache = tmp_path_factory.mktemp("guard-eval-cache")
    return run_case(case, cache_dir=cache, progress=False), cache


@pytest.fixture(scope="module")
def lora_unet(setup, lora_case):
    """The case's adapter, loaded from its saved file onto a copy of the base UNet."""
    unet = copy.deepcopy(setup[0].unet)
    unet.load_lora_adapter(lora_case[0].artifacts["lora"], prefix="unet")
    return unet.eval()


@pytest.fixture(scope="module")
def base_eval(setup, lora_case):
    return evaluate(setup, vector_of(lora_case[0]))


def test_a_lora_case_reports_the_direct_evaluation_of_its_artifacts(setup, lora_case, lora_unet):
    result, _ = lora_case
    direct = evaluate(setup, vector_of(result), lora_unet)
    for name in EVAL_METRICS:
        assert result.metrics[name] == pytest.approx(direct.metrics[name], rel=1e-6, abs=1e-9)


def test_the_adapter_changes_every_sample_and_the_denoise_loss(
    setup, lora_case, lora_unet, base_eval
):
    """Evaluating with the adapter is not evaluating the base UNet: no prompt row's samples
    and not the denoising loss."""
    with_adapter = evaluate(setup, vector_of(lora_case[0]), lora_unet)
    assert all(rows_differ(with_adapter, base_eval))
    assert with_adapter.metrics["denoise_loss"] != base_eval.metrics["denoise_loss"]


def test_a_lora_case_is_not_the_base_unet(lora_case, base_eval):
    result, _ = lora_case
    assert result.metrics["denoise_loss"] != base_eval.metrics["denoise_loss"]


def test_a_lora_case_evaluates_with_its_pivot(setup, lora_case):
    """Stage 2 evaluates the stage-1 embedding it was trained around, not the initializer."""
    result, cache = lora_case
    (pivot_file,) = (cache / "pivots").glob("*/learned_embeds.safetensors")
    pivot = next(iter(load_file(str(pivot_file)).values())).reshape(-1)
    torch.testing.assert_close(vector_of(result), pivot, rtol=0, atol=0)
    initial = setup[0].word_embedding(setup[2].initializer)
    assert not torch.allclose(pivot, initial)


@pytest.fixture(scope="module")
def inversion_case(world, tmp_path_factory):
    case = spec.CaseSpec(stage="inversion", lr=3e-2, world=world.name, steps=3, eval=EVAL)
    cache = tmp_path_factory.mktemp("guard-eval-inversion")
    return run_case(case, cache_dir=cache, progress=False)


def test_an_inversion_case_reports_the_direct_evaluation_of_its_vector(setup, inversion_case):
    direct = evaluate(setup, vector_of(inversion_case))
    for name in EVAL_METRICS:
        assert inversion_case.metrics[name] == pytest.approx(
            direct.metrics[name], rel=1e-6, abs=1e-9
        )


def test_the_learned_vector_changes_every_sample_and_the_denoise_loss(setup, inversion_case):
    """The placeholder is spliced with the learned vector in the reconstruction and in every
    edit prompt: the initializer's evaluation differs row by row."""
    learned = evaluate(setup, vector_of(inversion_case))
    initial = evaluate(setup, setup[0].word_embedding(setup[2].initializer))
    assert all(rows_differ(learned, initial))
    assert learned.metrics["denoise_loss"] != initial.metrics["denoise_loss"]
    assert inversion_case.metrics["denoise_loss"] != initial.metrics["denoise_loss"]


def test_every_prompt_names_the_placeholder(setup, inversion_case):
    ring = setup[2]
    evaluation = evaluate(setup, vector_of(inversion_case))
    assert len(evaluation.prompts) == 1 + len(ring.edit_prompts)
    assert all(ring.placeholder in prompt for prompt in evaluation.prompts)
    assert evaluation.prompts[0] == ring.with_placeholder(ring.reconstruction_prompt)
