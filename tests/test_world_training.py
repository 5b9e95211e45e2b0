"""The world's training recipe is deterministic by seed (a shortened run, trained twice)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ptibench.world.recipe import TrainConfig
from ptibench.world.train_clip import train_clip
from ptibench.world.train_layout import train_layout
from ptibench.world.train_lpips import train_lpips_backbone
from ptibench.world.train_t2i import train_text_to_image
from ptibench.world.train_vae import train_vae

TINY = TrainConfig(
    images=64,
    vae_steps=3,
    vae_batch=4,
    t2i_steps=4,
    t2i_batch=4,
    layout_steps=2,
    save_every=2,
    clip_steps=3,
    clip_batch=8,
    lpips_steps=3,
    lpips_batch=4,
)


def _train(out, config):
    train_vae(out, config)
    train_text_to_image(out, config)
    train_layout(out, config)
    train_clip(out, config)
    train_lpips_backbone(out, config)
    return out


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    torch.set_num_threads(1)
    return [_train(tmp_path_factory.mktemp(f"world{i}"), TINY) for i in range(2)]


@pytest.mark.parametrize(
    "weights",
    [
        "pipeline/unet/diffusion_pytorch_model.safetensors",
        "pipeline/text_encoder/model.safetensors",
        "pipeline/vae/diffusion_pytorch_model.safetensors",
        "lpips/alex_backbone.safetensors",
    ],
)
def test_same_seed_same_weights(twice, weights):
    first, second = (load_file(str(out / weights)) for out in twice)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_same_seed_same_clip(twice):
    first, second = (torch.load(out / "clip" / "open_clip_model.pt")["state_dict"] for out in twice)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_other_seed_other_weights(twice, tmp_path):
    other = TrainConfig(**{**TINY.__dict__, "seed": 1})
    train_vae(tmp_path, other)
    a = load_file(str(twice[0] / "vae" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_manifest_is_written(twice):
    manifest = json.loads((twice[0] / "manifest.json").read_text())
    assert {"vae", "text_to_image", "layout", "clip", "lpips"} <= manifest.keys()
    assert manifest["text_to_image"]["steps_done"] == TINY.t2i_steps
