"""The tiny world's UNet class: a stock UNet2DConditionModel plus a text-to-layout path. It must
change nothing until trained, survive a diffusers save/load round trip, follow the prompt's
token states, and refuse prompts of another length with one clear error."""

import pytest
import torch
from diffusers import StableDiffusionPipeline

from ptibench.world import components
from ptibench.world.layout_unet import LayoutUNet2DConditionModel, add_layout
from ptibench.world.train_layout import position_map


@pytest.fixture(scope="module")
def stock():
    torch.manual_seed(0)
    return components.build_unet().eval()


def _inputs(batch=2, tokens=components.MAX_TOKENS):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, 16, 16, generator=gen)
    hidden = torch.randn(batch, tokens, components.TEXT_WIDTH, generator=gen)
    return x, torch.tensor([999, 400][:batch]), hidden


def _trained(stock):
    model = add_layout(stock).eval()
    with torch.no_grad():
        model.layout.weight.normal_(std=0.02)
        model.layout_scale.normal_()
    return model


def test_zero_scale_changes_nothing(stock):
    model = add_layout(stock).eval()
    assert isinstance(model, LayoutUNet2DConditionModel)
    x, t, hidden = _inputs()
    with torch.no_grad():
        assert torch.equal(model(x, t, hidden).sample, stock(x, t, hidden).sample)
        assert not torch.allclose(_trained(stock)(x, t, hidden).sample, stock(x, t, hidden).sample)


def test_the_cue_follows_the_prompt_states(stock):
    """The cue is a deterministic function of the prompt's token states, and a change in one
    token's state moves it."""
    model = _trained(stock)
    x, t, hidden = _inputs(batch=1)
    other = hidden.clone()
    other[:, 5] += 1.0
    with torch.no_grad():
        assert torch.equal(model.layout_map(hidden), model.layout_map(hidden))
        assert not torch.allclose(model.layout_map(hidden), model.layout_map(other))


def test_round_trip_through_the_pipeline_format(stock, tmp_path):
    model = _trained(stock)
    pipe = StableDiffusionPipeline(
        vae=components.build_vae(),
        text_encoder=components.build_text_encoder(),
        tokenizer=components.build_tokenizer(tmp_path / "tok"),
        unet=model,
        scheduler=components.build_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path / "pipe").unet.eval()
    assert type(loaded) is LayoutUNet2DConditionModel
    assert torch.equal(loaded.layout_scale, model.layout_scale)
    x, t, hidden = _inputs()
    with torch.no_grad():
        assert torch.allclose(loaded(x, t, hidden).sample, model(x, t, hidden).sample, atol=1e-6)


def test_other_prompt_lengths_are_refused(stock):
    x, t, hidden = _inputs(batch=1, tokens=77)
    with pytest.raises(ValueError, match="reads 16 token states, got 77"):
        add_layout(stock)(x, t, hidden)


def test_position_map_peaks_where_the_word_says():
    """The layout target: left peaks in the left half, top in the top half, none is empty."""
    assert position_map(None).abs().sum() == 0
    for word, axis, half in (("left", 1, 0), ("right", 1, 1), ("top", 0, 0), ("bottom", 0, 1)):
        peak = torch.nonzero(position_map(word) == position_map(word).max())[0]
        assert (peak[axis] >= 8) == bool(half), word
