"""Curves: a case evaluated at step 0, every `spec.eval_every` steps and at its end.

Evaluation draws no random numbers from training's streams, so the trained embedding / weights
and the final metrics are bitwise those of the plain run. Each point holds the case metrics,
the leakage readings (ptibench.evaluation.leakage: the case metric `leakage` with its copy shares,
and the study's own appearance and leakage_edit) on worlds with an oracle, and `distance`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from ptibench.evaluation.leakage import (
    base_edit_wins,
    leakage_readout,
    make_probe,
    study_metrics,
)
from ptibench.training.finetune import lora_distance, weight_distance

_START_CACHE: dict[tuple, dict[str, Any]] = {}


class Tracker:
    """Builds a case's curve: the start point, the checkpoints, the final point.

    `run_eval(vector, unet)` is the case's own evaluation (an evaluation.evaluate.Evaluation).
    Used by ptibench.run.runner when spec.eval_every is set; it never touches training's state.
    """

    def __init__(self, spec, bundle, concept, run_eval: Callable, oracle: bool):
        self.spec, self.bundle, self.concept, self.run_eval = spec, bundle, concept, run_eval
        self.probe = make_probe(concept) if oracle else None
        self.initial = None
        self.start: dict[str, Any] | None = None
        self._base_params: dict | None = None

    def oracle_point(self, evaluation) -> dict[str, float]:
        """The study's readings of one evaluation: the case's own leakage with its copy shares,
        and what only the study reads (appearance over all prompts, leakage_edit)."""
        if self.probe is None:
            return {}
        wins = base_edit_wins(self.bundle, self.concept, self.spec.eval, self.probe)
        return {
            **study_metrics(self.probe, evaluation.images, wins),
            **leakage_readout(evaluation.records),
        }

    def point(self, evaluation, vector, unet) -> dict[str, float]:
        metrics = dict(evaluation.metrics)
        metrics.update(self.oracle_point(evaluation))
        distance = self.distance(vector, unet)
        if distance is not None:
            metrics["distance"] = distance
        return metrics

    def distance(self, vector, unet) -> float | None:
        if self.spec.stage == "inversion":
            if self.initial is None:
                return None
            return float((vector.detach().double() - self.initial.double()).norm())
        if unet is None:
            return 0.0

        try:
            if self.spec.stage == "finetune-full":
                if self._base_params is None:
                    self._base_params = dict(self.bundle.unet.named_parameters())
                return weight_distance(unet, self._base_params)
            return lora_distance(unet)
        except (KeyError, RuntimeError, AttributeError):
            return None

    def begin(self, pivot=None) -> None:
        """Evaluate the start: the initializer's embedding (stage 1) or the pivot (stage 2)."""
        if self.spec.stage == "inversion":
            vector = self.bundle.word_embedding(self.concept.initializer).to(self.bundle.device)
            self.initial = vector
        else:
            vector = pivot
        key = (
            self.bundle.version,
            str(self.concept.folder),
            self.spec.eval,
            self.probe is not None,
            hashlib.sha256(vector.detach().float().cpu().numpy().tobytes()).hexdigest(),
        )
        if key not in _START_CACHE:  # every lr of a stage starts from the same point
            evaluation = self.run_eval(vector, None)
            _START_CACHE[key] = {"step": 0, **self.point(evaluation, vector, None)}
        self.start = dict(_START_CACHE[key])

    def checkpoint(self, step: int, vector, unet) -> dict[str, float]:
        return self.point(self.run_eval(vector, unet), vector, unet)

    def finish(self, outcome, evaluation=None) -> list[dict[str, Any]]:
        """The whole curve: start, checkpoints, and (when training ended ok) the final point."""
        curves = ([self.start] if self.start else []) + list(outcome.curves)
        if evaluation is not None:
            metrics = dict(evaluation.metrics)
            metrics.update(self.oracle_point(evaluation))
            metrics.update(outcome.metrics)
            loss = outcome.losses[-1] if outcome.losses else None
            curves.append({"step": self.spec.steps, "loss": loss, **metrics})
        return curves
