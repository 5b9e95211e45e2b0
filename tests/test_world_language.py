"""The caption language (`world.language`) and the `language` phase that trains on it.

The language must never word a caption in a held-out construction (else the rewording bars would
measure training phrasings), must fit the text encoder's context, and must name an attribute only
with that attribute's own word. The phase must leave a layout map that reads the last token state
only, be deterministic by seed, and leave a folder that loads and samples."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from caption_draws import draw_captions, template_pattern
from safetensors.torch import load_file
from transformers import CLIPTokenizer

from ptibench.assets import tiny_world_path
from ptibench.world import quality
from ptibench.world.dataset import render_set
from ptibench.world.language import CaptionLanguage
from ptibench.world.packaging import load_pipeline
from ptibench.world.recipe import TrainConfig
from ptibench.world.render import COLOURS, POSITIONS, SHAPES, SIZES
from ptibench.world.train_language import train_language

DRAWS = 20_000


@pytest.fixture(scope="module")
def language():
    tokenizer = CLIPTokenizer.from_pretrained(tiny_world_path() / "pipeline" / "tokenizer")
    return CaptionLanguage(tokenizer)


@pytest.fixture(scope="module")
def drawn(language):
    """DRAWS captions of training images' attributes, with those attributes."""
    return draw_captions(language, DRAWS)


def test_no_caption_uses_a_held_out_construction(drawn):
    banned = [re.compile(c) for c in quality.HELD_OUT_CONSTRUCTIONS]
    templates = quality.HELD_OUT_PHRASINGS + quality.CONFIRMATION_PHRASINGS
    held = [template_pattern(t) for t in templates]
    for _, text in drawn:
        assert not any(p.search(text) for p in banned + held), text


@pytest.mark.parametrize("template", quality.HELD_OUT_PHRASINGS + quality.CONFIRMATION_PHRASINGS)
def test_every_held_out_phrasing_is_caught_by_the_constructions(template):
    """The construction list is not vacuous: it flags every held-out prompt."""
    banned = [re.compile(c) for c in quality.HELD_OUT_CONSTRUCTIONS]
    for attrs in quality.held_out_prompts(16):
        prompt = quality.phrased_prompt(attrs, template)
        assert any(p.search(prompt) for p in banned), prompt


def test_captions_fit_the_context(language, drawn):
    lengths = [len(language.tokenizer(text).input_ids) for _, text in drawn]
    assert max(lengths) <= language.tokenizer.model_max_length == 16


def test_attribute_words_are_the_attributes_own(drawn):
    """A word of the vocabulary in a caption is the drawn attribute's (colour words may be the
    object's or the background's); the shape is always named."""
    for attrs, text in drawn:
        words = set(re.findall(r"\w+", text))
        assert attrs.shape in words
        assert words & set(SHAPES) == {attrs.shape}
        assert words & set(SIZES) <= {attrs.size}
        assert words & set(POSITIONS) <= {attrs.position}
        assert words & set(COLOURS) <= {attrs.colour, attrs.background}


def test_many_sentence_shapes(drawn):
    """Thousands of distinct sentence shapes (the attribute words replaced by their slot)."""
    shapes = set()
    for attrs, text in drawn:
        slots = {
            attrs.shape: "S",
            attrs.size: "Z",
            attrs.position: "P",
            attrs.background: "B",
            attrs.colour: "C",
        }
        shapes.add(" ".join(slots.get(w, w) for w in re.findall(r"\w+|[^\w\s]", text)))
    assert len(shapes) > 2000


def test_attribute_rates_follow_the_recipe(drawn):
    """Position named at about the recipe's 0.8 (a little less: captions too long for the context
    are drawn again, and those name more)."""
    named = np.mean([bool(re.search(rf"\b{a.position}\b", t)) for a, t in drawn])
    assert 0.74 < named < 0.83


def test_same_rng_same_captions(language):
    attrs = render_set(1, 0).attributes[0]
    first = [language(attrs, np.random.default_rng(3)) for _ in range(5)]
    second = [language(attrs, np.random.default_rng(3)) for _ in range(5)]
    rng = np.random.default_rng(3)
    other = [language(attrs, rng) for _ in range(5)]
    assert first == second and len(set(first)) == 1
    assert len(set(other)) > 1


TINY = TrainConfig(images=64, t2i_batch=4, language_steps=2, language_fit_captions=200)


def _phase(folder):
    shutil.copytree(tiny_world_path() / "pipeline", folder / "pipeline")
    torch.set_num_threads(1)
    record = train_language(folder, TINY)
    return folder, record


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    return [_phase(tmp_path_factory.mktemp(f"language{i}")) for i in range(2)]


def test_the_map_reads_the_last_state_only(twice):
    folder, _ = twice[0]
    weights = load_file(str(folder / "pipeline/unet/diffusion_pytorch_model.safetensors"))
    layout = weights["layout.weight"].float()
    width = layout.shape[1] // 16
    assert torch.count_nonzero(layout[:, :-width]) == 0
    assert torch.count_nonzero(layout[:, -width:]) > 0.9 * layout[:, -width:].numel()
    shipped = load_file(
        str(tiny_world_path() / "pipeline/unet/diffusion_pytorch_model.safetensors")
    )
    assert not torch.equal(weights["layout.weight"], shipped["layout.weight"])


def test_same_seed_same_world(twice):
    (first, _), (second, _) = twice
    for name in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        a, b = (load_file(str(f / "pipeline" / name)) for f in (first, second))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_text_encoder_trains(twice):
    folder, _ = twice[0]
    name = "pipeline/text_encoder/model.safetensors"
    trained, shipped = load_file(str(folder / name)), load_file(str(tiny_world_path() / name))
    assert any(not torch.equal(trained[k], shipped[k]) for k in trained)


def test_the_folder_loads_samples_and_records_the_phase(twice):
    folder, record = twice[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["language"] == record and record["steps"] == TINY.language_steps
    pipe = load_pipeline(folder / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a red ring over a blue background",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()


def test_the_phase_draws_its_captions_from_the_language_it_is_given(tmp_path):
    """A probe runs the phase on a variant language (`language_class`); every caption, the
    map's fit and the training batches, must come from it."""
    drawn: list[str] = []

    class Recording(CaptionLanguage):
        def __call__(self, attrs, rng):
            drawn.append(super().__call__(attrs, rng))
            return drawn[-1]

    shutil.copytree(tiny_world_path() / "pipeline", tmp_path / "pipeline")
    torch.set_num_threads(1)
    train_language(tmp_path, TINY, language_class=Recording)
    batches = TINY.language_steps * TINY.t2i_batch
    # the map's fit draws its captions, then each batch draws all but its CFG-dropped ones
    assert TINY.language_fit_captions < len(drawn) <= TINY.language_fit_captions + batches


def test_the_phase_adds_the_extra_term_to_every_batch(tmp_path):
    """A probe's auxiliary objective (`extra`) sees each batch's predictions and is trained on:
    its term reaches the recorded loss."""
    seen: list[tuple[int, int]] = []

    def extra(idx, texts, noisy, t, pred):
        seen.append((len(idx), len(texts)))
        assert pred.shape == noisy.shape and len(t) == len(idx)
        return pred.sum() * 0.0 + 100.0

    shutil.copytree(tiny_world_path() / "pipeline", tmp_path / "pipeline")
    torch.set_num_threads(1)
    record = train_language(tmp_path, TINY, extra=extra)
    assert seen == [(TINY.t2i_batch, TINY.t2i_batch)] * TINY.language_steps
    assert record["loss_last_100"] > 100.0
