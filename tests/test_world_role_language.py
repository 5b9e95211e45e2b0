"""The role-word caption language (`world.role_language`) and the recipe's `roles` part.

Every caption must stay clear of all six held-out phrasing sets (else the rewording figures would
measure training phrasings), name the object's colour nearer its shape than the background's,
fit the text encoder's context, and use as noise words only words no caption language and no
held-out set uses. The `roles` part must train on those captions and record itself."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from caption_draws import draw_captions, template_pattern
from transformers import CLIPTokenizer

from ptibench.assets import tiny_world_path
from ptibench.world import quality
from ptibench.world.__main__ import DEFAULT_PARTS, PARTS, main
from ptibench.world.dataset import render_set
from ptibench.world.packaging import load_pipeline
from ptibench.world.recipe import TrainConfig
from ptibench.world.render import Attributes
from ptibench.world.role_language import (
    HELD_OUT,
    RoleLanguage,
    language_words,
    object_colour_is_nearest,
)
from ptibench.world.train_language import train_roles

DRAWS = 10_000


@pytest.fixture(scope="module")
def language():
    tokenizer = CLIPTokenizer.from_pretrained(tiny_world_path() / "pipeline" / "tokenizer")
    return RoleLanguage(tokenizer)


@pytest.fixture(scope="module")
def drawn(language):
    return draw_captions(language, DRAWS)


ALL_PHRASINGS = [t for phrasings in quality.HELD_OUT_SETS.values() for t in phrasings]


def test_no_caption_uses_a_word_or_phrasing_of_any_held_out_set(drawn):
    held = [template_pattern(t) for t in ALL_PHRASINGS]
    for _, text in drawn:
        assert not any(p.search(text) for p in (*HELD_OUT, *held)), text


@pytest.mark.parametrize("template", ALL_PHRASINGS)
def test_every_held_out_phrasing_is_caught_by_the_constructions(template):
    """The ban list is not vacuous: it flags every prompt of every set."""
    for attrs in quality.held_out_prompts(16):
        prompt = quality.phrased_prompt(attrs, template)
        assert any(p.search(prompt) for p in HELD_OUT), prompt


def test_the_object_colour_is_the_one_nearest_its_shape(drawn):
    both = [
        (attrs, text)
        for attrs, text in drawn
        if attrs.colour != attrs.background
        and {attrs.colour, attrs.background} <= set(re.findall(r"[a-z]+", text))
    ]
    assert len(both) > 0.3 * DRAWS
    assert all(object_colour_is_nearest(text, attrs) for attrs, text in both)


def test_the_cue_counts_words_on_either_side():
    ring = Attributes("ring", "yellow", "black", "left", "large")
    assert object_colour_is_nearest("black canvas showing a large yellow ring", ring)
    assert object_colour_is_nearest("ring, yellow and large, black ground", ring)
    assert not object_colour_is_nearest("a ring on black, yellow all around", ring)
    assert object_colour_is_nearest("a yellow ring", ring)


def test_noise_words_are_unknown_to_every_language_and_held_out_set(language, drawn):
    pool = set(language.pool)
    assert len(pool) > 10_000
    assert not pool & language_words()
    assert not any(p.search(word) for word in pool for p in HELD_OUT)
    noisy = np.mean([bool(set(text.split()) & pool) for _, text in drawn])
    assert 0.3 < noisy < 0.8


def test_captions_fit_the_context(language, drawn):
    lengths = [len(language.tokenizer(text).input_ids) for _, text in drawn]
    assert max(lengths) <= language.tokenizer.model_max_length == 16


def test_same_rng_same_captions(language):
    attrs = render_set(1, 0).attributes[0]
    first = [language(attrs, np.random.default_rng(3)) for _ in range(5)]
    second = [language(attrs, np.random.default_rng(3)) for _ in range(5)]
    assert first == second and len(set(first)) == 1


def test_roles_is_a_part_but_not_a_default_one(capsys):
    """The shipped weights have not had it: the default recipe must not run it."""
    assert PARTS["roles"] is train_roles
    assert "roles" not in DEFAULT_PARTS.split(",")
    assert main(["train", "--out", "/nonexistent", "--part", "roles,nope"]) == 2
    assert "['nope']" in capsys.readouterr().err


TINY = TrainConfig(images=64, t2i_batch=4, roles_steps=2, language_fit_captions=200)


def test_the_roles_part_trains_the_encoder_and_records_itself(tmp_path):
    shutil.copytree(tiny_world_path() / "pipeline", tmp_path / "pipeline")
    torch.set_num_threads(1)
    record = train_roles(tmp_path, TINY)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == {"roles": record} and record["steps"] == TINY.roles_steps
    pipe = load_pipeline(tmp_path / "pipeline")
    shipped = load_pipeline(tiny_world_path() / "pipeline")
    trained = dict(pipe.text_encoder.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in shipped.text_encoder.named_parameters())
