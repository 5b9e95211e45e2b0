"""Shared pieces of the plugin tests (no tests here): the synthetic-case conftest and the args that
load the plugin in a pytester run whether or not ptibench is pip-installed.

The synthetic conftest is a test double for the plugin's mechanics, not for the benchmark: it
implements the plugin's own hook `pytest_ptibench_run_case` with deterministic two-phase curves
computed from the lr (reconstruction rises on a log scale up to the knee at lr = 3e-2, editability
falls after it, lr >= 100 diverges at step 7), so baselines, tables, the knee and xdist merging
are tested in milliseconds without training. tests/test_plugin_e2e.py runs the real core.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import matplotlib.pyplot  # noqa: F401 - imported before pytester snapshots sys.modules: C
import numpy  # noqa: F401 - extensions (numpy's, scipy's) cannot be loaded twice per process
import pytest
import scipy.stats  # noqa: F401

import ptibench
import ptibench.harness.plugin
import ptibench.results.report
import ptibench.training.methods

SYNTHETIC_CONFTEST = """
'''Test double for the ptibench plugin's mechanics (see test_plugin_support): synthetic
two-phase trade-off curves computed from the lr, no training.'''

import math

import pytest

from ptibench.spec import CaseResult

SHIFT = {shift!r}
KNEE_LOG_LR = math.log10(3e-2)


def _clip(value):
    return min(1.0, max(0.0, value))


@pytest.hookimpl(tryfirst=True)
def pytest_ptibench_run_case(spec, config):
    x = math.log10(spec.lr)
    if spec.lr >= 100:
        return CaseResult(spec=spec, status="diverged", metrics={{"final_loss": float("nan")}},
                          diverged_at=7, environment={{"device": "cpu"}})
    gain = _clip((x + 3.5) / (KNEE_LOG_LR + 3.5))
    loss = _clip((x - KNEE_LOG_LR) / (1.0 - KNEE_LOG_LR))
    wobble = 0.001 * spec.seed
    metrics = {{
        "lpips": 0.5 - 0.3 * gain + wobble + SHIFT,
        "clip_i": 0.6 + 0.3 * gain - wobble,
        "clip_t": 0.32 - 0.1 * loss,
        "edit_success": 0.8 - 0.6 * loss,
        "distance": 140.0 * spec.lr * spec.steps / 1000,
        "final_loss": 0.1,
    }}
    return CaseResult(spec=spec, status="ok", metrics=metrics, environment={{"device": "cpu"}})
"""

BENCHMARK_TEST = """
def test_lr_case(ptibench_spec, ptibench):
    ptibench.check(ptibench.run(ptibench_spec))
"""


def plugin_args() -> list[str]:
    """`-p ptibench.harness.plugin` unless the pytest11 entry point already loads it."""
    installed = any(ep.name == "ptibench" for ep in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "ptibench.harness.plugin"]


def make_project(pytester: pytest.Pytester, shift: float = 0.0) -> None:
    """A benchmark folder wired to the synthetic cases."""
    pytester.makeconftest(SYNTHETIC_CONFTEST.format(shift=shift))
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)


def run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    full = [*plugin_args(), "-p", "no:cacheprovider", *quiet, *args]
    if subprocess:
        return pytester.runpytest_subprocess(*full)
    return pytester.runpytest(*full)


def subprocess_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a pytest subprocess (its cwd is the pytester folder) import ptibench from src/."""
    src = str(Path(ptibench.__file__).parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
