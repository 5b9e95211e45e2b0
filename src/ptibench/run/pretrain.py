"""The batched stage-1 grid, at the cache level: train the not-yet-cached inversion cases of a
grid in one batched run (ptibench.training.batched) under one file lock per grid, so concurrent
workers train it once, and leave each case's trained outcome in the cache
(`<cache>/trained/<entry>/`), where the runner finds it and evaluates and stores the case as if
it had trained it itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from ptibench.concept import load_concept
from ptibench.errors import PtibenchError
from ptibench.io import atomic_write_json, ensure_dir, file_lock, read_json
from ptibench.models.artifacts import load_embedding, save_embedding
from ptibench.models.loading import load_bundle, world_version
from ptibench.models.registry import resolve_world
from ptibench.run.cache import TRAINED_DIR, ResultCache, method_version
from ptibench.spec import validate_spec
from ptibench.training.batched import (
    batch_group_key,
    batchable,
    grid_batching_enabled,
    train_batched,
)
from ptibench.training.loop import TrainingData, TrainOutcome
from ptibench.training.methods import get_method

MIN_BATCHED = 2
"""Fewer uncached cases than this in a grid: nothing to gain, the sequential path runs them."""


def trained_dir(cache, entry) -> Path:
    return cache.root / TRAINED_DIR / entry.name


def save_trained(folder: Path, outcome: TrainOutcome, placeholder: str, seconds: float) -> None:

    ensure_dir(folder)
    save_embedding(folder / "vector.safetensors", placeholder, outcome.vector)
    save_embedding(folder / "initial.safetensors", placeholder, outcome.initial)
    atomic_write_json(
        folder / "outcome.json",
        {
            "status": outcome.status,
            "losses": outcome.losses,
            "diverged_at": outcome.diverged_at,
            "metrics": outcome.metrics,
            "train_s": seconds,
        },
    )


def load_trained(cache, entry) -> tuple[TrainOutcome, float] | None:
    """The outcome a batched run left for `entry` (and its share of the training time)."""

    folder = trained_dir(cache, entry)
    if not (folder / "outcome.json").is_file():
        return None
    try:
        record = read_json(folder / "outcome.json")
        outcome = TrainOutcome(
            status=record["status"],
            vector=load_embedding(folder / "vector.safetensors"),
            initial=load_embedding(folder / "initial.safetensors"),
            losses=[float(v) for v in record["losses"]],
            diverged_at=record["diverged_at"],
            metrics=dict(record["metrics"]),
        )
    except Exception:  # noqa: BLE001 - an unreadable slot is absent: the case trains itself
        return None
    return outcome, float(record.get("train_s", 0.0))


def discard_trained(cache, entry) -> None:
    import shutil

    shutil.rmtree(trained_dir(cache, entry), ignore_errors=True)


def _grid_lock(cache, specs, world_version: str, method):

    blob = json.dumps([batch_group_key(specs[0]), world_version, method_version(method)])
    name = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return file_lock(cache.root / ".locks" / f"grid-{name}.lock")


def pretrain(specs, *, cache_dir: Path | None = None, progress: bool = False) -> int:
    """Train, batched, the inversion cases of `specs` that share everything but lr and have
    neither a cached result nor a trained slot; leave their outcomes in the cache.

    Returns how many cases were trained here. Specs that cannot be batched are ignored (the
    runner trains them one by one)."""

    if not grid_batching_enabled():
        return 0
    groups: dict[str, list] = {}
    for spec in specs:
        try:
            validate_spec(spec)
            method = get_method(spec.method)
        except PtibenchError:  # the runner reports bad specs itself, one line per case
            continue
        if batchable(spec, method):
            groups.setdefault(batch_group_key(spec), [])
            if spec not in groups[batch_group_key(spec)]:
                groups[batch_group_key(spec)].append(spec)
    cache = ResultCache(cache_dir)
    trained = 0
    for group in groups.values():
        if len(group) < MIN_BATCHED:
            continue
        try:
            trained += _pretrain_group(group, cache, progress)
        except PtibenchError:  # bad world/concept: left to run_case, which says so per case
            continue
    return trained


def _pretrain_group(group, cache, progress: bool) -> int:

    method = get_method(group[0].method)
    world = resolve_world(group[0].world)
    version = world_version(world)
    with _grid_lock(cache, group, version, method):
        todo = []
        for spec in group:
            entry = cache.entry(spec, version, method)
            if (entry.path / "result.json").is_file() or load_trained(cache, entry):
                continue
            todo.append((spec, entry))
        if len(todo) < MIN_BATCHED:
            return 0
        concept = load_concept(group[0].concept)
        bundle = load_bundle(world)
        reference, _ = concept.pixels(bundle.resolution)
        data = TrainingData.build(bundle, concept, reference)
        clock = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            outcomes = train_batched(
                bundle, concept, data, [s for s, _ in todo], method, progress=progress
            )
        share = (time.perf_counter() - clock) / len(todo)
        for (_, entry), outcome in zip(todo, outcomes, strict=True):
            save_trained(trained_dir(cache, entry), outcome, concept.placeholder, share)
    return len(todo)
