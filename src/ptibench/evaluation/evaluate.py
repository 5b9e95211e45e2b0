"""A case's metrics: reconstruction (lpips, clip_i, denoise_loss, appearance) and editability
(clip_t, edit_success, leakage), from one batched sampling of the reconstruction, edit and (on a
world with an oracle) context-free prompts. Images are compared as the uint8 PNGs hold them.
Distance metrics come from the stages.

Each prompt is sampled once: the reconstruction prompt `eval.reconstruction_samples` times, every
other prompt `eval.samples_per_prompt` times; a context-free prompt that is also the
reconstruction or an edit prompt reuses those samples. Sample j of any prompt has the seed
`records["seeds"][j]`, in every case.

Beside each aggregate, the readings it averages are kept per sample (`Evaluation.records`:
the sample seeds, per-sample LPIPS, CLIP-I and CLIP-T, the oracle's reading and hit, and per
context-free prompt the copies behind `leakage` with the base model's; `per_sample["leakage"]`
holds each context-free sample's copy less the base share, whose mean is the metric), taken
from the same tensors, so the reports can give intervals and two runs can be compared with
their spread (`ptibench compare`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ptibench.concept import Concept
from ptibench.evaluation.functional import (
    clip_i_pairs,
    clip_t_per_sample,
    denoise_loss,
    lpips_pairwise,
    mean_of_means,
    oracle_readings,
    share,
)
from ptibench.evaluation.leakage import (
    Copies,
    base_copies,
    leakage_value,
    make_probe,
    sample_counts,
)
from ptibench.evaluation.sampling import generate_cases, generate_rows, to_model_range
from ptibench.models.bundle import ModelBundle
from ptibench.models.metric_models import MetricModels
from ptibench.spec import EvalConfig

ORACLE_ATTRIBUTES = ("background", "colour", "position", "size", "shape")


@dataclass
class Evaluation:
    metrics: dict[str, float]
    prompts: list[str]
    images: np.ndarray  # [prompts, samples_per_prompt, H, W, 3] uint8; row 0 = reconstruction
    records: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # every sample, by prompt


def _floats(values: torch.Tensor) -> list[float]:
    return [float(v) for v in values.detach().cpu().double()]


def _reading(reading) -> dict[str, str | None]:
    return {name: getattr(reading, name) for name in ORACLE_ATTRIBUTES}


def _edit_identity(concept: Concept, read, per_prompt: int, edits: list[dict]) -> list[float]:
    """Per edit sample, 1.0 when it still shows the concept's shape and colour, except what
    its edit asks to change (a 'blue {}' keeps the shape only): an edit of someone else's
    ring is not an edit of the concept. Edit prompts that change every appearance attribute
    are left out; the list's mean is the metric."""
    appearance = {k: v for k, v in concept.appearance.items() if k in ("shape", "colour")}
    kept: list[float] = []
    for i, edit in enumerate(concept.edit_prompts):
        wanted = {k: v for k, v in appearance.items() if k not in (edit.expect or {})}
        if not wanted:
            continue
        hits = [reading.matches(wanted) for reading in read(edit.prompt, per_prompt)]
        edits[i]["identity"] = hits
        kept += [float(hit) for hit in hits]
    return kept


def sample_plan(concept: Concept, config: EvalConfig, context_free: bool) -> dict[str, int]:
    """Every prompt template to sample, once, with its count: the reconstruction prompt, the edit
    prompts, then the context-free prompts not among them (when `context_free`)."""
    counts = {concept.reconstruction_prompt: config.reconstruction_samples}
    for edit in concept.edit_prompts:
        counts.setdefault(edit.prompt, config.samples_per_prompt)
    if context_free:
        for template, count in sample_counts(concept, config).items():
            counts.setdefault(template, count)
    return counts


def case_plan(concept: Concept, config: EvalConfig, oracle: bool) -> dict[str, int]:
    """The prompt templates `evaluate` samples for a case, with their counts."""
    return sample_plan(concept, config, oracle and make_probe(concept) is not None)


@torch.no_grad()
def sample_cases(
    bundle: ModelBundle,
    concept: Concept,
    config: EvalConfig,
    vectors: list[torch.Tensor],
    *,
    oracle: bool = False,
    unet=None,
    route=None,
    progress: bool = False,
) -> list[list[np.ndarray]]:
    """The rows `evaluate` samples, for several cases of one concept that differ only in their
    vector or (a routed UNet, `route`) their adapter, sampled in shared batches; pass each
    case's rows to `evaluate` as `sampled`."""
    plan = case_plan(concept, config, oracle)
    prompts = [concept.with_placeholder(t) for t in plan]
    embeds = [bundle.encode(prompts, concept.placeholder, v) for v in vectors]
    counts = list(plan.values())
    return generate_cases(bundle, embeds, counts, config, unet=unet, route=route, progress=progress)


@torch.no_grad()
def evaluate(
    bundle: ModelBundle,
    models: MetricModels,
    concept: Concept,
    reference: np.ndarray,
    latents: torch.Tensor,
    vector: torch.Tensor,
    config: EvalConfig,
    *,
    unet=None,
    oracle: bool = False,
    progress: bool = False,
    base: Copies | None = None,
    sampled: list[np.ndarray] | None = None,
) -> Evaluation:
    """Sample every prompt of the case in one batch, then measure. `base`: the base model's
    context copies (leakage.base_copies; computed here when not given). `sampled`: the case's
    rows, already sampled (sample_cases), in `case_plan` order."""
    unet = unet if unet is not None else bundle.unet
    probe = make_probe(concept) if oracle else None
    plan = case_plan(concept, config, oracle)
    templates = list(plan)
    prompts = [concept.with_placeholder(t) for t in templates]
    embeds = bundle.encode(prompts, concept.placeholder, vector)
    if sampled is None:
        rows = generate_rows(
            bundle, embeds, list(plan.values()), config, unet=unet, progress=progress
        )
    elif [len(row) for row in sampled] == list(plan.values()):
        rows = list(sampled)
    else:
        raise ValueError("the samples given were drawn for another sampling plan")
    by_template = dict(zip(templates, rows, strict=True))
    shown = [concept.reconstruction_prompt] + [e.prompt for e in concept.edit_prompts]
    sheet = [concept.with_placeholder(t) for t in shown]
    per_prompt = config.samples_per_prompt
    images = np.stack([by_template[t][:per_prompt] for t in shown])
    recon = to_model_range(by_template[concept.reconstruction_prompt])
    ref = to_model_range(reference)
    lpips_matrix = lpips_pairwise(models, recon, ref)
    clip_matrix = clip_i_pairs(models, recon, ref)
    metrics = {
        "lpips": float(lpips_matrix.mean()),
        "clip_i": float(clip_matrix.mean()),
        "denoise_loss": denoise_loss(bundle, unet, latents, embeds[:1], config.seed),
    }
    edit_scores = clip_t_per_sample(
        models,
        [to_model_range(images[i + 1]) for i in range(len(concept.edit_prompts))],
        [concept.with_class_noun(e.prompt) for e in concept.edit_prompts],
    )
    metrics["clip_t"] = mean_of_means(edit_scores)
    reconstruction: dict[str, Any] = {
        "prompt": sheet[0],
        "lpips": _floats(lpips_matrix.mean(1)),
        "clip_i": _floats(clip_matrix.mean(1)),
    }
    edits: list[dict[str, Any]] = [
        {"prompt": sheet[i + 1], "clip_t": _floats(scores)} for i, scores in enumerate(edit_scores)
    ]
    readings: dict[str, list] = {}

    def read(template: str, count: int | None = None) -> list:
        if template not in readings:
            readings[template] = oracle_readings(by_template[template])
        return readings[template][:count]

    if oracle and concept.appearance:
        wanted = {k: v for k, v in concept.appearance.items() if k in ("shape", "colour")}
        recon_readings = read(concept.reconstruction_prompt)
        hits = [reading.matches(wanted) for reading in recon_readings]
        metrics["appearance"] = share(hits)
        reconstruction.update(appearance=hits, oracle=[_reading(r) for r in recon_readings])
    expected = [(i, e) for i, e in enumerate(concept.edit_prompts) if e.expect]
    if oracle and expected:
        shares = []
        for i, edit in expected:
            edit_readings = read(edit.prompt, per_prompt)
            hits = [reading.matches(edit.expect) for reading in edit_readings]
            shares.append(share(hits))
            edits[i].update(edit=hits, oracle=[_reading(r) for r in edit_readings])
        metrics["edit_success"] = float(np.mean(shares))
    records = {
        "seeds": [config.seed + j for j in range(max(plan.values()))],
        "reconstruction": reconstruction,
        "edits": edits,
    }
    if oracle and concept.appearance:
        identity = _edit_identity(concept, read, per_prompt, edits)
        if identity:
            metrics["edit_identity"] = float(np.mean(identity))
            records.setdefault("per_sample", {})["edit_identity"] = identity
    if probe is not None:
        base = base if base is not None else base_copies(bundle, concept, config, probe)
        counts = sample_counts(concept, config)
        copies = Copies(tuple(counts), tuple(tuple(probe.copies(read(t))) for t in counts))
        if [len(row) for row in base.hits] != [len(row) for row in copies.hits]:
            raise ValueError("the base model's copies were counted over other samples")
        metrics["leakage"] = leakage_value(copies, base)
        # one reading per context-free sample whose mean is the metric (results.intervals)
        records["per_sample"] = {
            "leakage": [float(hit) - base.share for row in copies.hits for hit in row]
        }
        records["leakage"] = {
            "value": metrics["leakage"],
            "share": copies.share,
            "base": {"share": base.share, **base.to_dict()},
            "prompts": [
                {
                    "prompt": concept.with_placeholder(t),
                    "copy": list(hits),
                    "oracle": [_reading(r) for r in read(t)],
                }
                for t, hits in zip(counts, copies.hits, strict=True)
            ],
        }
    samples = dict(zip(prompts, rows, strict=True))
    return Evaluation(metrics, sheet, images, records, samples)
