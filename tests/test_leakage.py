"""Editability that sees leakage, and more than one concept.

`leakage` counts the samples of context-free prompts that copy a training image's (background,
position), over (minus) the base model's share with the class noun: the base model scores 0 by
construction, a model that copies every time scores 1 - base, and the concept-order study reads
the very same numbers. The claims about what trained weights do run on the shipped tiny world
(and, where the claim is that training is needed, fail on random weights); the wiring runs on
the random-weight world of tests/conftest.py.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import jsonschema
import numpy as np
import pytest
from test_plugin_support import make_project, run

from ptibench.case_options import add_case_options, add_grid_options, case_specs
from ptibench.concept import concept_schema, load_concept, shipped_concepts
from ptibench.evaluation import evaluate as evaluate_module
from ptibench.evaluation import leakage
from ptibench.evaluation.sampling import generate_rows
from ptibench.grids import parse_concepts
from ptibench.harness.fixture import without_concept
from ptibench.models.loading import load_bundle
from ptibench.models.metric_models import load_metric_models
from ptibench.models.registry import resolve_world
from ptibench.results.baselines import settings_key
from ptibench.run import runner
from ptibench.run.cache import inventory
from ptibench.run.curves import Tracker
from ptibench.run.runner import run_case
from ptibench.spec import DEFAULT_WORLD, CaseSpec, EvalConfig
from ptibench.training.loop import TrainingData
from ptibench.world.oracle import read
from ptibench.world.render import Attributes, render

pytest_plugins = ["pytester"]

QUICK = EvalConfig(samples_per_prompt=2, sample_steps=8)
ONE_ROOM = "red-square-one-room"
CONCEPT = load_concept("yellow-ring")
TRAINING = Attributes("ring", "yellow", "black", "left", "large")  # image 00's context
ELSEWHERE = Attributes("ring", "yellow", "green", "top", "large")  # no training context


def _setup(world_name_or_config, concept_name: str):
    world = resolve_world(world_name_or_config)
    bundle = load_bundle(world)
    concept = load_concept(concept_name)
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    return bundle, load_metric_models(world), concept, pixels, data


@pytest.fixture(scope="module")
def shipped_ring():
    return _setup(DEFAULT_WORLD, "yellow-ring")


@pytest.fixture(scope="module")
def random_ring(world):
    return _setup(world.name, "yellow-ring")


def _evaluate(setup, vector, config=QUICK, **kwargs):
    bundle, models, concept, pixels, data = setup
    return evaluate_module.evaluate(
        bundle, models, concept, pixels, data.latents, vector, config, oracle=True, **kwargs
    )


# --- the metric: the base model scores 0, a model that always copies 1 - base


def test_the_base_model_leaks_nothing_by_construction(shipped_ring):
    """The placeholder set to the class noun's embedding is the base model on the class-noun
    prompts: same copies, leakage 0 (yellow-ring's initializer is its class noun)."""
    bundle, _, concept, _, _ = shipped_ring
    assert concept.initializer == concept.class_noun
    result = _evaluate(shipped_ring, bundle.word_embedding(concept.class_noun))
    record = result.records["leakage"]
    samples = sum(len(row["copy"]) for row in record["prompts"])
    assert samples == QUICK.reconstruction_samples + 2 * QUICK.samples_per_prompt
    assert record["share"] == pytest.approx(record["base"]["share"], abs=1 / samples)
    assert abs(result.metrics["leakage"]) <= 1 / samples


def _copying_rows(context_free: set[str], copy: Attributes, other: Attributes):
    """A stand-in for the sampler: every sample of a context-free prompt shows `copy`, every
    other sample `other`."""
    rng = np.random.default_rng(0)
    copied, elsewhere = render(copy, rng), render(other, rng)

    def fake(bundle, embeds, counts, config, **kwargs):
        templates = list(evaluate_module.sample_plan(CONCEPT, config, True))
        return [
            np.stack([copied if t in context_free else elsewhere] * n)
            for t, n in zip(templates, counts, strict=True)
        ]

    return fake


def _base(share_of_first: float) -> leakage.Copies:
    counts = leakage.sample_counts(CONCEPT, QUICK)
    first = round(share_of_first * counts["a {}"])
    hits = [
        [i < first for i in range(n)] if t == "a {}" else [False] * n for t, n in counts.items()
    ]
    return leakage.Copies(tuple(counts), tuple(tuple(row) for row in hits))


@pytest.mark.parametrize(("copying", "expected"), [(True, "1 - base"), (False, "-base")])
def test_copying_every_context_free_sample_leaks_one_less_the_base(
    random_ring, monkeypatch, copying, expected
):
    free = set(leakage.CONTEXT_FREE_PROMPTS) if copying else set()
    monkeypatch.setattr(evaluate_module, "generate_rows", _copying_rows(free, TRAINING, ELSEWHERE))
    base = _base(0.5)
    assert 0 < base.share < 1
    result = _evaluate(random_ring, _vector(random_ring), base=base)
    record = result.records["leakage"]
    assert all(all(row["copy"]) == copying for row in record["prompts"])
    want = 1 - base.share if copying else -base.share
    assert result.metrics["leakage"] == pytest.approx(want), expected
    assert record["base"]["share"] == base.share


def _vector(setup):
    """Any vector: the sampler is replaced, the metrics read the images it returns."""
    return setup[0].word_embedding(setup[2].initializer)


def test_the_study_reads_the_case_metric_on_the_same_images(random_ring, monkeypatch):
    """One implementation: the concept-order study's point carries the case's leakage, and the
    copy share is what the study's probe reads in the context-free samples."""
    free = {"a {}", "a large {}"}  # "a small {}" shows another context
    monkeypatch.setattr(evaluate_module, "generate_rows", _copying_rows(free, TRAINING, ELSEWHERE))
    bundle, _, concept, _, _ = random_ring
    result = _evaluate(random_ring, _vector(random_ring), base=_base(0.25))
    spec = CaseSpec(stage="inversion", lr=1e-2, eval=QUICK)
    tracker = Tracker(spec, bundle, concept, lambda vector, unet: result, oracle=True)
    point = tracker.point(result, _vector(random_ring), None)
    probe = leakage.make_probe(concept)
    copies = [
        hit
        for t in leakage.CONTEXT_FREE_PROMPTS
        for hit in probe.copies(
            [read(image) for image in result.samples[concept.with_placeholder(t)]]
        )
    ]
    assert point["context_copy"] == pytest.approx(np.mean(copies))
    assert point["leakage"] == result.metrics["leakage"]
    assert point["leakage"] == pytest.approx(np.mean(copies) - point["context_copy_base"])
    counts = leakage.sample_counts(concept, QUICK)
    assert np.mean(copies) == pytest.approx(
        (counts["a {}"] + counts["a large {}"]) / sum(counts.values())
    )


# --- sampling: the same noise for a prompt's sample j in every case; the base computed once


def test_sample_j_of_a_prompt_starts_from_the_same_noise_whatever_else_is_sampled(world):
    """Sample j of a prompt has the seed eval.seed + j, whether the prompt is sampled 2 or 5
    times and whatever precedes it: outputs agree up to batch rounding (one grey level); other
    noise would differ by far more."""
    bundle = load_bundle(resolve_world(world.name))
    embeds = bundle.encode(["a ring", "a small ring"])
    config = EvalConfig(sample_steps=3)
    alone = generate_rows(bundle, embeds[1:], [2], config)[0]
    after = generate_rows(bundle, embeds, [5, 3], config)[1]
    assert np.abs(alone.astype(int) - after[:2]).max() <= 1
    shifted = generate_rows(bundle, embeds[1:], [1], EvalConfig(sample_steps=3, seed=1235))[0]
    assert np.abs(alone[1].astype(int) - shifted[0]).max() <= 1  # seed 1235 = sample 1
    assert np.abs(alone[0].astype(int) - shifted[0]).max() > 10  # other noise: far apart


def test_the_base_share_is_computed_once_per_world_concept_and_settings(
    world, tmp_path, monkeypatch
):
    calls = []
    real = runner.base_copies

    def counting(bundle, concept, config, probe):
        calls.append((concept.name, config))
        return real(bundle, concept, config, probe)

    monkeypatch.setattr(runner, "base_copies", counting)
    monkeypatch.setattr(leakage, "_BASE_CACHE", {})
    quick = EvalConfig(samples_per_prompt=1, sample_steps=2)
    spec = CaseSpec(stage="inversion", lr=1e-3, world=world.name, steps=2, eval=quick)
    results = [
        run_case(spec.with_(lr=lr), cache_dir=tmp_path, progress=False) for lr in (1e-3, 1e-1)
    ]
    assert len(calls) == 1 and len(list((tmp_path / "base").glob("*.json"))) == 1
    bases = [r.records["leakage"]["base"] for r in results]
    assert bases[0] == bases[1]
    assert results[0].records["seeds"] == results[1].records["seeds"]
    run_case(spec.with_(concept="green-star"), cache_dir=tmp_path, progress=False)
    run_case(spec.with_(eval=EvalConfig(samples_per_prompt=2, sample_steps=2)), cache_dir=tmp_path)
    assert [name for name, _ in calls] == ["yellow-ring", "green-star", "yellow-ring"]
    kept = [item for item in inventory(tmp_path) if item.kind == "base"]
    assert len(kept) == 3 and all(item.current for item in kept)


def test_a_spec_stored_before_the_reconstruction_factor_reads_as_one():
    """Numbers recorded when the reconstruction prompt had samples_per_prompt samples are not
    today's: such a baseline entry is keyed by factor 1 and no longer matches a case."""
    old = CaseSpec(stage="inversion", lr=1e-2).to_dict()
    del old["eval"]["reconstruction_factor"]
    stored = CaseSpec.from_dict(old)
    assert stored.eval.reconstruction_factor == 1 and stored.eval.reconstruction_samples == 8
    assert CaseSpec.from_dict(CaseSpec(stage="inversion", lr=1e-2).to_dict()).eval == EvalConfig()
    assert settings_key(stored) != settings_key(CaseSpec(stage="inversion", lr=1e-2))


# --- the trained world: the reading sees a copied context, the base model rarely copies


def _one_room_copies(world_config, monkeypatch) -> list[float]:
    """Per prompt, the share of the base model's samples copying the one-room context: first a
    prompt that names that context, then the plain context-free "a {}"."""
    bundle, _, concept, _, _ = _setup(world_config, ONE_ROOM)
    monkeypatch.setattr(
        leakage, "CONTEXT_FREE_PROMPTS", ("a red {} on a yellow background at the right", "a {}")
    )
    monkeypatch.setattr(leakage, "_BASE_CACHE", {})
    config = EvalConfig(samples_per_prompt=8, sample_steps=20, reconstruction_factor=1)
    copies = leakage.base_copies(bundle, concept, config, leakage.make_probe(concept))
    return [float(np.mean(row)) for row in copies.hits]


def copies_when_named_and_rarely_otherwise(shares: list[float]) -> bool:
    """Named: the trained world draws the room (shipped: 8/8; background 1.00, position 0.89 on
    held-out prompts); unnamed: a yellow background at the right or center is 1 draw in 15
    (shipped: 0/8). Random weights draw neither on purpose."""
    named, plain = shares
    return named >= 0.6 and plain <= 0.3


def test_on_the_trained_world_the_reading_sees_a_copied_context(monkeypatch):
    shares = _one_room_copies(DEFAULT_WORLD, monkeypatch)
    assert copies_when_named_and_rarely_otherwise(shares), shares


def test_random_weights_do_not_meet_the_claim(world, monkeypatch):
    shares = _one_room_copies(world.name, monkeypatch)
    assert not copies_when_named_and_rarely_otherwise(shares), shares


# --- the one-room concept


def test_the_one_room_concept_loads_validates_and_shares_one_context():
    concept = load_concept(ONE_ROOM)
    data = json.loads((concept.folder / "concept.json").read_text())
    jsonschema.validate(data, concept_schema())
    readings = [read(image.pixels) for image in concept.images]
    assert [(r.shape, r.colour) for r in readings] == [("square", "red")] * 5
    assert {r.background for r in readings} == {"yellow"}
    position, count = Counter(r.position for r in readings).most_common(1)[0]
    assert (position, count) == ("right", 4)
    assert [(r.background, r.position) for r in readings] == [
        (image.meta["background"], image.meta["position"]) for image in concept.images
    ]
    probe = leakage.make_probe(concept)
    assert probe.contexts == {("yellow", "right"), ("yellow", "center")}
    asked = [e.expect for e in concept.edit_prompts]
    assert len(asked) >= 8 and all(asked)
    assert not any(e.get("background") == "yellow" or e.get("position") == "right" for e in asked)


# --- --concept: a list or all


def _options(*argv: str):
    parser = argparse.ArgumentParser()
    add_grid_options(parser.add_argument, lr_grid="quick", stage="inversion")
    add_case_options(parser.add_argument)
    return parser.parse_args(list(argv))


def test_concept_all_builds_cases_for_every_concept():
    shipped = shipped_concepts()
    assert {"yellow-ring", "green-star", ONE_ROOM} <= set(shipped)
    options = _options("--concept", "all")
    specs = case_specs(options, options.lr_grid, options.stage, [0])
    assert [s.concept for s in specs] == [c for c in shipped for _ in range(3)]
    assert {(s.concept, s.lr) for s in specs} == {
        (c, lr) for c in shipped for lr in (1e-3, 3e-2, 1)
    }
    listed = _options("--concept", f"{ONE_ROOM}, yellow-ring")
    assert listed.concept == (ONE_ROOM, "yellow-ring")
    assert case_specs(_options(), options.lr_grid, ("inversion",), [0])[0].concept == "yellow-ring"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("yellow-ring,,green-star", "an empty concept name"),
        ("all,yellow-ring", "'all' stands alone"),
        ("yellow-ring,yellow-ring", "'yellow-ring' is repeated"),
    ],
)
def test_bad_concept_lists_are_refused(text, named):
    with pytest.raises(argparse.ArgumentTypeError, match=named):
        parse_concepts(text)


def test_concept_all_in_pytest_names_each_case_by_its_concept(pytester):
    make_project(pytester)
    result = run(
        pytester,
        "--collect-only",
        "-q",
        "--lr-grid",
        "1e-2",
        "--stage",
        "inversion",
        "--concept",
        "all",
    )
    ids = sorted(line.split("[")[1].rstrip("]") for line in result.stdout.lines if "::" in line)
    assert ids == sorted(f"{c}-inversion-lr=1e-02" for c in shipped_concepts())


def test_the_update_hint_drops_the_concept_list():
    args = ["benchmark/", "--concept", "all", "-x", "--concept=yellow-ring,green-star", "-n", "2"]
    assert without_concept(args) == ["benchmark/", "-x", "-n", "2"]


@pytest.mark.parametrize("value", ["nope", "yellow-ring,nope"])
def test_an_unknown_concept_is_one_usage_error_line(pytester, value):
    make_project(pytester)
    result = run(pytester, "--lr-grid", "quick", "--concept", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1 and "--concept: unknown concept 'nope'" in errors[0], (
        result.stderr.str()
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
