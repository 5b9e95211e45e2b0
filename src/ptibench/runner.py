"""run_case: train one case, measure it, save its artifacts, cache the result.

The plain-Python entry point (scripts, notebooks, the pytest plugin): a finished case comes back
from the cache instantly; a new one is computed under a per-case file lock, so concurrent
workers asking for the same case compute it once. Training that diverges is a result
(status "diverged"), not an exception; bad input is a PtibenchError with one line.
"""

from __future__ import annotations

import functools
import math
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from . import compiling
from .backends import load_bundle, load_metric_models, resolve_world, world_version
from .cache import ResultCache, method_version
from .concept import load_concept
from .concept_order import Tracker
from .errors import PtibenchError
from .io import atomic_copy, atomic_write_json, ensure_dir
from .methods import get_method
from .metrics import evaluate
from .pipelines import save_learned_embeds
from .sampling import grid
from .spec import STAGES, CaseResult, CaseSpec
from .stages import StageContext, TrainingData
from .stages.batched import batchable, discard_trained, load_trained, pretrain
from .stages.finetune import get_pivot, pivot_spec, save_embedding

PACKAGES = ("torch", "diffusers", "transformers", "peft", "open_clip_torch", "lpips", "ptibench")


def validate_spec(spec: CaseSpec) -> None:
    """Refuse what cannot be run, before anything loads."""
    if spec.stage not in STAGES:
        raise PtibenchError(f"unknown stage {spec.stage!r} (choose from {', '.join(STAGES)})")
    if not isinstance(spec.lr, int | float) or not math.isfinite(spec.lr) or spec.lr < 0:
        raise PtibenchError(f"lr must be a finite number >= 0, got {spec.lr!r}")
    if not isinstance(spec.steps, int) or spec.steps < 1:
        raise PtibenchError(f"steps must be a positive integer, got {spec.steps!r}")
    if not isinstance(spec.batch_size, int) or spec.batch_size < 1:
        raise PtibenchError(f"batch_size must be a positive integer, got {spec.batch_size!r}")
    if spec.pivot_lr is not None and not (math.isfinite(spec.pivot_lr) and spec.pivot_lr > 0):
        raise PtibenchError(f"pivot_lr must be a finite number > 0, got {spec.pivot_lr!r}")
    if spec.eval_every is not None and spec.eval_every < 1:
        raise PtibenchError(f"eval_every must be a positive integer, got {spec.eval_every!r}")
    ev = spec.eval
    if ev.samples_per_prompt < 1 or ev.sample_steps < 1:
        raise PtibenchError("eval.samples_per_prompt and eval.sample_steps must be positive")


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(spec: CaseSpec, world, version: str, method, device) -> dict[str, Any]:
    """What a baseline mismatch would be explained by: versions, device, dtype, seed, commit."""
    return {
        "versions": {p: _version(p) for p in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "dtype": world.dtype,
        "threads": torch.get_num_threads(),
        "compiled": compiling.enabled(world),
        "seed": spec.seed,
        "git_commit": _git_commit(),
        "world": world.name,
        "world_version": version,
        "method": method.name,
        "method_version": method.version,
        "method_key": method_version(method),
    }


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated by torch; CPU: the process's peak RSS (so far, not per case)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save_lora(unet, folder: Path) -> Path:
    """pytorch_lora_weights.safetensors in the layout pipe.load_lora_weights reads."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {k: v.detach().float().cpu().contiguous() for k, v in layers.items()}
    StableDiffusionPipeline.save_lora_weights(
        str(folder), unet_lora_layers=layers, safe_serialization=True
    )
    return folder / "pytorch_lora_weights.safetensors"


def _execute(
    spec, world, version, concept, method, cache, staging, progress, entry=None
) -> CaseResult:
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    bundle = load_bundle(world)
    models = load_metric_models(world)
    if bundle.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(bundle.device)
    reference, notes = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, reference)
    timings["load_s"] = time.perf_counter() - clock

    def run_eval(vector, unet, show: bool):
        return evaluate(
            bundle,
            models,
            concept,
            reference,
            data.latents,
            vector,
            spec.eval,
            unet=unet,
            oracle=world.oracle,
            progress=show,
        )

    # spec.eval_every: curves (step 0, every N steps, the end) with the concept-order metrics
    tracker = None
    if spec.eval_every:
        tracker = Tracker(spec, bundle, concept, lambda v, u: run_eval(v, u, False), world.oracle)

    ctx = StageContext(
        spec, concept, bundle, data, progress, tracker.checkpoint if tracker else None
    )
    if spec.stage != "inversion":
        clock = time.perf_counter()
        pivot_path = cache.pivot_path(pivot_spec(spec), version, method)
        ctx.pivot, trained = get_pivot(ctx, method, pivot_path)
        timings["pivot_s"] = time.perf_counter() - clock if trained else 0.0
    if tracker:
        clock = time.perf_counter()
        tracker.begin(ctx.pivot)
        timings["curve_start_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    pretrained = None
    if entry is not None and batchable(spec, method):
        pretrained = load_trained(cache, entry)  # left by a batched grid run (run_cases)
    if pretrained is not None:
        outcome, timings["train_s"] = pretrained  # its share of the batched run's time
    else:
        with torch.random.fork_rng(devices=[]):
            outcome = method.train(spec.stage, ctx)
        timings["train_s"] = time.perf_counter() - clock

    artifacts: dict[str, str] = {}
    metrics: dict[str, float] = {}
    if outcome.final_loss is not None and math.isfinite(outcome.final_loss):
        metrics["final_loss"] = outcome.final_loss
    timings["eval_s"] = 0.0
    evaluation = None
    if outcome.status == "ok":
        embeds = staging / "learned_embeds.safetensors"
        save_learned_embeds(bundle, embeds, concept.placeholder, outcome.vector)
        artifacts["learned_embeds"] = str(embeds)
        if spec.stage == "inversion":
            slot = cache.pivot_path(pivot_spec(spec.with_(pivot_lr=spec.lr)), version, method)
            if not slot.is_file():
                save_embedding(slot, concept.placeholder, outcome.vector)
        clock = time.perf_counter()
        evaluation = run_eval(outcome.vector, outcome.unet, progress)
        timings["eval_s"] = time.perf_counter() - clock
        metrics.update(evaluation.metrics)
        metrics.update(outcome.metrics)
        try:
            if outcome.lora:
                artifacts["lora"] = str(_save_lora(outcome.unet, staging))
            elif outcome.unet is not None:
                outcome.unet.save_pretrained(str(staging / "unet"), safe_serialization=True)
                artifacts["unet"] = str(staging / "unet")
            grid(evaluation.images).save(staging / "samples.png")
        except OSError as error:
            raise PtibenchError(f"cannot write artifacts in {staging}: {error}") from error
        atomic_write_json(staging / "samples.json", {"rows": evaluation.prompts})
        artifacts["samples"] = str(staging / "samples.png")
    env = environment(spec, world, version, method, bundle.device)
    env["notes"] = list(concept.notes) + list(notes)
    return CaseResult(
        spec=spec,
        status=outcome.status,
        metrics={k: float(v) for k, v in metrics.items() if math.isfinite(v)},
        diverged_at=outcome.diverged_at,
        timings=timings,
        peak_memory_mb=_peak_memory_mb(bundle.device),
        artifacts=artifacts,
        environment=env,
        curves=tracker.finish(outcome, evaluation) if tracker else outcome.curves,
    )


def _export(result: CaseResult, folder: Path) -> CaseResult:
    """Copy a case's artifacts to `folder` (atomically, file by file)."""
    ensure_dir(folder)
    moved = {}
    for name, source in result.artifacts.items():
        source_path = Path(source)
        target = folder / source_path.name
        if source_path.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source_path, target)
        else:
            atomic_copy(source_path, target)
        moved[name] = str(target)
    return replace(result, artifacts=moved)


def run_case(
    spec: CaseSpec,
    *,
    cache_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    progress: bool | None = None,
) -> CaseResult:
    """Run (or fetch from the cache) one case. See the module docstring."""
    started = time.perf_counter()
    validate_spec(spec)
    method = get_method(spec.method)
    if spec.stage not in method.stages:
        raise PtibenchError(
            f"method {method.name!r} has no stage {spec.stage!r} "
            f"(it has {', '.join(method.stages)})"
        )
    world = resolve_world(spec.world)
    concept = load_concept(spec.concept)
    cache = ResultCache(cache_dir)
    version = world_version(world)
    entry = cache.entry(spec, version, method)
    with cache.lock(entry):
        result = cache.load(entry)
        if result is None:
            staging = cache.staging(entry)
            try:
                result = _execute(
                    spec,
                    world,
                    version,
                    concept,
                    method,
                    cache,
                    staging,
                    _progress(progress),
                    entry,
                )
                result.timings["total_s"] = time.perf_counter() - started
                result = cache.store(entry, result, staging)
                discard_trained(cache, entry)
            except BaseException as error:
                cache.discard(staging)
                problem = _write_problem(error)
                if problem is None:
                    raise
                raise PtibenchError(f"cannot write in the cache {cache.root}: {problem}") from error
    if artifacts_dir is not None:
        result = _export(result, Path(artifacts_dir) / spec.key())
    return result


def _write_problem(error: BaseException) -> str | None:
    """The disk problem behind an exception raised while a case wrote its files (disk full,
    read-only folder), as a short phrase; None for anything else. The safetensors writer
    reports OS errors as its own exception type, with the OS message inside."""
    if isinstance(error, PtibenchError):
        return None
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror or error}{where}"
    if type(error).__name__ == "SafetensorError" and "I/O error" in str(error):
        return str(error).split("I/O error:", 1)[1].strip()
    return None


def run_cases(
    specs: list[CaseSpec],
    *,
    cache_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    progress: bool | None = None,
) -> list[CaseResult]:
    """The results of run_case on each spec, in order. The stage-1 cases that differ only in lr
    are trained first in one batched run (ptibench.stages.batched; PTIBENCH_BATCH_GRID=0 turns
    it off), then each is evaluated and cached as run_case does."""
    pretrain(specs, cache_dir=cache_dir, progress=_progress(progress))
    return [
        run_case(s, cache_dir=cache_dir, artifacts_dir=artifacts_dir, progress=progress)
        for s in specs
    ]
