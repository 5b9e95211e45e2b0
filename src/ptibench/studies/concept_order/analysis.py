"""Concept-order analysis: from a case's curve, the first step at which appearance has reached
`share` (0.8) of its final gain over the start, the first at which leakage exceeds `bound` (+0.1
over the base model), the light window (checkpoints with appearance reached and leakage within
the bound) and the lead of appearance over leakage, in steps and in distance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptibench.spec import STAGES

DEFAULT_SHARE = 0.8


DEFAULT_BOUND = 0.1


DEFAULT_MIN_GAIN = 0.1
"""A curve whose appearance gains less than this (a share of samples) has learned nothing to
measure a share of: with 8 samples x 9 prompts one sample is 0.014, so 0.1 is ~7 samples."""


DEFAULT_APPEARANCE = "all"


APPEARANCE_SCOPES = {
    "all": ("appearance_all", "all prompts"),
    "recon": ("appearance_recon", "the reconstruction prompt"),
    "edit": ("appearance_edit", "the edit prompts"),
}
"""Which prompts' samples the appearance curve is read from: `recon` is what the case metric
`appearance` measures; `all` (the default) also asks that edits keep the concept."""


CURVE_METRICS = (
    "appearance_all",
    "appearance_recon",
    "appearance_edit",
    "context_copy",
    "context_copy_base",
    "leakage",
    "context_wins",
    "context_wins_base",
    "leakage_edit",
)


@dataclass
class CurveSummary:
    """One case's curve, read against the thresholds."""

    stage: str
    lr: float
    seed: int
    steps: list[int]
    distance: list[float | None]
    appearance: list[float]
    leakage: list[float | None]
    leakage_edit: list[float | None]
    status: str = "ok"
    gain: float | None = None
    appearance_step: int | None = None
    appearance_distance: float | None = None
    leakage_step: int | None = None
    leakage_distance: float | None = None
    window: list[int] = field(default_factory=list)

    @property
    def lead_steps(self) -> int | None:
        if self.appearance_step is None or self.leakage_step is None:
            return None
        return self.leakage_step - self.appearance_step

    @property
    def lead_distance(self) -> float | None:
        if self.appearance_distance is None or self.leakage_distance is None:
            return None
        return self.leakage_distance - self.appearance_distance

    @property
    def verdict(self) -> str:
        if self.appearance_step is None:
            return "no appearance gain"
        if self.leakage_step is None:
            return "appearance first; leakage stayed under the bound"
        if self.leakage_step > self.appearance_step:
            return "appearance first"
        if self.leakage_step == self.appearance_step:
            return "together"
        return "leakage first"


def _value(point: Mapping[str, Any], name: str) -> float | None:
    value = point.get(name)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def summarise(
    case: Mapping[str, Any],
    share: float = DEFAULT_SHARE,
    bound: float = DEFAULT_BOUND,
    min_gain: float = DEFAULT_MIN_GAIN,
    appearance: str = DEFAULT_APPEARANCE,
) -> CurveSummary | None:
    """A case's curve summary, or None when its curve has no oracle metrics."""
    metric = APPEARANCE_SCOPES[appearance][0]
    points = sorted(case.get("curves") or [], key=lambda p: p["step"])
    points = [p for p in points if _value(p, metric) is not None]
    if len(points) < 2:
        return None
    spec = case["spec"]
    summary = CurveSummary(
        stage=spec["stage"],
        lr=float(spec["lr"]),
        seed=int(spec.get("seed", 0)),
        steps=[int(p["step"]) for p in points],
        distance=[_value(p, "distance") for p in points],
        appearance=[_value(p, metric) for p in points],
        leakage=[_value(p, "leakage") for p in points],
        leakage_edit=[_value(p, "leakage_edit") for p in points],
        status=case.get("status", "ok"),
    )
    start, final = summary.appearance[0], summary.appearance[-1]
    summary.gain = final - start
    reached = [False] * len(points)
    if summary.gain >= min_gain:
        target = start + share * summary.gain
        reached = [a >= target - 1e-12 for a in summary.appearance]
        first = reached.index(True)
        summary.appearance_step = summary.steps[first]
        summary.appearance_distance = summary.distance[first]
    leaking = [leak is not None and leak > bound for leak in summary.leakage]
    if any(leaking):
        first = leaking.index(True)
        summary.leakage_step = summary.steps[first]
        summary.leakage_distance = summary.distance[first]
    summary.window = [
        step
        for step, ok, leak in zip(summary.steps, reached, summary.leakage, strict=True)
        if ok and leak is not None and leak <= bound
    ]
    return summary


def analyse(cases: Sequence[Mapping[str, Any]], **thresholds) -> dict[str, list[CurveSummary]]:
    """Curve summaries by stage (in STAGES order), lrs ascending."""

    by_stage: dict[str, list[CurveSummary]] = {}
    for case in cases:
        summary = summarise(case, **thresholds)
        if summary is not None:
            by_stage.setdefault(summary.stage, []).append(summary)
    order = {stage: i for i, stage in enumerate(STAGES)}
    return {
        stage: sorted(rows, key=lambda s: (s.lr, s.seed))
        for stage, rows in sorted(by_stage.items(), key=lambda kv: order.get(kv[0], 99))
    }


def finished_cases(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in document.get("cases", []) if c.get("status") in ("ok", "diverged")]
