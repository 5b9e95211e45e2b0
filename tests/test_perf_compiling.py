"""The opt-in compiled training UNet (ptibench.training.compiling): when it is on, what it returns,
a compiled stage-1 run reproduces the eager one to float rounding, and the --compile flag.

The reproduction test compiles for real (inductor builds C++ kernels: about 100 s on a cold
cache on 2 cores, seconds on a warm one)."""

from __future__ import annotations

import pytest
import torch
from test_plugin_support import make_project, run

from ptibench.concept import load_concept
from ptibench.models.loading import load_bundle
from ptibench.models.random_weights import write_random_world
from ptibench.spec import CaseSpec
from ptibench.training import compiling
from ptibench.training.compiling import COMPILE_ENV, enabled, training_unet
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import get_method

pytest_plugins = ["pytester"]


class Config:
    compile = False


class Bundle:
    config = Config()


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_the_environment_switch(monkeypatch, value, expected):
    monkeypatch.setenv(COMPILE_ENV, value)
    assert enabled(Config()) is expected


def test_a_world_config_can_turn_it_on(monkeypatch):
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    on = Config()
    on.compile = True
    assert enabled(on) and not enabled(Config()) and not enabled(None)


def test_off_returns_the_module_and_on_wraps_it(monkeypatch):
    module = torch.nn.Linear(2, 2)
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    assert training_unet(Bundle(), module) is module
    monkeypatch.setenv(COMPILE_ENV, "1")
    wrapped = training_unet(Bundle(), module)
    assert wrapped is not module and wrapped._orig_mod is module
    module.compile()  # compiled in place (the CUDA path): not wrapped a second time
    assert training_unet(Bundle(), module) is module


def test_compiled_stage1_reproduces_the_eager_run(tmp_path_factory, monkeypatch):
    from torch._dynamo.utils import counters

    world = write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")
    bundle = load_bundle(world)
    concept = load_concept("yellow-ring")
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    spec = CaseSpec(stage="inversion", lr=1e-2, world=world.name, steps=3)
    method = get_method("pti")

    def train(switch: str):
        monkeypatch.setenv(COMPILE_ENV, switch)
        return method.train("inversion", StageContext(spec, concept, bundle, data))

    eager = train("0")
    torch._dynamo.reset()  # a graph compiled earlier in this process must not hide the compile
    graphs = counters["stats"]["unique_graphs"]
    compiled = train("1")
    assert counters["stats"]["unique_graphs"] > graphs, "nothing was compiled"
    assert compiled.status == eager.status == "ok"
    torch.testing.assert_close(compiled.losses, eager.losses, rtol=1e-4, atol=1e-6)
    scale = float(eager.vector.norm())
    torch.testing.assert_close(compiled.vector, eager.vector, rtol=1e-4, atol=1e-5 * scale)
    assert not torch.equal(compiled.vector, eager.initial)


def test_the_pytest_flag_sets_the_switch(pytester, monkeypatch):
    monkeypatch.setenv(COMPILE_ENV, "0")  # restored after the test: the in-process run sets it
    make_project(pytester)
    pytester.makepyfile(
        test_switch=f"""
        import os

        def test_switch():
            assert os.environ.get({COMPILE_ENV!r}) == "1"
        """
    )
    assert run(pytester, "--compile", "test_switch.py").ret == 0
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert run(pytester, "test_switch.py").ret == 1


class _World:
    name, dtype, compile = "w", "float32", False


class _Method:
    name, version = "pti", "1"


def _recorded(monkeypatch, device: str) -> dict:
    """What a case's results record as its environment, for a stand-in world and method."""
    from ptibench.run.runner import environment

    monkeypatch.setattr("ptibench.run.runner.method_version", lambda method: "k")
    return environment(CaseSpec(stage="inversion", lr=1e-2), _World(), "v", _Method(), device)


def test_results_record_whether_training_was_compiled(monkeypatch):
    monkeypatch.setenv(COMPILE_ENV, "1")
    assert _recorded(monkeypatch, "cpu")["compiled"] is True
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert _recorded(monkeypatch, "cpu")["compiled"] is False
    assert compiling.enabled(_World()) is False


def test_results_record_deterministic_kernels_on_cuda_only(monkeypatch):
    from ptibench.case_options import DETERMINISTIC_ENV

    monkeypatch.setenv(DETERMINISTIC_ENV, "1")
    assert _recorded(monkeypatch, "cuda:0")["deterministic"] is True
    assert _recorded(monkeypatch, "cpu")["deterministic"] is False
    monkeypatch.setenv(DETERMINISTIC_ENV, "0")
    assert _recorded(monkeypatch, "cuda:0")["deterministic"] is False


def test_compiled_runs_have_cache_entries_of_their_own(tmp_path, monkeypatch):
    """Cases and stage-2 pivots: a compiled run neither reads nor fills the eager entries."""
    from ptibench.run.cache import ResultCache

    cache, spec = ResultCache(tmp_path), CaseSpec(stage="inversion", lr=1e-2)
    method = get_method("pti")
    names = {}
    for switch in ("0", "1"):
        monkeypatch.setenv(COMPILE_ENV, switch)
        names[switch] = (cache.entry(spec, "v", method).name, cache.pivot_path(spec, "v", method))
    assert names["1"][0] == names["0"][0] + "-compiled"
    assert names["1"][1] != names["0"][1]
