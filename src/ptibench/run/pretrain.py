"""The grid's shared training runs, at the cache level: the not-yet-cached cases of a grid that
differ only in lr are trained in one run (stage 1: ptibench.training.batched; stage-2 LoRA around
the seed's pivot: ptibench.training.stacked_lora), under one file lock per group, and each case's
trained outcome is left in the cache (`<cache>/trained/<entry>/`), where the runner finds it and
evaluates and stores the case as if it had trained it itself.

With group sampling on (GROUP_SAMPLING_ENV; by default on a CUDA device only), the run also
samples every case's evaluation prompts in shared batches (stage 1: the cases' vectors side by
side; stage 2: their adapters routed per sample over one UNet) and leaves each case its images;
the runner then only measures them. Each sample keeps its seed, so a case's images are the ones
it samples alone up to the rounding of a different batch (bitwise on the CPUs tested).

Concurrent workers share the groups out: a worker trains every group no other process has locked
(the one its own case needs first), skips the locked ones, and then waits only for its own case's
group. Two xdist workers thus train two groups at a time, whichever cases they were handed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import Timeout
from safetensors.torch import load_file, save_file

from ptibench.concept import load_concept
from ptibench.errors import PtibenchError
from ptibench.evaluation.evaluate import sample_cases
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
from ptibench.training.finetune import get_pivot, pivot_spec
from ptibench.training.loop import StageContext, TrainingData, TrainOutcome
from ptibench.training.methods import get_method
from ptibench.training.stacked_lora import (
    AdapterRouter,
    NotStackable,
    adapter_weights,
    restore_adapted_unet,
    stackable,
    train_stacked,
)

MIN_BATCHED = 2
"""Fewer uncached cases than this in a grid: nothing to gain, the sequential path runs them."""


ADAPTER_FILE = "adapter.safetensors"
"""A stage-2 slot's trained LoRA tensors (peft's parameter names; see load_trained)."""

SAMPLES_FILE = "samples.npz"
"""A slot's evaluation images from group sampling: one uint8 array per planned prompt."""

GROUP_SAMPLING_ENV = "PTIBENCH_GROUP_SAMPLING"
"""1: group runs also sample their cases' evaluation images in shared batches; 0: each case
samples its own; auto (the default): on a CUDA device only. On the 2-core CPU of the README's
performance section shared batches sample no faster than a case's own batch of 32."""


def group_sampling_enabled(device: torch.device) -> bool:
    value = os.environ.get(GROUP_SAMPLING_ENV, "auto").strip().lower()
    if value == "auto":
        return device.type == "cuda"
    return value not in ("0", "false", "no", "")


@dataclass
class Trained:
    """A case's share of a group run, read back from its slot: the outcome, its share of the
    run's time, and the time of the pivot the run trained first (0 unless this slot carries it)."""

    outcome: TrainOutcome
    train_s: float
    pivot_s: float = 0.0
    samples: list[np.ndarray] | None = None
    sample_s: float = 0.0


def group_trainable(spec, method) -> bool:
    """Whether `spec` trains in a group run (stage 1 batched, or stage-2 LoRA stacked)."""
    return batchable(spec, method) or stackable(spec, method)


def trained_dir(cache, entry) -> Path:
    return cache.root / TRAINED_DIR / entry.name


def save_trained(
    folder: Path,
    outcome: TrainOutcome,
    placeholder: str,
    seconds: float,
    pivot_s: float = 0.0,
    samples: list[np.ndarray] | None = None,
    sample_s: float = 0.0,
) -> None:
    """A case's slot; outcome.json goes last (it marks the slot complete)."""
    ensure_dir(folder)
    if samples is not None:
        np.savez(folder / SAMPLES_FILE, *samples)
    save_embedding(folder / "vector.safetensors", placeholder, outcome.vector)
    save_embedding(folder / "initial.safetensors", placeholder, outcome.initial)
    lora = outcome.lora and outcome.status == "ok"
    if lora:
        save_file(adapter_weights(outcome.unet), str(folder / ADAPTER_FILE))
    atomic_write_json(
        folder / "outcome.json",
        {
            "status": outcome.status,
            "losses": outcome.losses,
            "diverged_at": outcome.diverged_at,
            "metrics": outcome.metrics,
            "train_s": seconds,
            "pivot_s": pivot_s,
            "lora": lora,
            "sample_s": sample_s if samples is not None else 0.0,
        },
    )


def has_trained(cache, entry) -> bool:
    """Whether a group run left a complete slot for `entry`."""
    return (trained_dir(cache, entry) / "outcome.json").is_file()


def load_trained(cache, entry, case=None) -> Trained | None:
    """The outcome a group run left for `entry`. A stage-2 slot's UNet copy is rebuilt only when
    `case` = (bundle, spec, method) is given (its adapter re-initialised, then the stored weights
    copied in: the copy the run trained, bitwise)."""
    folder = trained_dir(cache, entry)
    if not has_trained(cache, entry):
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
            lora=bool(record.get("lora", False)),
        )
        if outcome.lora and case is not None:
            bundle, spec, method = case
            weights = load_file(str(folder / ADAPTER_FILE))
            with torch.random.fork_rng(devices=[]):
                outcome.unet = restore_adapted_unet(bundle, spec, method, weights)
        samples = None
        if (folder / SAMPLES_FILE).is_file():
            with np.load(folder / SAMPLES_FILE) as stored:
                samples = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    except Exception:  # noqa: BLE001 - an unreadable slot is absent: the case trains itself
        return None
    return Trained(
        outcome,
        float(record.get("train_s", 0.0)),
        float(record.get("pivot_s", 0.0)),
        samples,
        float(record.get("sample_s", 0.0)) if samples is not None else 0.0,
    )


def discard_trained(cache, entry) -> None:
    import shutil

    shutil.rmtree(trained_dir(cache, entry), ignore_errors=True)


def _grid_lock(cache, specs, world_version: str, method):

    blob = json.dumps([batch_group_key(specs[0]), world_version, method_version(method)])
    name = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return file_lock(cache.root / ".locks" / f"grid-{name}.lock")


def group_key(spec) -> str | None:
    """The group run `spec` trains in, or None when it trains alone (group runs off, a method
    or stage that opts out, a spec the runner will refuse)."""
    if not grid_batching_enabled():
        return None
    try:
        validate_spec(spec)
        trainable = group_trainable(spec, get_method(spec.method))
    except PtibenchError:
        return None
    return batch_group_key(spec) if trainable else None


def trainable_groups(specs) -> list[list]:
    """The specs that train in group runs, grouped (same everything but lr), in first-seen
    order; specs that cannot are left out (the runner trains them one by one)."""
    groups: dict[str, list] = {}
    for spec in specs:
        key = group_key(spec)
        if key is not None and spec not in groups.setdefault(key, []):
            groups[key].append(spec)
    return [group for group in groups.values() if len(group) >= MIN_BATCHED]


def pretrain(specs, *, cache_dir: Path | None = None, progress: bool = False, need=None) -> int:
    """Train, in group runs, the cases of `specs` that share everything but lr (stage 1
    batched, stage-2 LoRA stacked) and have neither a cached result nor a trained slot; leave
    their outcomes in the cache.

    Groups another process is training are skipped at first. On return every group is trained,
    or, with `need` (a spec), at least that spec's group: a worker that has trained what it
    could waits only for the group its case needs. Returns how many cases were trained here."""
    groups = trainable_groups(specs)
    if need is not None:
        groups.sort(key=lambda group: need not in group)
    cache = ResultCache(cache_dir)
    trained, waiting = 0, []
    for group in groups:
        done = _pretrain_group(group, cache, progress, blocking=False)
        if done is None:
            waiting.append(group)
        else:
            trained += done
    for group in waiting:
        if need is None or need in group:
            trained += _pretrain_group(group, cache, progress, blocking=True) or 0
    return trained


def _pretrain_group(group, cache, progress: bool, *, blocking: bool) -> int | None:
    """Train `group`'s missing cases; None when another process holds its lock (not blocking).
    A bad world or concept trains nothing here: run_case reports it per case."""
    try:
        method = get_method(group[0].method)
        world = resolve_world(group[0].world)
        version = world_version(world)
        lock = _grid_lock(cache, group, version, method)
        try:
            lock.acquire(timeout=-1 if blocking else 0)
        except Timeout:
            return None
        try:
            return _train_group(group, cache, method, world, version, progress)
        finally:
            lock.release()
    except PtibenchError:
        return 0


def _train_group(group, cache, method, world, version: str, progress: bool) -> int:
    todo = []
    for spec in group:
        entry = cache.entry(spec, version, method)
        if (entry.path / "result.json").is_file() or has_trained(cache, entry):
            continue
        todo.append((spec, entry))
    if len(todo) < MIN_BATCHED:
        return 0
    specs = [spec for spec, _ in todo]
    concept = load_concept(group[0].concept)
    bundle = load_bundle(world)
    reference, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, reference)
    pivot_s = 0.0
    clock = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        if specs[0].stage == "inversion":
            outcomes = train_batched(bundle, concept, data, specs, method, progress=progress)
        else:
            ctx = StageContext(specs[0], concept, bundle, data, progress)
            path = cache.pivot_path(pivot_spec(specs[0]), version, method)
            pivot, trained_here = get_pivot(ctx, method, path)
            if trained_here:
                pivot_s = time.perf_counter() - clock
                clock = time.perf_counter()
            try:
                outcomes = train_stacked(
                    bundle, concept, data, specs, method, pivot, progress=progress
                )
            except NotStackable:
                return 0
    share = (time.perf_counter() - clock) / len(todo)
    samples: list = [None] * len(todo)
    sample_share = 0.0
    if group_sampling_enabled(bundle.device):
        clock = time.perf_counter()
        samples = sample_group(bundle, concept, specs[0].eval, outcomes, world.oracle)
        sample_share = (time.perf_counter() - clock) / len(todo)
    for index, ((_, entry), outcome) in enumerate(zip(todo, outcomes, strict=True)):
        first_pivot = pivot_s if index == 0 else 0.0
        save_trained(
            trained_dir(cache, entry),
            outcome,
            concept.placeholder,
            share,
            first_pivot,
            samples[index],
            sample_share,
        )
    return len(todo)


def sample_group(bundle, concept, config, outcomes, oracle: bool) -> list:
    """The evaluation images of a group run's sound cases, sampled in shared batches (None for
    a case that diverged: it is not evaluated). Stage-2 cases share the pivot and differ in their
    adapter: one routed UNet holds them all."""
    sound = [k for k, outcome in enumerate(outcomes) if outcome.status == "ok"]
    if not sound:
        return [None] * len(outcomes)
    vectors = [outcomes[k].vector for k in sound]
    unet = route = None
    if outcomes[sound[0]].lora:
        router = AdapterRouter(bundle, [outcomes[k].unet for k in sound])
        unet, route = router.unet, router.route
    with torch.random.fork_rng(devices=[]):
        rows = sample_cases(bundle, concept, config, vectors, oracle=oracle, unet=unet, route=route)
    samples: list = [None] * len(outcomes)
    for k, case_rows in zip(sound, rows, strict=True):
        samples[k] = case_rows
    return samples
