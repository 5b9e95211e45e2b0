"""--sample-dtype: the evaluation sampler under bfloat16 autocast, training untouched, and the
cache, results and baselines keeping such runs apart from float32 ones."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from test_plugin_support import make_project, run

from ptibench.case_options import (
    SAMPLE_DTYPE_ENV,
    apply_device,
    parse_sample_dtype,
    sample_dtype,
)
from ptibench.errors import PtibenchError
from ptibench.evaluation.sampling import generate_rows
from ptibench.models.diffusion import diffusion_loss
from ptibench.models.loading import load_bundle
from ptibench.results.baselines import recorded_differently, what_changed
from ptibench.run.cache import ENTRY_NAME, ResultCache
from ptibench.run.tasks import SETTINGS_ENV
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.methods import get_method

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_sample_dtype(monkeypatch):
    """Each test starts with SAMPLE_DTYPE_ENV unset and leaves it as it found it, also where
    apply_device sets it behind monkeypatch's back."""
    monkeypatch.setenv(SAMPLE_DTYPE_ENV, "float32")
    monkeypatch.delenv(SAMPLE_DTYPE_ENV)


def _autocast_seen(bundle, work) -> list[tuple[bool, torch.dtype]]:
    """(autocast on?, its dtype) as the UNet saw them at each forward call of `work()`."""
    seen = []

    def hook(module, args):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    handle = bundle.unet.register_forward_pre_hook(hook)
    try:
        work()
    finally:
        handle.remove()
    return seen


def _sample(bundle) -> list[np.ndarray]:
    config = EvalConfig(sample_steps=2)
    embeds = bundle.encode(["a <c> at the left"], "<c>", bundle.word_embedding("ring"))
    return generate_rows(bundle, embeds, [2], config)


def test_bfloat16_sampling_runs_the_unet_under_autocast_and_training_does_not(world, monkeypatch):
    bundle = load_bundle(world)
    monkeypatch.delenv(SAMPLE_DTYPE_ENV, raising=False)
    plain = _autocast_seen(bundle, lambda: _sample(bundle))
    assert plain and not any(on for on, _ in plain)

    monkeypatch.setenv(SAMPLE_DTYPE_ENV, "bfloat16")
    low = _autocast_seen(bundle, lambda: _sample(bundle))
    assert low and all(on and dtype == torch.bfloat16 for on, dtype in low)
    images = _sample(bundle)[0]
    assert images.dtype == np.uint8 and images.shape[0] == 2

    latents = torch.randn(2, 4, bundle.resolution // 8, bundle.resolution // 8)
    hidden = bundle.encode(["a <c>"] * 2, "<c>", bundle.word_embedding("ring"))

    def train_step():
        diffusion_loss(
            bundle, bundle.unet, latents, torch.randn_like(latents), torch.tensor([10, 500]), hidden
        )

    assert not any(on for on, _ in _autocast_seen(bundle, train_step))


def test_the_setting_is_validated(monkeypatch):
    assert parse_sample_dtype(" BFloat16 ") == "bfloat16"
    with pytest.raises(argparse.ArgumentTypeError, match="'float16' is not one of"):
        parse_sample_dtype("float16")
    monkeypatch.setenv(SAMPLE_DTYPE_ENV, "half")
    with pytest.raises(PtibenchError, match=f"{SAMPLE_DTYPE_ENV}='half'"):
        sample_dtype()
    assert sample_dtype("bfloat16") == "bfloat16"  # a half-precision world samples in its own
    monkeypatch.delenv(SAMPLE_DTYPE_ENV)
    assert sample_dtype() == "float32"


def test_the_option_sets_its_variable_and_reaches_ray_tasks(monkeypatch):
    monkeypatch.delenv(SAMPLE_DTYPE_ENV, raising=False)
    previous = apply_device(argparse.Namespace(device=None, deterministic=False))
    assert previous[SAMPLE_DTYPE_ENV] is None and sample_dtype() == "float32"
    apply_device(argparse.Namespace(device=None, deterministic=False, sample_dtype="bfloat16"))
    assert sample_dtype() == "bfloat16"
    assert SAMPLE_DTYPE_ENV in SETTINGS_ENV


def test_a_bad_value_is_one_usage_error(pytester):
    make_project(pytester)
    result = run(pytester, "--lr-grid", "quick", "--sample-dtype", "float16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "error:" in line]
    assert len(errors) == 1 and "'float16' is not one of float32, bfloat16" in errors[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_bfloat16_runs_have_case_and_base_entries_of_their_own_but_share_pivots(
    tmp_path, monkeypatch
):
    cache, method = ResultCache(tmp_path), get_method("pti")
    spec = CaseSpec(stage="inversion", lr=1e-2)
    names = {}
    for precision in ("float32", "bfloat16"):
        monkeypatch.setenv(SAMPLE_DTYPE_ENV, precision)
        names[precision] = (
            cache.entry(spec, "abcdef01", method).name,
            cache.pivot_path(spec, "abcdef01", method),
            cache.base_path(spec, "abcdef01"),
        )
    (case32, pivot32, base32), (case16, pivot16, base16) = names.values()
    assert case16 == case32 + "-bf16sampled" and ENTRY_NAME.fullmatch(case16)
    assert pivot16 == pivot32
    assert base16 != base32
    monkeypatch.delenv(SAMPLE_DTYPE_ENV)
    assert cache.base_path(spec, "abcdef01") == base32


def test_baselines_name_and_guard_the_precision():
    older = {"device": "cpu", "dtype": "float32"}  # recorded before the field existed
    now = {"device": "cpu", "dtype": "float32", "sample_dtype": "bfloat16"}
    assert what_changed(older, now) == "sample_dtype float32 -> bfloat16"
    assert recorded_differently(older, now) == "sample_dtype float32 -> bfloat16"
    same = {**now, "sample_dtype": "float32"}
    assert what_changed(older, same) == recorded_differently(older, same) == ""
    half = {"device": "cuda:0", "dtype": "bfloat16"}
    assert what_changed(half, {**half, "sample_dtype": "bfloat16"}) == ""
    moved = {"device": "cpu", "dtype": "float32", "sample_dtype": "float32"}
    assert what_changed(half, moved) == "device cuda:0 -> cpu; dtype bfloat16 -> float32"
    assert recorded_differently(half, moved) == "device cuda -> cpu; dtype bfloat16 -> float32"


def test_results_record_the_precision(monkeypatch):
    from ptibench.run.runner import environment

    class World:
        name, dtype, compile = "w", "float32", False

    class Method:
        name, version = "pti", "1"

    monkeypatch.setattr("ptibench.run.runner.method_version", lambda method: "k")
    spec = CaseSpec(stage="inversion", lr=1e-2)
    monkeypatch.setenv(SAMPLE_DTYPE_ENV, "bfloat16")
    assert environment(spec, World(), "v", Method(), "cpu")["sample_dtype"] == "bfloat16"
    World.dtype = "float16"
    assert environment(spec, World(), "v", Method(), "cuda:0")["sample_dtype"] == "float16"
    monkeypatch.delenv(SAMPLE_DTYPE_ENV)
    World.dtype = "float32"
    assert environment(spec, World(), "v", Method(), "cpu")["sample_dtype"] == "float32"
