"""What a benchmark case is (CaseSpec) and what it produces (CaseResult).

A spec is frozen and hashes to a stable key: the cache, the baselines and the reports all refer to
cases through it. Everything that changes the numbers is in the spec; nothing else is.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ptibench.errors import PtibenchError

STAGES = ("inversion", "finetune", "finetune-full")
DEFAULT_WORLD = "tiny-world"
DEFAULT_CONCEPT = "yellow-ring"
DEFAULT_METHOD = "pti"

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricInfo:
    """How to read one metric: which way is better and which side of the trade-off it is on."""

    name: str
    direction: Direction
    kind: Literal["reconstruction", "editability", "distance", "diagnostic"]
    description: str


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "lpips",
            "lower",
            "reconstruction",
            "LPIPS, reconstruction samples vs concept images, mean over pairs",
        ),
        MetricInfo(
            "clip_i",
            "higher",
            "reconstruction",
            "CLIP image cosine, reconstruction samples vs concept images",
        ),
        MetricInfo(
            "denoise_loss",
            "lower",
            "reconstruction",
            "noise-prediction loss on concept images, fixed timesteps and noise",
        ),
        MetricInfo(
            "appearance",
            "higher",
            "reconstruction",
            "oracle: share of reconstruction samples with the concept's shape and colour",
        ),
        MetricInfo(
            "clip_t",
            "higher",
            "editability",
            "CLIP text cosine, edit samples vs edit prompt with the class noun",
        ),
        MetricInfo(
            "edit_success",
            "higher",
            "editability",
            "oracle: share of edit samples showing what the edit prompt asks",
        ),
        MetricInfo(
            "leakage",
            "lower",
            "editability",
            "oracle: share of samples of context-free prompts that copy a training image's "
            "background and position, minus the base model's share on the same prompts",
        ),
        MetricInfo(
            "distance",
            "higher",
            "distance",
            "how far training moved from its start (embedding or weight delta norm)",
        ),
        MetricInfo(
            "cosine_to_init",
            "lower",
            "diagnostic",
            "inversion: cosine of the learned embedding to its initializer",
        ),
        MetricInfo("final_loss", "lower", "diagnostic", "training loss, mean of the last 50 steps"),
        MetricInfo(
            "edit_identity",
            "higher",
            "diagnostic",
            "oracle: share of edit samples still showing the concept's shape and colour (bar "
            "what the edit changes)",
        ),
        MetricInfo(
            "pivot_distance",
            "higher",
            "diagnostic",
            "stage 2: norm of the pivot's difference from the initializer's embedding",
        ),
    )
}


@dataclass(frozen=True)
class EvalConfig:
    """Sampling settings of the metrics; part of the spec because they change the numbers.

    Every prompt gets `samples_per_prompt` samples but the reconstruction prompt, which gets
    `reconstruction_factor` times as many: `appearance` and `leakage` are shares of one or a few
    prompts' samples, and at 32 a share moves by at most 0.09 at one standard error."""

    samples_per_prompt: int = 8
    sample_steps: int = 20
    guidance_scale: float = 4.0
    seed: int = 1234
    reconstruction_factor: int = 4

    @property
    def reconstruction_samples(self) -> int:
        return self.samples_per_prompt * self.reconstruction_factor

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        """Settings as stored; a record from before a field existed gets the value its numbers
        were computed with (LEGACY_EVAL), not today's default."""
        return cls(**{**LEGACY_EVAL, **data})


LEGACY_EVAL: dict[str, Any] = {"reconstruction_factor": 1}
"""What an evaluation did before these EvalConfig fields existed."""


@dataclass(frozen=True)
class CaseSpec:
    """One benchmark case: train `stage` of `method` at `lr` for `steps`, then measure."""

    stage: str
    lr: float
    world: str = DEFAULT_WORLD
    concept: str = DEFAULT_CONCEPT
    method: str = DEFAULT_METHOD
    steps: int = 1000
    seed: int = 0
    batch_size: int = 4
    pivot_lr: float | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    eval_every: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseSpec:
        data = dict(data)
        data["eval"] = EvalConfig.from_dict(data.get("eval", {}))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def key(self) -> str:
        """Stable 16-hex-digit hash of every field (floats by repr, so 1e-3 != 1.0001e-3)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_(self, **changes: Any) -> CaseSpec:
        return replace(self, **changes)

    @property
    def lr_id(self) -> str:
        """The id the benchmark and the baselines use for this lr, e.g. 'lr=5e-03'."""
        return f"lr={lr_key(self.lr)}"


@dataclass
class CaseResult:
    """Everything a case produced. `status` is 'ok' or 'diverged' (then `diverged_at` is set).
    `records` holds the per-sample readings behind the metrics (ptibench.evaluation.evaluate)."""

    spec: CaseSpec
    status: str
    metrics: dict[str, float]
    diverged_at: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spec"] = self.spec.to_dict()
        data["key"] = self.spec.key()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        data = dict(data)
        data.pop("key", None)
        data["spec"] = CaseSpec.from_dict(data["spec"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def lr_key(lr: float) -> str:
    """An lr as the benchmark ids and the baseline files key it: '5e-03', or '1.234e-03' when
    one significant digit would not give it back exactly."""
    return f"{lr:.0e}" if float(f"{lr:.0e}") == lr else f"{lr:.3e}"


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
    if ev.samples_per_prompt < 1 or ev.sample_steps < 1 or ev.reconstruction_factor < 1:
        raise PtibenchError(
            "eval.samples_per_prompt, eval.sample_steps and eval.reconstruction_factor must be "
            "positive"
        )
