"""run_case: train one case, measure it, save its artifacts, cache the result.

The plain-Python entry point (scripts, notebooks, the pytest plugin): a finished case comes back
from the cache instantly; a new one is computed under a per-case file lock, so concurrent
workers asking for the same case compute it once. Training that diverges is a result
(status "diverged"), not an exception; bad input is a PtibenchError with one line.
"""

from __future__ import annotations

import math
import platform
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ptibench.case_options import deterministic, sample_dtype
from ptibench.concept import load_concept
from ptibench.errors import PtibenchError
from ptibench.evaluation.evaluate import evaluate
from ptibench.evaluation.leakage import Copies, base_copies, make_probe
from ptibench.evaluation.sample_sheet import labelled_grid
from ptibench.io import atomic_copy, atomic_write_json, ensure_dir, read_json
from ptibench.models.artifacts import save_embedding, save_learned_embeds, save_lora
from ptibench.models.loading import load_bundle, world_version
from ptibench.models.metric_models import load_metric_models
from ptibench.models.registry import resolve_world
from ptibench.provenance import cpu_model, package_commit, versions
from ptibench.run.cache import ResultCache, code_version, method_version
from ptibench.run.curves import Tracker
from ptibench.run.pretrain import discard_trained, group_trainable, load_trained, pretrain
from ptibench.spec import CaseResult, CaseSpec, lr_key, validate_spec
from ptibench.training import compiling
from ptibench.training.finetune import get_pivot, pivot_spec
from ptibench.training.loop import StageContext, TrainingData, TrainOutcome
from ptibench.training.methods import get_method


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


def environment(spec: CaseSpec, world, version: str, method, device) -> dict[str, Any]:
    """What a baseline mismatch would be explained by: versions, device, dtype, seed, commit."""
    return {
        "versions": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cpu": cpu_model() if torch.device(device).type == "cpu" else None,
        "dtype": world.dtype,
        "threads": torch.get_num_threads(),
        "compiled": compiling.enabled(world),
        "deterministic": torch.device(device).type == "cuda" and deterministic(),
        "sample_dtype": sample_dtype(world.dtype),
        "seed": spec.seed,
        "git_commit": package_commit(),
        "world": world.name,
        "world_version": version,
        "method": method.name,
        "method_version": method.version,
        "method_key": method_version(method),
        "code_version": code_version(),
    }


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated by torch; CPU: the process's peak RSS (so far, not per case)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_metrics(outcome: TrainOutcome, evaluation) -> dict[str, float]:
    """A case's metrics: the training's final loss, the evaluation's readings (None: not
    evaluated) and the training's own metrics (distances), finite ones only."""
    metrics: dict[str, float] = {}
    if outcome.final_loss is not None:
        metrics["final_loss"] = outcome.final_loss
    if evaluation is not None:
        metrics.update(evaluation.metrics)
        metrics.update(outcome.metrics)
    return {name: float(value) for name, value in metrics.items() if math.isfinite(value)}


@dataclass
class CaseRun:
    """One case being computed: what it was asked (spec, world, concept, method), where it
    writes (cache entry, staging folder), and what it has loaded so far."""

    spec: CaseSpec
    world: Any
    version: str
    concept: Any
    method: Any
    cache: ResultCache
    staging: Path
    progress: bool
    entry: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    base: Copies | None = None
    sampled: list | None = None

    def load(self) -> list[str]:
        """The pipeline, the metric models, the concept's pixels and the training data; the
        notes the concept's images raised."""
        clock = time.perf_counter()
        self.bundle = load_bundle(self.world)
        self.models = load_metric_models(self.world)
        if self.bundle.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.bundle.device)
        self.reference, notes = self.concept.pixels(self.bundle.resolution)
        self.data = TrainingData.build(self.bundle, self.concept, self.reference)
        self.timings["load_s"] = time.perf_counter() - clock
        return notes

    def execute(self) -> CaseResult:
        notes = self.load()
        # spec.eval_every: curves (step 0, every N steps, the end) with the leakage readings
        tracker = None
        if self.spec.eval_every:
            quiet = lambda vector, unet: self.evaluate(vector, unet, False)  # noqa: E731
            tracker = Tracker(self.spec, self.bundle, self.concept, quiet, self.world.oracle)
        outcome = self.train(tracker)
        artifacts, evaluation = self.measure(outcome)
        metrics = case_metrics(outcome, evaluation)
        env = environment(self.spec, self.world, self.version, self.method, self.bundle.device)
        env["notes"] = list(self.concept.notes) + list(notes)
        return CaseResult(
            spec=self.spec,
            status=outcome.status,
            metrics=metrics,
            diverged_at=outcome.diverged_at,
            timings=self.timings,
            peak_memory_mb=_peak_memory_mb(self.bundle.device),
            artifacts=artifacts,
            environment=env,
            curves=tracker.finish(outcome, evaluation) if tracker else outcome.curves,
            records=evaluation.records if evaluation is not None else {},
        )

    def evaluate(self, vector, unet, show: bool, sampled=None):
        return evaluate(
            self.bundle,
            self.models,
            self.concept,
            self.reference,
            self.data.latents,
            vector,
            self.spec.eval,
            unet=unet,
            oracle=self.world.oracle,
            progress=show,
            base=self.leakage_base(),
            sampled=sampled,
        )

    def leakage_base(self) -> Copies | None:
        """The base model's context copies (leakage's reference) for this world, concept and
        evaluation settings: read from the cache, or computed once under a lock and kept there,
        so the cases that share them never sample the base model again."""
        probe = make_probe(self.concept) if self.world.oracle else None
        if probe is None or self.base is not None:
            return self.base
        path = self.cache.base_path(self.spec, self.version)
        with self.cache.base_lock(path):
            try:
                self.base = Copies.from_dict(read_json(path))
            except (PtibenchError, KeyError, TypeError, ValueError):
                self.base = base_copies(self.bundle, self.concept, self.spec.eval, probe)
                atomic_write_json(path, self.base.to_dict())
        return self.base

    def context(self, tracker) -> StageContext:
        return StageContext(
            self.spec,
            self.concept,
            self.bundle,
            self.data,
            self.progress,
            tracker.checkpoint if tracker else None,
        )

    def pivot_path(self) -> Path:
        """Where this stage-2 case's pivot is shared in the cache."""
        return self.cache.pivot_path(pivot_spec(self.spec), self.version, self.method)

    def train(self, tracker) -> TrainOutcome:
        """The pivot (stage 2), the curve's start, then the stage: trained here, or the share a
        batched grid run left in the cache (run_cases)."""
        spec, timings = self.spec, self.timings
        ctx = self.context(tracker)
        if spec.stage != "inversion":
            clock = time.perf_counter()
            ctx.pivot, trained = get_pivot(ctx, self.method, self.pivot_path())
            timings["pivot_s"] = time.perf_counter() - clock if trained else 0.0
        if tracker:
            clock = time.perf_counter()
            tracker.begin(ctx.pivot)
            timings["curve_start_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        pretrained = None
        if self.entry is not None and group_trainable(spec, self.method):
            pretrained = load_trained(self.cache, self.entry, (self.bundle, spec, self.method))
        if pretrained is not None:
            # its share of the group run (and the pivot that run trained first), which ran
            # before this case started: not in total_s, so batched_train_s says how much
            timings["train_s"] = pretrained.train_s
            if pretrained.pivot_s:
                timings["pivot_s"] = pretrained.pivot_s
            timings["batched_train_s"] = pretrained.train_s + pretrained.pivot_s
            if pretrained.samples is not None:
                self.sampled = pretrained.samples
                timings["batched_eval_s"] = pretrained.sample_s
            return pretrained.outcome
        with torch.random.fork_rng(devices=[]):
            outcome = self.method.train(spec.stage, ctx)
        timings["train_s"] = time.perf_counter() - clock
        timings["batched_train_s"] = 0.0
        return outcome

    def measure(self, outcome: TrainOutcome):
        """Evaluate a sound outcome and write its artifacts; (artifacts, evaluation or None)."""
        spec, staging, placeholder = self.spec, self.staging, self.concept.placeholder
        self.timings["eval_s"] = 0.0
        if outcome.status != "ok":
            return {}, None
        embeds = staging / "learned_embeds.safetensors"
        save_learned_embeds(self.bundle, embeds, placeholder, outcome.vector)
        artifacts = {"learned_embeds": str(embeds)}
        if spec.stage == "inversion" and not self.timings.get("batched_train_s"):
            # only a case trained alone: its vector is bitwise the one get_pivot would train,
            # so a stage-2 case's pivot does not depend on which case ran first
            pivot = pivot_spec(spec.with_(pivot_lr=spec.lr))
            slot = self.cache.pivot_path(pivot, self.version, self.method)
            if not slot.is_file():
                save_embedding(slot, placeholder, outcome.vector)
        clock = time.perf_counter()
        evaluation = self.evaluate(outcome.vector, outcome.unet, self.progress, self.sampled)
        # images the group run sampled: their share of its sampling time counts as evaluation
        shared = self.timings.get("batched_eval_s", 0.0)
        self.timings["eval_s"] = time.perf_counter() - clock + shared
        try:
            if outcome.lora:
                artifacts["lora"] = str(save_lora(outcome.unet, staging))
            elif outcome.unet is not None:
                outcome.unet.save_pretrained(str(staging / "unet"), safe_serialization=True)
                artifacts["unet"] = str(staging / "unet")
            self.sample_sheet(evaluation).save(staging / "samples.png")
        except OSError as error:
            raise PtibenchError(f"cannot write artifacts in {staging}: {error}") from error
        atomic_write_json(staging / "samples.json", {"rows": evaluation.prompts})
        artifacts["samples"] = str(staging / "samples.png")
        return artifacts, evaluation

    def sample_sheet(self, evaluation):
        """The samples, one labelled row per prompt, under the concept's training images."""
        spec = self.spec
        title = (
            f"{spec.stage} / {spec.method}  lr={lr_key(spec.lr)}  {spec.steps} steps  "
            f"seed {spec.seed}  ({self.concept.name}, {self.world.name})"
        )
        return labelled_grid(evaluation.images, evaluation.prompts, title, self.reference)


def export_artifacts(result: CaseResult, folder: Path) -> CaseResult:
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


def resolve_case(spec: CaseSpec, cache_dir: Path | None):
    """What `spec` names, checked: (world, world version, concept, method, cache)."""
    validate_spec(spec)
    method = get_method(spec.method)
    if spec.stage not in method.stages:
        raise PtibenchError(
            f"method {method.name!r} has no stage {spec.stage!r} "
            f"(it has {', '.join(method.stages)})"
        )
    world = resolve_world(spec.world)
    concept = load_concept(spec.concept)
    return world, world_version(world), concept, method, ResultCache(cache_dir)


def train_pivot(
    spec: CaseSpec, *, cache_dir: Path | None = None, progress: bool | None = None
) -> Path:
    """Train the pivot of stage-2 case `spec` into the cache, as run_case would before the
    case, unless it is there already; returns its path. A distributed run trains each pivot
    once, ahead of the stage-2 cases that share it."""
    world, version, concept, method, cache = resolve_case(spec, cache_dir)
    if spec.stage == "inversion":
        raise PtibenchError(f"{spec.stage} {spec.lr_id} has no pivot (only stage 2 has)")
    run = CaseRun(spec, world, version, concept, method, cache, Path(), _progress(progress))
    path = run.pivot_path()
    if not path.is_file():
        run.load()
        get_pivot(run.context(None), method, path)
    return path


def run_case(
    spec: CaseSpec,
    *,
    cache_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    progress: bool | None = None,
) -> CaseResult:
    """Run (or fetch from the cache) one case. See the module docstring."""
    started = time.perf_counter()
    world, version, concept, method, cache = resolve_case(spec, cache_dir)
    entry = cache.entry(spec, version, method)
    with cache.lock(entry):
        result = cache.load(entry)
        if result is None:
            staging = cache.staging(entry)
            try:
                run = CaseRun(
                    spec, world, version, concept, method, cache, staging, _progress(progress)
                )
                run.entry = entry
                result = run.execute()
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
        result = export_artifacts(result, Path(artifacts_dir) / spec.key())
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
    executor: Any = "local",
) -> list[CaseResult]:
    """The results of run_case on each spec, in order. The cases that differ only in lr are
    trained first in group runs (stage 1 batched, stage-2 LoRA stacked: ptibench.run.pretrain;
    PTIBENCH_BATCH_GRID=0 turns them off), then each is evaluated and cached as run_case does.

    `executor`: "local" (here, in this process) or an executor object with the same
    `run_cases` method, such as ptibench.run.ray_executor.RayExecutor, which runs the cases on
    a Ray cluster and writes the same cache."""
    if not isinstance(executor, str):
        return executor.run_cases(
            specs, cache_dir=cache_dir, artifacts_dir=artifacts_dir, progress=progress
        )
    if executor != "local":
        raise PtibenchError(
            f"unknown executor {executor!r}: pass 'local' or an executor object, e.g. "
            "ptibench.run.ray_executor.RayExecutor(address='auto')"
        )
    pretrain(specs, cache_dir=cache_dir, progress=_progress(progress))
    return [
        run_case(s, cache_dir=cache_dir, artifacts_dir=artifacts_dir, progress=progress)
        for s in specs
    ]
