"""The result cache must never hand one case's numbers to another: every field of a CaseSpec
changes its cache entry, and an entry whose stored spec is not the one asked for counts as absent.
"""

from __future__ import annotations

import dataclasses

import pytest

from ptibench.run import cache as cache_module
from ptibench.spec import CaseResult, CaseSpec, EvalConfig
from ptibench.training.methods import get_method

BASE = CaseSpec(stage="finetune", lr=1e-3, pivot_lr=5e-3)

# one changed value per field of CaseSpec (eval: per field of EvalConfig)
CHANGES = {
    "stage": {"stage": "finetune-full"},
    "lr": {"lr": 1.0001e-3},
    "world": {"world": "other-world"},
    "concept": {"concept": "green-star"},
    "method": {"method": "pti-normreg"},
    "steps": {"steps": 999},
    "seed": {"seed": 1},
    "batch_size": {"batch_size": 2},
    "pivot_lr": {"pivot_lr": 1e-2},
    "pivot_lr unset": {"pivot_lr": None},
    "eval_every": {"eval_every": 100},
    "eval.samples_per_prompt": {"eval": EvalConfig(samples_per_prompt=4)},
    "eval.sample_steps": {"eval": EvalConfig(sample_steps=10)},
    "eval.guidance_scale": {"eval": EvalConfig(guidance_scale=7.5)},
    "eval.seed": {"eval": EvalConfig(seed=1)},
    "eval.reconstruction_factor": {"eval": EvalConfig(reconstruction_factor=1)},
}


def test_the_table_covers_every_spec_field():
    """A new CaseSpec or EvalConfig field must be added above (and so be shown to key)."""
    spec_fields = {f.name for f in dataclasses.fields(CaseSpec)} - {"eval"}
    eval_fields = {f"eval.{f.name}" for f in dataclasses.fields(EvalConfig)}
    covered = {name.split(" ")[0] for name in CHANGES}
    assert spec_fields | eval_fields <= covered


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_field_changes_the_cache_entry(name, tmp_path):
    cache, method = cache_module.ResultCache(tmp_path), get_method("pti")
    changed = BASE.with_(**CHANGES[name])
    assert changed != BASE
    assert changed.key() != BASE.key()
    assert cache.entry(changed, "w0", method).name != cache.entry(BASE, "w0", method).name


def test_world_version_and_method_change_the_entry(tmp_path):
    cache = cache_module.ResultCache(tmp_path)
    pti, normreg = get_method("pti"), get_method("pti-normreg")
    assert cache.entry(BASE, "w0", pti).name != cache.entry(BASE, "w1", pti).name
    assert cache.entry(BASE, "w0", pti).name != cache.entry(BASE, "w0", normreg).name


def test_same_spec_same_entry(tmp_path):
    cache, method = cache_module.ResultCache(tmp_path), get_method("pti")
    again = CaseSpec.from_dict(BASE.to_dict())
    assert cache.entry(again, "w0", method).name == cache.entry(BASE, "w0", method).name


def _store(cache, entry, spec):
    result = CaseResult(spec=spec, status="ok", metrics={"lpips": 0.25})
    return cache.store(entry, result, cache.staging(entry))


def test_an_entry_holding_another_spec_counts_as_absent(tmp_path):
    """What a key collision (or a key that leaves a field out) would produce: the folder of the
    asked-for spec holds another spec's result. It must not be returned."""
    cache, method = cache_module.ResultCache(tmp_path), get_method("pti")
    asked = cache.entry(BASE, "w0", method)
    _store(cache, asked, BASE.with_(seed=7))
    assert (asked.path / cache_module.RESULT_FILE).is_file()
    assert cache.load(asked) is None
    # the right spec, stored over it, is read back
    stored = _store(cache, asked, BASE)
    assert stored.spec == BASE
    loaded = cache.load(asked)
    assert loaded is not None and loaded.spec == BASE and loaded.from_cache


@pytest.mark.parametrize("name", ["seed", "eval.seed", "lr", "steps"])
def test_a_stored_spec_differing_in_one_field_is_refused(name, tmp_path):
    cache, method = cache_module.ResultCache(tmp_path), get_method("pti")
    asked = cache.entry(BASE, "w0", method)
    _store(cache, asked, BASE.with_(**CHANGES[name]))
    assert cache.load(asked) is None
