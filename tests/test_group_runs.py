"""Group runs at the cache level (run/pretrain.py): the stage-2 LoRA cases of a grid train in one
stacked run, leave slots the runner rebuilds bitwise, agree with cases trained alone, fall back
to training alone for an adapter the stacked layer does not reproduce, and concurrent workers
share the groups out instead of waiting on each other."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from ptibench.concept import load_concept
from ptibench.harness.session import SPEC_FIXTURE, worker_friendly_order
from ptibench.models.artifacts import save_lora
from ptibench.models.loading import load_bundle, world_version
from ptibench.run.cache import ResultCache
from ptibench.run.pretrain import (
    _grid_lock,
    has_trained,
    load_trained,
    pretrain,
    trainable_groups,
)
from ptibench.run.runner import run_cases
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.batched import BATCH_GRID_ENV
from ptibench.training.finetune import get_pivot, pivot_spec
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import PTI, get_method, register_method
from ptibench.training.stacked_lora import train_stacked

QUICK = EvalConfig(samples_per_prompt=1, sample_steps=2)
LRS = (1e-3, 1e-2)


def lora_specs(world, seed=0, lrs=LRS, method="pti"):
    return [
        CaseSpec(
            stage="finetune", lr=lr, seed=seed, world=world.name, steps=4, eval=QUICK, method=method
        )
        for lr in lrs
    ]


def adapter(result) -> dict[str, torch.Tensor]:
    return load_file(result.artifacts["lora"])


def test_a_lora_grid_trains_stacked_and_matches_cases_trained_alone(world, tmp_path, monkeypatch):
    specs = lora_specs(world)
    together = run_cases(specs, cache_dir=tmp_path / "grouped", progress=False)
    assert all(r.timings["batched_train_s"] > 0 for r in together), "trained in the stacked run"
    assert sum(r.timings.get("pivot_s", 0.0) for r in together) > 0, "the pivot's time is kept"

    # the slot's adapter, rebuilt by the runner, is bitwise what the stacked run trained
    bundle, concept = load_bundle(world), load_concept(specs[0].concept)
    reference, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, reference)
    method = get_method("pti")
    cache = ResultCache(tmp_path / "grouped")
    version = world_version(world)
    pivot, trained = get_pivot(
        StageContext(specs[0], concept, bundle, data),
        method,
        cache.pivot_path(pivot_spec(specs[0]), version, method),
    )
    assert not trained, "the group run left the pivot in the cache"
    with torch.random.fork_rng(devices=[]):
        direct = train_stacked(bundle, concept, data, specs, method, pivot)
    for result, outcome in zip(together, direct, strict=True):
        exported = adapter(result)
        folder = tmp_path / f"direct-{result.spec.lr}"
        folder.mkdir()
        expected = load_file(str(save_lora(outcome.unet, folder)))
        assert exported.keys() == expected.keys()
        for name, weight in expected.items():
            assert torch.equal(exported[name], weight), name
        assert result.metrics["distance"] == outcome.metrics["distance"]

    monkeypatch.setenv(BATCH_GRID_ENV, "0")
    alone = run_cases(specs, cache_dir=tmp_path / "alone", progress=False)
    for stacked, single in zip(together, alone, strict=True):
        assert single.timings["batched_train_s"] == 0.0
        theirs = adapter(single)
        for name, weight in adapter(stacked).items():
            torch.testing.assert_close(weight, theirs[name], rtol=1e-4, atol=5e-2 * stacked.spec.lr)
        assert stacked.metrics["final_loss"] == pytest.approx(single.metrics["final_loss"], 1e-4)


def test_slots_mark_lora_and_are_read_back_without_a_bundle(world, tmp_path):
    specs = lora_specs(world)
    assert pretrain(specs, cache_dir=tmp_path) == 2
    cache = ResultCache(tmp_path)
    method, version = get_method("pti"), world_version(world)
    for spec in specs:
        trained = load_trained(cache, cache.entry(spec, version, method))
        assert trained.outcome.lora and trained.outcome.unet is None
        assert trained.train_s > 0
    assert pretrain(specs, cache_dir=tmp_path) == 0, "a slot is not trained twice"


class DoraPTI(PTI):
    """A method whose adapter the stacked layer does not reproduce (DoRA)."""

    name = "pti-dora-test"

    def lora_config(self):
        config = super().lora_config()
        config.use_dora = True
        return config


def test_an_adapter_the_stacked_layer_cannot_reproduce_trains_case_by_case(world, tmp_path):
    register_method(DoraPTI)
    specs = lora_specs(world, method=DoraPTI.name)
    assert len(trainable_groups(specs)) == 1
    assert pretrain(specs, cache_dir=tmp_path) == 0
    results = run_cases(specs, cache_dir=tmp_path, progress=False)
    assert [r.status for r in results] == ["ok", "ok"]
    assert all(r.timings["batched_train_s"] == 0.0 for r in results)


def test_a_worker_trains_the_groups_nobody_holds_and_waits_only_for_its_own(world, tmp_path):
    stage2 = lora_specs(world)
    stage1 = [s.with_(stage="inversion") for s in stage2]
    other_seed = lora_specs(world, seed=1)
    specs = [*stage1, *stage2, *other_seed]
    cache = ResultCache(tmp_path)
    method, version = get_method("pti"), world_version(world)
    held = _grid_lock(cache, stage1, version, method)
    held.acquire()
    try:
        assert pretrain(specs, cache_dir=tmp_path, need=stage2[0]) == 4
    finally:
        held.release()
    slots = {s: has_trained(cache, cache.entry(s, version, method)) for s in specs}
    assert [slots[s] for s in stage1] == [False, False], "another process's group is left to it"
    assert all(slots[s] for s in [*stage2, *other_seed])
    assert pretrain(specs, cache_dir=tmp_path) == 2, "without `need`, every group is trained"


def test_the_xdist_order_starts_every_group_then_fills_with_stage1_evaluations(world):
    stage1 = [s.with_(stage="inversion") for s in lora_specs(world, lrs=(1e-3, 1e-2, 1e-1))]
    stage2 = lora_specs(world, lrs=(1e-4, 1e-3, 1e-2))
    full = stage2[0].with_(stage="finetune-full")
    items = [
        SimpleNamespace(callspec=SimpleNamespace(params={SPEC_FIXTURE: spec}))
        for spec in [*stage2, full, *stage1]
    ]
    order = [item.callspec.params[SPEC_FIXTURE] for item in worker_friendly_order(items)]
    assert order == [*stage2[:2], *stage1[:2], full, stage1[2], stage2[2]]
