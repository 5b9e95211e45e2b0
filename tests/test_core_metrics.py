"""Each metric on hand-made inputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptibench.evaluation.functional import (
    clip_i,
    clip_t,
    denoise_loss,
    lpips_pairwise,
    oracle_share,
)
from ptibench.evaluation.sampling import to_model_range
from ptibench.models.loading import load_bundle
from ptibench.models.metric_models import MetricModels, load_metric_models
from ptibench.training.finetune import lora_distance, weight_distance
from ptibench.training.inversion import distance_metrics
from ptibench.world.render import Attributes, render

COLOURS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}


class ColourClip(torch.nn.Module):
    """A CLIP whose image embedding is the mean colour and whose text embedding is the colour
    named: the right prompt is the most similar by construction."""

    def encode_image(self, x):
        return x.mean((2, 3))

    def encode_text(self, tokens):
        return tokens


def colour_tokenizer(texts):
    return torch.tensor([next(COLOURS[w] for w in t.split() if w in COLOURS) for t in texts])


@pytest.fixture(scope="module")
def models(world):
    return load_metric_models(world)


def stub_models(models):
    return MetricModels(
        clip=ColourClip(),
        clip_tokenizer=colour_tokenizer,
        lpips=models.lpips,
        clip_size=32,
        clip_mean=torch.full((1, 3, 1, 1), 0.5),
        clip_std=torch.ones(1, 3, 1, 1) * 0.5,
        lpips_resolution=64,
        device=torch.device("cpu"),
    )


def solid(colour: str, n: int = 3) -> torch.Tensor:
    value = torch.tensor(COLOURS[colour]).view(1, 3, 1, 1)
    return value.expand(n, 3, 32, 32).clone()


def rendered(n: int = 4, **attrs) -> torch.Tensor:
    rng = np.random.default_rng(0)
    base = dict(shape="ring", colour="yellow", background="black", position="center", size="large")
    base.update(attrs)
    return to_model_range(np.stack([render(Attributes(**base), rng) for _ in range(n)]))


def test_identical_images_lpips_zero_clip_i_one(models):
    images = rendered(1)
    assert lpips_pairwise(models, images, images).item() == 0.0
    assert clip_i(models, images, images) == pytest.approx(1.0, abs=1e-5)


def test_lpips_pairwise_matches_the_lpips_module(models):
    a, b = rendered(3, background="blue"), rendered(2, background="red", position="left")
    table = lpips_pairwise(models, a, b)
    for i in range(3):
        for j in range(2):
            direct = models.lpips(
                models.lpips_input(a[i : i + 1]), models.lpips_input(b[j : j + 1])
            )
            assert table[i, j].item() == pytest.approx(direct.item(), rel=1e-5, abs=1e-6)
    assert (table > 0).all()


def test_clip_i_is_the_mean_over_pairs(models):
    stub = stub_models(models)
    same = clip_i(stub, solid("red"), solid("red"))
    mixed = clip_i(stub, solid("red"), torch.cat([solid("red", 1), solid("blue", 1)]))
    assert same == pytest.approx(1.0) and mixed < same


def test_swapped_prompts_lower_clip_t(models):
    stub = stub_models(models)
    images = [solid("red"), solid("green")]
    right = clip_t(stub, images, ["a red ring", "a green ring"])
    swapped = clip_t(stub, images, ["a green ring", "a red ring"])
    assert right == pytest.approx(1.0) and swapped < right


def test_oracle_shares_on_rendered_images():
    images = np.stack([render(Attributes("ring", "yellow", "blue", "left", "large"))] * 2)
    images = np.concatenate(
        [images, np.stack([render(Attributes("star", "green", "red", "top", "small"))])]
    )
    assert oracle_share(images, {"shape": "ring", "colour": "yellow"}) == pytest.approx(2 / 3)
    assert oracle_share(images, {"background": "red", "position": "top"}) == pytest.approx(1 / 3)


def test_denoise_loss_is_deterministic(world):
    bundle = load_bundle(world)
    latents = bundle.encode_images(
        np.stack([render(Attributes("ring", "yellow", "blue", "left", "large"))])
    )
    hidden = bundle.encode(["a ring"])
    first = denoise_loss(bundle, bundle.unet, latents, hidden, seed=3)
    assert first == denoise_loss(bundle, bundle.unet, latents, hidden, seed=3)
    assert first != denoise_loss(bundle, bundle.unet, latents, hidden, seed=4)


def test_distances_are_zero_when_nothing_moved(world):
    vector = torch.randn(8)
    assert distance_metrics(vector, vector.clone()) == {
        "distance": 0.0,
        "cosine_to_init": pytest.approx(1.0),
    }
    bundle = load_bundle(world)
    import copy

    unet = copy.deepcopy(bundle.unet)
    base = {n: p.detach().clone() for n, p in unet.named_parameters()}
    assert weight_distance(unet, base) == 0.0
    from ptibench.training.methods import get_method

    unet.add_adapter(get_method("pti").lora_config())
    assert lora_distance(unet) == 0.0
