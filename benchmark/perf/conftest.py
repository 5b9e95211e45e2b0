"""The perf suite's shared setup: the world (env PTIBENCH_PERF_WORLD: "tiny-world", the default,
or "random" for a random-weight world of the same shape), torch threads (PTIBENCH_PERF_THREADS,
default torch's own), step counts (PTIBENCH_PERF_STEPS) and the figures printed at the end."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
import torch

FIGURES: dict[str, dict] = {}


def perf_steps(default: int) -> int:
    return int(os.environ.get("PTIBENCH_PERF_STEPS", default))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def record(benchmark, name: str, **figures) -> None:
    """Figures go to pytest-benchmark's extra_info (its JSON) and to the printed summary."""
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if benchmark is not None:
        benchmark.extra_info.update(figures)
    FIGURES[name] = figures


@pytest.fixture(scope="session")
def perf_world(tmp_path_factory):
    threads = os.environ.get("PTIBENCH_PERF_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    from ptibench.assets import tiny_world_path
    from ptibench.models.random_weights import write_random_world
    from ptibench.models.registry import resolve_world

    choice = os.environ.get("PTIBENCH_PERF_WORLD", "tiny-world")
    if choice == "random" or not (tiny_world_path() / "pipeline" / "model_index.json").is_file():
        return write_random_world(Path(tmp_path_factory.getbasetemp()) / "perf-random-world")
    return resolve_world(choice)


@pytest.fixture(scope="session")
def perf_setup(perf_world):
    from ptibench.concept import load_concept
    from ptibench.models.loading import load_bundle
    from ptibench.training.loop import TrainingData

    bundle = load_bundle(perf_world)
    concept = load_concept(os.environ.get("PTIBENCH_PERF_CONCEPT", "yellow-ring"))
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    return perf_world, bundle, concept, pixels, data


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.write_sep("=", "ptibench perf figures")
    terminalreporter.write_line(f"torch threads: {torch.get_num_threads()}")
    for name, figures in FIGURES.items():
        text = ", ".join(f"{k}={v}" for k, v in figures.items())
        terminalreporter.write_line(f"{name}: {text}")
