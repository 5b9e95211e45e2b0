"""The world's training recipe is deterministic by seed (a shortened run, trained twice)."""

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from ptibench.assets import tiny_world_path
from ptibench.errors import PtibenchError
from ptibench.world import __main__ as world_cli
from ptibench.world import train_t2i
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


class Stopped(Exception):
    """Stands in for a run killed mid-phase (a session's end, a lost machine)."""


def _count_steps(monkeypatch, stop_at: int | None = None) -> list:
    """Count the phase's loss calls (one a step), raising `Stopped` at call `stop_at`."""
    real = train_t2i.text_to_image_loss
    seen = []

    def loss(*args, **kwargs):
        seen.append(1)
        if len(seen) == stop_at:
            raise Stopped
        return real(*args, **kwargs)

    monkeypatch.setattr(train_t2i, "text_to_image_loss", loss)
    return seen


def _stop_after_first_save(twice, out, monkeypatch) -> None:
    """Beside `twice`'s VAE, a text-to-image phase stopped in the step after its first save."""
    shutil.copytree(twice[0] / "vae", out / "vae")
    _count_steps(monkeypatch, stop_at=TINY.save_every + 1)
    with pytest.raises(Stopped):
        train_text_to_image(out, TINY)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def t2i_alone(twice, tmp_path_factory):
    """The text-to-image phase run through without a stop, beside the VAE of `twice`."""
    out = tmp_path_factory.mktemp("t2i-alone")
    shutil.copytree(twice[0] / "vae", out / "vae")
    train_text_to_image(out, TINY)
    return out


def test_a_stopped_text_to_image_phase_resumes_bit_for_bit(t2i_alone, twice, tmp_path, monkeypatch):
    _stop_after_first_save(twice, tmp_path, monkeypatch)
    assert torch.load(tmp_path / train_t2i.RESUME_FILE)["step"] == TINY.save_every
    steps = _count_steps(monkeypatch)
    train_text_to_image(tmp_path, TINY)
    assert len(steps) == TINY.t2i_steps - TINY.save_every
    assert not (tmp_path / train_t2i.RESUME_FILE).exists()
    for weights in (
        "pipeline/unet/diffusion_pytorch_model.safetensors",
        "pipeline/text_encoder/model.safetensors",
    ):
        first, second = (load_file(str(out / weights)) for out in (t2i_alone, tmp_path))
        assert all(torch.equal(first[k], second[k]) for k in first), weights
    record = json.loads((tmp_path / "manifest.json").read_text())["text_to_image"]
    assert record["resumed_at"] == TINY.save_every
    assert record["steps_done"] == TINY.t2i_steps


def test_a_saved_state_of_other_settings_is_refused(twice, tmp_path, monkeypatch):
    _stop_after_first_save(twice, tmp_path, monkeypatch)
    other = dataclasses.replace(TINY, t2i_lr=TINY.t2i_lr / 2)
    with pytest.raises(PtibenchError, match="t2i_lr"):
        train_text_to_image(tmp_path, other)


def test_the_command_line_says_so_in_one_line(twice, tmp_path, monkeypatch, capsys):
    _stop_after_first_save(twice, tmp_path, monkeypatch)
    capsys.readouterr()
    settings = dataclasses.asdict(TINY)
    settings["t2i_steps"] = TINY.t2i_steps * 2
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    code = world_cli.main(["train", "--out", str(tmp_path), "--part", "t2i", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "t2i_steps" in err and train_t2i.RESUME_FILE in err


def test_the_recipe_default_depth_is_the_shipped_encoder_depth():
    shipped = json.loads((tiny_world_path() / "pipeline/text_encoder/config.json").read_text())
    assert shipped["num_hidden_layers"] == TrainConfig().text_layers


def test_text_layers_sets_the_encoder_depth_and_is_recorded(twice, tmp_path):
    shutil.copytree(twice[0] / "vae", tmp_path / "vae")
    train_text_to_image(tmp_path, dataclasses.replace(TINY, text_layers=2, t2i_steps=1))
    config = json.loads((tmp_path / "pipeline/text_encoder/config.json").read_text())
    assert config["num_hidden_layers"] == 2
    record = json.loads((tmp_path / "manifest.json").read_text())["text_to_image"]
    assert record["text_layers"] == 2
