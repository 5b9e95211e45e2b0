"""Context leakage, read by the tiny world's oracle.

`leakage`, a case metric on the editability side (lower is better): the share of samples of the
context-free prompts (CONTEXT_FREE_PROMPTS: they name no background and no position) in which the
oracle reads one of the training images' (background, position) contexts, minus the base model's
share on the same prompts with the class noun in place of the placeholder, same seeds. The rule
is a difference, not a ratio: it stays defined when the base model never copies, it reads in the
unit of the other shares (+0.3 = 30 samples in 100 more than the base model copy a training
context), and the base model scores 0 by construction. The base share depends on the world, the
concept and the sampling settings only, so it is computed once for them (`base_copies`).

The concept-order study reads the same numbers at each checkpoint, and adds what only it needs:
appearance over all prompts and `leakage_edit` (edit prompts that ask a context getting a
training one instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptibench.evaluation.sampling import generate, generate_rows
from ptibench.world import oracle

CONTEXT_KEYS = ("background", "position")

CONTEXT_FREE_PROMPTS = ("a {}", "a small {}", "a large {}")
"""Prompts that ask no context, in words the tiny world knows. Its training caption is "a {}";
the other two are phrased unlike it, so a copy there is not the caption's memory alone."""


@dataclass(frozen=True)
class Probe:
    """What the oracle checks for one concept, row by row of an evaluation's images
    (row 0 = the reconstruction prompt, then the edit prompts in concept.json order)."""

    appearance: dict[str, str]
    contexts: frozenset[tuple[str, str]]
    expects: tuple[dict[str, str] | None, ...]

    @property
    def asking_rows(self) -> list[int]:
        """Rows whose prompt asks a background or a position (what leakage_edit reads)."""
        return [i for i, e in enumerate(self.expects) if e and _asks_context(e)]

    def copies(self, readings: Sequence[Any]) -> list[bool]:
        """Per reading, whether it shows one of the training images' contexts."""
        return [(r.background, r.position) in self.contexts for r in readings]


def _asks_context(expect: Mapping[str, str]) -> bool:
    return any(key in expect for key in CONTEXT_KEYS)


def make_probe(concept) -> Probe | None:
    """The concept's probe, or None when concept.json gives no appearance or no image contexts."""
    if not concept.appearance:
        return None
    appearance = {k: v for k, v in concept.appearance.items() if k in ("shape", "colour")}
    contexts = frozenset(
        (image.meta["background"], image.meta["position"])
        for image in concept.images
        if all(isinstance(image.meta.get(k), str) for k in CONTEXT_KEYS)
    )
    if not appearance or not contexts:
        return None
    expects = (None, *(edit.expect for edit in concept.edit_prompts))
    return Probe(appearance, contexts, expects)


def sample_counts(concept, config) -> dict[str, int]:
    """Samples per context-free prompt: the reconstruction prompt's count where it is one of them
    (its samples serve both), `samples_per_prompt` for the others."""
    return {
        template: (
            config.reconstruction_samples
            if template == concept.reconstruction_prompt
            else config.samples_per_prompt
        )
        for template in CONTEXT_FREE_PROMPTS
    }


@dataclass(frozen=True)
class Copies:
    """Per context-free prompt (template, "{}" = the concept), whether each sample copies a
    training context."""

    templates: tuple[str, ...]
    hits: tuple[tuple[bool, ...], ...]

    @property
    def samples(self) -> int:
        return sum(len(row) for row in self.hits)

    @property
    def share(self) -> float:
        """Pooled over the prompts: every sample counts once."""
        return float(np.mean([hit for row in self.hits for hit in row]))

    def to_dict(self) -> dict[str, Any]:
        return {"templates": list(self.templates), "hits": [list(row) for row in self.hits]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Copies:
        return cls(
            tuple(data["templates"]), tuple(tuple(bool(h) for h in row) for row in data["hits"])
        )


def leakage_value(copies: Copies, base: Copies) -> float:
    """The case metric: the copy share over (minus) the base model's."""
    return copies.share - base.share


def read_rows(images: Sequence[np.ndarray]) -> list[list[Any]]:
    return [[oracle.read(image) for image in row] for row in images]


_BASE_CACHE: dict[tuple, Copies] = {}


def base_key(bundle, concept, config, probe: Probe) -> tuple:
    """What the base share depends on: the world, what the concept contributes (class noun,
    reconstruction prompt, training contexts) and the sampling settings."""
    return (
        bundle.version,
        concept.class_noun,
        concept.reconstruction_prompt,
        tuple(sorted(probe.contexts)),
        config,
    )


def base_copies(bundle, concept, config, probe: Probe) -> Copies:
    """The base model's copies on the context-free prompts with the class noun, same seeds and
    counts as a case's; once per process (the run layer also keeps them on disk)."""
    key = base_key(bundle, concept, config, probe)
    if key not in _BASE_CACHE:
        counts = sample_counts(concept, config)
        with torch.no_grad():
            embeds = bundle.encode([concept.with_class_noun(t) for t in counts])
            rows = generate_rows(bundle, embeds, list(counts.values()), config)
        hits = tuple(tuple(probe.copies(row)) for row in read_rows(rows))
        _BASE_CACHE[key] = Copies(tuple(counts), hits)
    return _BASE_CACHE[key]


def context_wins(probe: Probe, readings: Mapping[int, Sequence[Any]]) -> float | None:
    """Asking rows (`readings` by row index): share of samples showing a training context
    instead of the asked one."""
    wins = [
        (r.background, r.position) in probe.contexts and not r.matches(probe.expects[i])
        for i in probe.asking_rows
        for r in readings[i]
    ]
    return float(np.mean(wins)) if wins else None


def study_metrics(
    probe: Probe, images: np.ndarray, base_wins: float | None = None
) -> dict[str, float]:
    """What the concept-order study adds to a case's metrics at a checkpoint, from its sample
    sheet [rows, samples, H, W, 3]: appearance over all / the reconstruction / the edit rows,
    context_wins and, over the base model's (`base_edit_wins`), leakage_edit."""
    readings = read_rows(images)
    match = [[r.matches(probe.appearance) for r in row] for row in readings]
    out = {
        "appearance_all": float(np.mean([m for row in match for m in row])),
        "appearance_recon": float(np.mean(match[0])),
    }
    if len(match) > 1:
        out["appearance_edit"] = float(np.mean([m for row in match[1:] for m in row]))
    wins = context_wins(probe, dict(enumerate(readings)))
    if wins is not None:
        out["context_wins"] = wins
        if base_wins is not None:
            out["context_wins_base"] = base_wins
            out["leakage_edit"] = wins - base_wins
    return out


def leakage_readout(records: Mapping[str, Any]) -> dict[str, float]:
    """context_copy, context_copy_base and leakage from a case's records (see evaluate)."""
    record = records.get("leakage")
    if not record:
        return {}
    return {
        "context_copy": record["share"],
        "context_copy_base": record["base"]["share"],
        "leakage": record["value"],
    }


_WINS_CACHE: dict[tuple, float | None] = {}


def base_edit_wins(bundle, concept, config, probe: Probe) -> float | None:
    """context_wins of the base model on the concept's asking prompts with the class noun (same
    seeds and sampler as the evaluation); once per process."""
    templates = [concept.reconstruction_prompt] + [e.prompt for e in concept.edit_prompts]
    rows = probe.asking_rows
    key = (*base_key(bundle, concept, config, probe), tuple(templates))
    if key not in _WINS_CACHE:
        if not rows:
            return None
        with torch.no_grad():
            embeds = bundle.encode([concept.with_class_noun(templates[i]) for i in rows])
            images = generate(bundle, embeds, config)
        _WINS_CACHE[key] = context_wins(probe, dict(zip(rows, read_rows(images), strict=True)))
    return _WINS_CACHE[key]
