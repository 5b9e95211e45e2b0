"""The batched grid (training/batched.py) reproduces K sequential stage-1 runs over (lr, seed)
pairs: the same final embeddings (float tolerance), losses and diverged step, each seed with its
own data order and noise; a seed's batch is the same computation whichever other seeds run
beside it; and a batched-trained case comes out of the runner in the same form as a
sequentially trained one."""

from __future__ import annotations

import pytest
import torch

from ptibench.concept import load_concept
from ptibench.models.loading import load_bundle, world_version
from ptibench.models.random_weights import write_random_world
from ptibench.run.cache import ResultCache
from ptibench.run.pretrain import load_trained, pretrain
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.batched import batch_group_key, batchable, train_batched
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import get_method

# per method: steps and lrs; the last lr explodes (the vector's norm passes the guard)
GRIDS = {"pti": (12, (1e-2, 1.0, 100.0)), "pti-normreg": (8, (1e-1, 1e3))}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    world = write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")
    bundle = load_bundle(world)
    concept = load_concept("yellow-ring")
    reference, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, reference)
    return world, bundle, concept, data


@pytest.mark.parametrize("method_name", sorted(GRIDS))
def test_batched_grid_matches_sequential_runs(setup, method_name):
    world, bundle, concept, data = setup
    method = get_method(method_name)
    steps, lrs = GRIDS[method_name]
    specs = [
        CaseSpec(
            stage="inversion", lr=lr, seed=seed, world=world.name, method=method_name, steps=steps
        )
        for seed in (0, 1)
        for lr in lrs
    ]
    sequential = [method.train("inversion", StageContext(s, concept, bundle, data)) for s in specs]
    batched = train_batched(bundle, concept, data, specs, method)
    assert [o.status for o in sequential][-1] == "diverged"
    # the seeds draw their own batches: same lr, other seed, other training
    assert not torch.equal(sequential[0].vector, sequential[len(lrs)].vector)
    for alone, together in zip(sequential, batched, strict=True):
        assert together.status == alone.status
        assert together.diverged_at == alone.diverged_at
        assert len(together.losses) == len(alone.losses)
        torch.testing.assert_close(together.losses, alone.losses, rtol=1e-4, atol=1e-6)
        if alone.status == "ok":
            scale = float(alone.vector.norm())
            torch.testing.assert_close(together.vector, alone.vector, rtol=1e-4, atol=1e-5 * scale)
            assert together.metrics.keys() == alone.metrics.keys()
            # abs 1e-5: the vectors agree to 1e-5 of their norm, so a cosine near 0 can too
            for name, value in alone.metrics.items():
                assert together.metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_a_batch_holds_one_seed():
    spec = CaseSpec(stage="inversion", lr=1e-2)
    assert batch_group_key(spec) == batch_group_key(spec.with_(lr=1.0))
    assert batch_group_key(spec) != batch_group_key(spec.with_(seed=1))


def test_a_seeds_cases_train_bitwise_alike_beside_other_seeds(setup, tmp_path):
    """What makes seed 0 of a `--seeds 3` recording reproducible by a one-seed run."""
    world = setup[0]
    specs = [
        CaseSpec(stage="inversion", lr=lr, seed=seed, world=world.name, steps=6)
        for seed in (0, 1)
        for lr in (1e-2, 1e-1)
    ]
    assert pretrain(specs, cache_dir=tmp_path / "both") == 4
    assert pretrain(specs[:2], cache_dir=tmp_path / "one") == 2
    version, method = world_version(world), get_method("pti")
    for spec in specs[:2]:
        vectors = []
        for name in ("both", "one"):
            cache = ResultCache(tmp_path / name)
            trained = load_trained(cache, cache.entry(spec, version, method))
            vectors.append(trained.outcome.vector)
        assert torch.equal(*vectors), spec.lr


def test_only_default_loop_inversion_cases_are_batchable(setup):
    world = setup[0]
    spec = CaseSpec(stage="inversion", lr=1e-2, world=world.name)
    method = get_method("pti")
    assert batchable(spec, method)
    assert not batchable(spec.with_(stage="finetune"), method)
    assert not batchable(spec.with_(eval_every=10), method)

    class OwnLoop(type(method)):
        name = "own-loop"

        def train(self, stage, ctx):  # pragma: no cover - never called
            raise AssertionError

    assert not batchable(spec, OwnLoop())


def test_run_cases_trains_the_grid_batched_with_results_in_the_same_form(setup, tmp_path):
    from ptibench.run.runner import run_case, run_cases

    world = setup[0]
    quick = EvalConfig(samples_per_prompt=1, sample_steps=2)
    specs = [
        CaseSpec(stage="inversion", lr=lr, world=world.name, steps=4, eval=quick)
        for lr in (1e-2, 1e-1, 1e3)  # 1e3: Adam's first step already passes the guard
    ]
    alone = run_case(specs[0], cache_dir=tmp_path / "alone", progress=False)
    grid = run_cases(specs, cache_dir=tmp_path / "grid", progress=False)
    assert not (tmp_path / "grid" / "trained").exists() or not any(
        (tmp_path / "grid" / "trained").iterdir()
    )
    first = grid[0]
    assert first.status == alone.status == "ok"
    assert first.metrics.keys() == alone.metrics.keys()
    assert first.artifacts.keys() == alone.artifacts.keys()
    assert first.timings.keys() == alone.timings.keys()
    assert first.environment.keys() == alone.environment.keys()
    for name, value in alone.metrics.items():
        assert first.metrics[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    assert grid[2].status == "diverged" and grid[2].diverged_at is not None
    # cached now: nothing left to train, and run_case reads the same results back
    assert pretrain(specs, cache_dir=tmp_path / "grid") == 0
    again = run_case(specs[1], cache_dir=tmp_path / "grid", progress=False)
    assert again.from_cache and again.metrics == grid[1].metrics
