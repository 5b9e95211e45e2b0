"""Context leakage, read by the tiny world's oracle: how often samples of prompts that ask no
background or position reproduce a training image's (background, position), and how often edit
prompts that do ask one get a training image's context instead; each over the base model's rate
with the class noun in place of the placeholder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptibench.evaluation.sampling import generate
from ptibench.world import oracle

CONTEXT_KEYS = ("background", "position")


@dataclass(frozen=True)
class Probe:
    """What the oracle checks for one concept, row by row of an evaluation's images
    (row 0 = the reconstruction prompt, then the edit prompts in concept.json order)."""

    appearance: dict[str, str]
    contexts: frozenset[tuple[str, str]]
    expects: tuple[dict[str, str] | None, ...]

    @property
    def free_rows(self) -> list[int]:
        """Rows whose prompt asks neither a background nor a position."""
        return [i for i, e in enumerate(self.expects) if not (e and _asks_context(e))]

    @property
    def asking_rows(self) -> list[int]:
        return [i for i, e in enumerate(self.expects) if e and _asks_context(e)]


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


def _read_rows(images: np.ndarray) -> list[list[Any]]:

    return [[oracle.read(image) for image in row] for row in images]


def context_rates(probe: Probe, readings: Sequence[Sequence[Any]]) -> dict[str, float]:
    """context_copy (free rows) and context_wins (asking rows), pooled over samples."""
    copies = [
        (r.background, r.position) in probe.contexts for i in probe.free_rows for r in readings[i]
    ]
    wins = [
        (r.background, r.position) in probe.contexts and not r.matches(probe.expects[i])
        for i in probe.asking_rows
        for r in readings[i]
    ]
    rates = {}
    if copies:
        rates["context_copy"] = float(np.mean(copies))
    if wins:
        rates["context_wins"] = float(np.mean(wins))
    return rates


def oracle_metrics(
    probe: Probe, images: np.ndarray, base: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The concept-order metrics of one evaluation's images [rows, samples, H, W, 3]; `base` holds
    the base model's context_copy / context_wins on the class-noun prompts (see base_rates)."""
    readings = _read_rows(images)
    match = [[r.matches(probe.appearance) for r in row] for row in readings]
    out = {
        "appearance_all": float(np.mean([m for row in match for m in row])),
        "appearance_recon": float(np.mean(match[0])),
    }
    if len(match) > 1:
        out["appearance_edit"] = float(np.mean([m for row in match[1:] for m in row]))
    rates = context_rates(probe, readings)
    out.update(rates)
    for name, leak in (("context_copy", "leakage"), ("context_wins", "leakage_edit")):
        if name in rates and base and name in base:
            out[f"{name}_base"] = base[name]
            out[leak] = rates[name] - base[name]
    return out


_BASE_CACHE: dict[tuple, dict[str, float]] = {}


def base_rates(bundle, concept, config, probe: Probe) -> dict[str, float]:
    """context_copy / context_wins of the base model on the concept's prompts with the class noun
    instead of the placeholder (same seeds and sampler as the evaluation); once per process."""
    templates = [concept.reconstruction_prompt] + [e.prompt for e in concept.edit_prompts]
    key = (bundle.version, str(concept.folder), concept.class_noun, tuple(templates), config)
    if key not in _BASE_CACHE:
        import torch


        with torch.no_grad():
            embeds = bundle.encode([concept.with_class_noun(t) for t in templates])
            images = generate(bundle, embeds, config)
        _BASE_CACHE[key] = context_rates(probe, _read_rows(images))
    return _BASE_CACHE[key]
