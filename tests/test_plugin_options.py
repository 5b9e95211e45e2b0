"""Options: grid parsing (hypothesis), usage errors (exit 4, one line), collection, exit codes."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_plugin_support import make_project, run

from ptibench.assets import tiny_world_path
from ptibench.case_options import (
    DETERMINISTIC_ENV,
    DEVICE_ENV,
    SAMPLE_DTYPE_ENV,
    apply_device,
    deterministic,
)
from ptibench.errors import PtibenchError
from ptibench.grids import PRESETS, LrGrid, parse_lr_grid
from ptibench.harness.fixture import without_options
from ptibench.harness.workers import assign_worker_gpu, place_worker, world_on_cpu
from ptibench.models.loading import enable_cuda_speedups
from ptibench.models.registry import register_world, resolve_world
from ptibench.run.tasks import SETTINGS_ENV
from ptibench.spec import lr_key

pytest_plugins = ["pytester"]

lrs = st.floats(min_value=1e-8, max_value=1e3, allow_nan=False, allow_infinity=False)


@given(st.lists(lrs, min_size=1, max_size=12, unique_by=lr_key))
def test_valid_lists_round_trip(values):
    text = ",".join(repr(v) for v in values)
    assert parse_lr_grid(text) == LrGrid(lrs=tuple(values))


@given(st.lists(lrs, min_size=1, max_size=6, unique_by=lr_key), st.data())
def test_duplicates_are_rejected(values, data):
    repeated = data.draw(st.sampled_from(values))
    with pytest.raises(argparse.ArgumentTypeError, match="duplicate lr"):
        parse_lr_grid(",".join(repr(v) for v in [*values, repeated]))


@given(
    st.lists(lrs, min_size=0, max_size=4), st.sampled_from(["0", "-1e-3", "abc", "", "nan", "inf"])
)
def test_invalid_items_are_rejected(values, bad):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_lr_grid(",".join([*(repr(v) for v in values), bad]))


def test_presets_have_six_or_more_lrs_per_stage_except_quick_and_ci():
    """A grid that finds a knee needs points on both sides; quick and ci are smoke and
    regression grids (ci's lrs lie on the default grid, so its baselines are the default's)."""
    smallest = {"quick": 3, "ci": 2}
    for name, grids in PRESETS.items():
        for stage, grid in grids.items():
            assert list(grid) == sorted(set(grid)), (name, stage)
            assert len(grid) >= smallest.get(name, 6), (name, stage)
    assert PRESETS["default"]["inversion"][-1] / PRESETS["default"]["inversion"][0] >= 1e3


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--lr-grid", "1e-3,abc"], "'abc'"),
        (["--lr-grid", ""], "empty grid"),
        (["--lr-grid", "1e-3,-1"], "'-1'"),
        (["--lr-grid", "1e-3,0.001"], "duplicate lr"),
        (["--lr-grid", "nosuchpreset"], "'nosuchpreset'"),
        (["--steps", "0"], "'0' must be > 0"),
        (["--stage", "inversion,bogus"], "unknown stage 'bogus'"),
        (["--seeds", "two"], "'two' is not a whole number"),
        (["--device", "tpu"], "device 'tpu' is not one of cpu, cuda, cuda:N, auto"),
    ],
)
def test_bad_values_are_usage_errors(pytester, args, named):
    make_project(pytester)
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "error:" in line]
    assert len(errors) == 1 and named in errors[0], result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--method", "nosuch"], "--method: unknown method 'nosuch'"),
        (["--method", "pti-normreg", "--stage", "finetune"], "has no stage finetune"),
        (["--world", "nosuch-world"], "--world: unknown world 'nosuch-world'"),
        (["--concept", "nosuch-concept"], "--concept: unknown concept 'nosuch-concept'"),
        (["--ptibench-out", "a-file/out"], "--ptibench-out: cannot write in"),
    ],
)
def test_unknown_names_are_usage_errors(pytester, args, named):
    make_project(pytester)
    (pytester.path / "a-file").write_text("not a folder")
    result = run(pytester, "--lr-grid", "quick", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1 and named in errors[0], result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_device_this_machine_lacks_is_a_usage_error_and_leaves_the_environment(pytester):
    make_project(pytester)
    result = run(pytester, "--lr-grid", "quick", "--device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr.str()
    assert "--device: device 'cuda' asked for but CUDA is not available here" in errors[0]
    assert DEVICE_ENV not in os.environ


def test_device_moves_every_world_and_keeps_its_dtype(monkeypatch):
    register_world("on-gpu", lambda: replace(resolve_world("tiny-world"), device="cuda"))
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_world("tiny-world").device == "cpu"
    assert resolve_world("on-gpu").device == "cuda"
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    moved = resolve_world("on-gpu")
    assert (moved.device, moved.dtype) == ("cpu", "float32")
    assert resolve_world("tiny-world") == replace(moved, name="tiny-world")
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(PtibenchError, match="CUDA is not available"):
            resolve_world("tiny-world")


def test_device_reaches_ray_tasks_with_the_other_settings():
    assert DEVICE_ENV in SETTINGS_ENV
    assert DETERMINISTIC_ENV in SETTINGS_ENV


def test_deterministic_sets_its_variable_and_returns_what_to_restore(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    monkeypatch.setenv(DETERMINISTIC_ENV, "0")
    monkeypatch.delenv(SAMPLE_DTYPE_ENV, raising=False)
    assert not deterministic()
    unchanged = apply_device(argparse.Namespace(device=None, deterministic=False))
    assert unchanged == {DEVICE_ENV: "cpu", DETERMINISTIC_ENV: "0", SAMPLE_DTYPE_ENV: None}
    assert not deterministic()
    apply_device(argparse.Namespace(device="cuda", deterministic=True))
    assert os.environ[DEVICE_ENV] == "cuda" and deterministic()


class _AttentionStub(torch.nn.Module):
    def set_attn_processor(self, processor):
        self.processor = processor


@pytest.fixture
def cuda_backend_flags(monkeypatch):
    """The global CUDA flags enable_cuda_speedups sets, put back after the test."""
    flags = [
        (torch.backends.cudnn, "benchmark"),
        (torch.backends.cudnn, "deterministic"),
        (torch.backends.cudnn, "allow_tf32"),
        (torch.backends.cuda.matmul, "allow_tf32"),
    ]
    was = [getattr(owner, name) for owner, name in flags]
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    for owner, name in flags:
        setattr(owner, name, False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    for (owner, name), value in zip(flags, was, strict=True):
        setattr(owner, name, value)
    torch.use_deterministic_algorithms(was_deterministic)


@pytest.mark.parametrize("asked", [False, True])
def test_deterministic_cuda_runs_trade_the_algorithm_search_for_fixed_kernels(
    monkeypatch, cuda_backend_flags, asked
):
    """The CUDA settings (applied to flags only: no GPU needed): cuDNN's per-process algorithm
    search by default, deterministic kernels and cuBLAS workspace with --deterministic."""
    monkeypatch.setenv(DETERMINISTIC_ENV, "1" if asked else "0")
    pipe = argparse.Namespace(unet=_AttentionStub(), vae=_AttentionStub())
    world = argparse.Namespace(torch_device=lambda: torch.device("cuda"), compile=False)
    enable_cuda_speedups(pipe, world)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.benchmark is not asked
    assert torch.backends.cudnn.deterministic is asked
    assert torch.are_deterministic_algorithms_enabled() is asked
    assert (os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8") is asked
    assert pipe.unet.processor is not None


def test_without_lr_grid_cases_are_deselected(pytester):
    make_project(pytester)
    pytester.makepyfile(test_other="def test_fast():\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*deselected: pass --lr-grid to run the cases*"])


def test_nothing_collected_is_exit_5(pytester):
    make_project(pytester)
    assert run(pytester).ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_ids_and_order_are_readable_and_stable(pytester):
    make_project(pytester)
    result = run(pytester, "--collect-only", "-q", "--lr-grid", "default", "--seeds", "2")
    ids = [line.split("[")[1].rstrip("]") for line in result.stdout.lines if "::" in line]
    # each group run's first two cases (a seed's stage-1 batch, its stage-2 stack) ...
    assert ids[:8] == [
        "inversion-lr=1e-03-seed=0",
        "inversion-lr=3e-03-seed=0",
        "inversion-lr=1e-03-seed=1",
        "inversion-lr=3e-03-seed=1",
        "finetune-lr=3e-05-seed=0",
        "finetune-lr=1e-04-seed=0",
        "finetune-lr=3e-05-seed=1",
        "finetune-lr=1e-04-seed=1",
    ]
    # ... then the other stage-1 cases (their batch ends first), then the other stage-2 cases
    assert all(i.startswith("inversion-") for i in ids[8:18]), ids
    assert all(i.startswith("finetune-") for i in ids[18:]), ids
    assert ids[-1] == "finetune-lr=1e-02-seed=1"
    assert len(ids) == 2 * (7 + 6)
    again = run(pytester, "--collect-only", "-q", "--lr-grid", "default", "--seeds", "2")
    assert [line.split("[")[1].rstrip("]") for line in again.stdout.lines if "::" in line] == ids


def test_default_stages_narrow_to_the_method(pytester):
    make_project(pytester)
    result = run(pytester, "--collect-only", "-q", "--lr-grid", "quick", "--method", "pti-normreg")
    ids = [line.split("[")[1] for line in result.stdout.lines if "::" in line]
    assert ids == ["inversion-lr=1e-03]", "inversion-lr=3e-02]", "inversion-lr=1e+00]"]


def test_default_lr_grid_value_and_explicit_list(pytester):
    make_project(pytester)
    result = run(pytester, "--collect-only", "-q", "--stage", "finetune", "--lr-grid", "5e-3,1e-2")
    ids = [line.split("[")[1] for line in result.stdout.lines if "::" in line]
    assert ids == ["finetune-lr=5e-03]", "finetune-lr=1e-02]"]


def test_worker_gpu_assignment():
    env = {"PYTEST_XDIST_WORKER": "gw3", "CUDA_VISIBLE_DEVICES": "4,5"}
    assert assign_worker_gpu(env) == "5" and env["CUDA_VISIBLE_DEVICES"] == "5"
    cpu = {"PYTEST_XDIST_WORKER": "gw1", "CUDA_VISIBLE_DEVICES": ""}
    assert assign_worker_gpu(cpu) is None and cpu["CUDA_VISIBLE_DEVICES"] == ""
    assert assign_worker_gpu({"CUDA_VISIBLE_DEVICES": "0,1"}) is None


def test_a_cpu_world_shares_the_cores_on_a_gpu_machine():
    """On a GPU machine a worker whose world runs on the CPU takes its share of the cores, not a
    GPU it would not use beside all the cores."""
    threads = torch.get_num_threads()
    try:
        env = {"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "2"}
        env["CUDA_VISIBLE_DEVICES"] = "0,1"
        assert place_worker(env, on_cpu=True) is None
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
        env["CUDA_VISIBLE_DEVICES"] = "0,1"
        assert place_worker(env, on_cpu=False) == "1" and env["CUDA_VISIBLE_DEVICES"] == "1"
    finally:
        torch.set_num_threads(threads)
    assert world_on_cpu("tiny-world", None) and world_on_cpu("sd15.toml", "cpu")
    assert not world_on_cpu("tiny-world", "cuda") and not world_on_cpu("sd15.toml", None)
    assert world_on_cpu(str(tiny_world_path()), None)


def test_update_hint_narrows_to_one_case():
    args = ["benchmark/", "--lr-grid", "--stage=inversion", "-x", "--lr-grid", "1e-3,1e-2"]
    assert without_options(args) == ["benchmark/", "-x"]
    assert without_options(["--lr-grid", "benchmark/", "--stage", "finetune", "-n", "2"]) == [
        "benchmark/",
        "-n",
        "2",
    ]
