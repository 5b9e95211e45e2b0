"""Stage 1 for a whole lr grid in one run: K placeholder vectors trained side by side.

The K cases of a grid differ only in their lr, so they draw the same batches (one BatchStream
per case, seeded by its spec). One step stacks the K sub-batches into one batch of K*B samples:
the text encoder runs once over every (case, template) row with that case's vector spliced in,
the UNet runs once over K*B samples, and the loss is the SUM of the K sub-batch means, so the
gradient reaching vector k is exactly the gradient its own run computes. Each vector has its own
optimizer (from the method's `optimizer` hook, with its own lr and Adam state) and its own
regulariser term. Nothing in the UNet or the text encoder mixes samples (GroupNorm and attention
are per sample, everything is in eval mode), so the batched run reproduces the K sequential runs
up to float rounding.

A vector that diverges stops at its step (recorded as in the sequential loop: a non-finite loss
before the update, or an exploding/non-finite vector after it) and leaves the batch; the others
continue.

`pretrain` is the cache-level entry: it trains the not-yet-cached inversion cases of a grid
batched (under one file lock per grid, so concurrent workers train it once) and leaves each
case's trained outcome in the cache (`<cache>/trained/<entry>/`), where `load_trained` finds it
and the runner evaluates and stores the case as if it had trained it itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..compiling import training_unet
from . import EXPLOSION_FACTOR, BatchStream, TrainingData, TrainOutcome, diffusion_loss, is_finite
from .inversion import distance_metrics

MIN_BATCHED = 2
"""Fewer uncached cases than this in a grid: nothing to gain, the sequential path runs them."""

TRAINED_DIR = "trained"

BATCH_GRID_ENV = "PTIBENCH_BATCH_GRID"
"""Set to 0 to train every case on its own (the batched grid is the default: it measured
faster on CPU, see the README's performance section)."""


def enabled() -> bool:
    return os.environ.get(BATCH_GRID_ENV, "1").strip().lower() not in ("0", "false", "no", "")


def batchable(spec, method) -> bool:
    """Whether `spec` can be trained in a batched grid: stage 1 of a method that keeps the
    default training loop (hooks such as optimizer/regulariser are honoured; an overridden
    `train` is not), without in-training checkpoints (eval_every)."""
    from ..methods import Method

    return (
        spec.stage == "inversion"
        and spec.eval_every is None
        and getattr(type(method), "train", None) is Method.train
        and "inversion" in method.stages
    )


def group_key(spec) -> str:
    """Specs with the same group key differ at most in lr (and can share one batched run)."""
    return spec.with_(lr=0.0).key()


def train_batched(bundle, concept, data: TrainingData, specs, method, *, progress=False):
    """Train stage 1 of every spec in `specs` (same everything but lr) in one batched run.

    Returns one TrainOutcome per spec, in order, as `inversion.train` would return it."""
    if not specs:
        return []
    first = specs[0]
    if any(group_key(s) != group_key(first) for s in specs):
        raise ValueError("train_batched needs specs that differ only in lr")
    steps, size = first.steps, first.batch_size
    initial = bundle.word_embedding(concept.initializer).to(bundle.device)
    dim = initial.numel()
    vectors = [torch.nn.Parameter(initial.clone()) for _ in specs]
    optimizers = [
        method.optimizer("inversion", [v], s.lr) for v, s in zip(vectors, specs, strict=True)
    ]
    timesteps_total = bundle.train_scheduler.config.num_train_timesteps
    streams = [BatchStream(data, size, s.seed, timesteps_total) for s in specs]
    limit = EXPLOSION_FACTOR * max(float(initial.norm()), 1e-6)
    outcomes = [
        TrainOutcome(status="ok", vector=initial, initial=initial, losses=[]) for _ in specs
    ]
    active = list(range(len(specs)))
    unet = training_unet(bundle, bundle.unet)
    bar = tqdm(
        range(1, steps + 1),
        desc=f"inversion grid x{len(specs)}",
        disable=not progress,
        mininterval=1.0,
        leave=False,
    )
    for step in bar:
        if not active:
            break
        ids, masks, rows, gather, latents, noise, timesteps = [], [], [], [], [], [], []
        offset = 0
        for k in active:
            batch = streams[k].next()
            used, which = torch.unique(batch.templates, return_inverse=True)
            ids.append(data.ids[used])
            masks.append(data.mask[used])
            rows.append(vectors[k].view(1, 1, dim).expand(len(used), 1, dim))
            gather.append(which + offset)
            offset += len(used)
            latents.append(data.latents[batch.images])
            noise.append(batch.noise)
            timesteps.append(batch.timesteps)
        hidden = bundle.encode_ids(torch.cat(ids), torch.cat(masks), torch.cat(rows))
        hidden = hidden[torch.cat(gather).to(hidden.device)]
        x0 = torch.cat(latents)
        per_sample = diffusion_loss(
            bundle,
            unet,
            x0,
            torch.cat(noise).to(x0.device),
            torch.cat(timesteps),
            hidden,
            reduction="none",
        )
        losses = per_sample.view(len(active), size).mean(1)
        terms, live = [], []
        for row, k in enumerate(active):
            value = losses[row].detach().item()
            extra = method.regulariser("inversion", vector=vectors[k], initial=initial)
            total = losses[row] if extra is None else losses[row] + extra
            if not is_finite(value) or not is_finite(total):
                outcomes[k].status, outcomes[k].diverged_at = "diverged", step
                continue
            terms.append(total)
            live.append((k, value))
        if terms:
            for k, _ in live:
                optimizers[k].zero_grad(set_to_none=True)
            torch.stack(terms).sum().backward()
        still = []
        for k, value in live:
            optimizers[k].step()
            outcomes[k].losses.append(value)
            with torch.no_grad():
                vector = vectors[k]
                if not is_finite(vector) or float(vector.norm()) > limit:
                    outcomes[k].status, outcomes[k].diverged_at = "diverged", step
                    continue
            still.append(k)
        active = still
    bar.close()
    for k, outcome in enumerate(outcomes):
        outcome.vector = vectors[k].detach().clone()
        if outcome.status == "ok":
            outcome.metrics = distance_metrics(outcome.vector, initial)
    return outcomes


# --- the cache-level entry used by runner.run_cases and the plugin -------------------------


def trained_dir(cache, entry) -> Path:
    return cache.root / TRAINED_DIR / entry.name


def save_trained(folder: Path, outcome: TrainOutcome, placeholder: str, seconds: float) -> None:
    from ..io import atomic_write_json, ensure_dir
    from .finetune import save_embedding

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
    from ..io import read_json
    from .finetune import load_embedding

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
    from ..cache import method_version
    from ..io import file_lock

    blob = json.dumps([group_key(specs[0]), world_version, method_version(method)])
    name = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return file_lock(cache.root / ".locks" / f"grid-{name}.lock")


def pretrain(specs, *, cache_dir: Path | None = None, progress: bool = False) -> int:
    """Train, batched, the inversion cases of `specs` that share everything but lr and have
    neither a cached result nor a trained slot; leave their outcomes in the cache.

    Returns how many cases were trained here. Specs that cannot be batched are ignored (the
    runner trains them one by one)."""
    from ..cache import ResultCache
    from ..errors import PtibenchError
    from ..methods import get_method
    from ..runner import validate_spec

    if not enabled():
        return 0
    groups: dict[str, list] = {}
    for spec in specs:
        try:
            validate_spec(spec)
            method = get_method(spec.method)
        except PtibenchError:  # the runner reports bad specs itself, one line per case
            continue
        if batchable(spec, method):
            groups.setdefault(group_key(spec), [])
            if spec not in groups[group_key(spec)]:
                groups[group_key(spec)].append(spec)
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
    from ..backends import load_bundle, resolve_world, world_version
    from ..concept import load_concept
    from ..methods import get_method

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
