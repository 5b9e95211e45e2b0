"""Concept-order curves: what fine-tuning learns first, the concept's appearance or the training
images' pose and background, and the "light" window between the two.

A case run with `CaseSpec.eval_every = N` is evaluated at step 0 (its start: the initializer's
embedding in stage 1, the pivot on the base UNet in stage 2), every N steps and at its end, with
the same sampling as its final metrics. Evaluation draws no random numbers from training's
streams, so the trained embedding / weights and the final metrics are bitwise those of the plain
run (tests/test_concept_order.py). Each curve point holds the case metrics plus:

On a world with an attribute oracle (the tiny world), from the samples of the reconstruction
prompt and of every edit prompt, read back with `ptibench.world.oracle`:
- `appearance_all`: share of samples (all prompts) whose object has the concept's shape and colour
  (concept.json "appearance"); `appearance_recon` / `appearance_edit`: the same on the
  reconstruction prompt / on the edit prompts.
- `context_copy`: over the prompts that ask no background and no position (the reconstruction
  prompt, "a small {}"), share of samples whose (background, position) is one of the training
  images' (concept.json "images"); `leakage` = context_copy minus `context_copy_base`, the base
  model's rate on the same prompts with the class noun in place of the placeholder.
- `context_wins`: over the edit prompts that do ask a background or position, share of samples
  that miss what was asked and show a training image's (background, position) instead;
  `leakage_edit` = context_wins minus the base model's rate (`context_wins_base`).
- `distance`: how far training has moved (embedding or weight delta norm, as in the final metrics).

On worlds without an oracle (real models) only the case metrics and `distance` are recorded.
Documented proxies, not implemented: appearance ~ CLIP-I between the generations' and the concept
images' foreground crops (an open-vocabulary segmenter or a saliency mask); leakage ~ CLIP-I of the
generations' backgrounds (object masked out) to the training images' backgrounds, over the base
model's value, and CLIP-T of edit prompts that name the training images' contexts (a concept.json
"images" entry may carry "background"/"position" words for that).

From the curves (`analyse`): per case, the first step at which appearance has reached `share`
(0.8) of its final gain over the start, the first at which leakage exceeds `bound` (+0.1 over the
base model), the light window (checkpoints with both appearance reached and leakage within the
bound) and the lead of appearance over leakage, in steps and in distance. `render` writes
concept_order.md and concept_order.png into a report directory, `summary_lines` one line per stage.

    python -m ptibench.concept_order run --stage finetune --lr-grid quick --eval-every 100
    python -m ptibench.concept_order report ptibench-out
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONTEXT_KEYS = ("background", "position")
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
MARKDOWN = "concept_order.md"
PLOT = "concept_order.png"


# --------------------------------------------------------------------------- oracle metrics


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
    from .world import oracle

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
_START_CACHE: dict[tuple, dict[str, Any]] = {}


def base_rates(bundle, concept, config, probe: Probe) -> dict[str, float]:
    """context_copy / context_wins of the base model on the concept's prompts with the class noun
    instead of the placeholder (same seeds and sampler as the evaluation); once per process."""
    templates = [concept.reconstruction_prompt] + [e.prompt for e in concept.edit_prompts]
    key = (bundle.version, str(concept.folder), concept.class_noun, tuple(templates), config)
    if key not in _BASE_CACHE:
        import torch

        from .sampling import generate

        with torch.no_grad():
            embeds = bundle.encode([concept.with_class_noun(t) for t in templates])
            images = generate(bundle, embeds, config)
        _BASE_CACHE[key] = context_rates(probe, _read_rows(images))
    return _BASE_CACHE[key]


# --------------------------------------------------------------------------- the run's side


class Tracker:
    """Builds a case's curve: the start point, the checkpoints, the final point.

    `run_eval(vector, unet)` is the case's own evaluation (returns ptibench.metrics.Evaluation).
    Used by ptibench.runner when spec.eval_every is set; it never touches training's state.
    """

    def __init__(self, spec, bundle, concept, run_eval: Callable, oracle: bool):
        self.spec, self.bundle, self.concept, self.run_eval = spec, bundle, concept, run_eval
        self.probe = make_probe(concept) if oracle else None
        self.initial = None
        self.start: dict[str, Any] | None = None
        self._base_params: dict | None = None

    def _base(self) -> dict[str, float] | None:
        if self.probe is None:
            return None
        return base_rates(self.bundle, self.concept, self.spec.eval, self.probe)

    def point(self, evaluation, vector, unet) -> dict[str, float]:
        metrics = dict(evaluation.metrics)
        if self.probe is not None:
            metrics.update(oracle_metrics(self.probe, evaluation.images, self._base()))
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
        from .stages.finetune import lora_distance, weight_distance

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
            if self.probe is not None:
                metrics.update(oracle_metrics(self.probe, evaluation.images, self._base()))
            metrics.update(outcome.metrics)
            loss = outcome.losses[-1] if outcome.losses else None
            curves.append({"step": self.spec.steps, "loss": loss, **metrics})
        return curves


# --------------------------------------------------------------------------- analysis


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
    from .spec import STAGES

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


def _lr(lr: float) -> str:
    from .baselines import lr_key

    return lr_key(lr)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def window_text(summary: CurveSummary) -> str:
    """The window's checkpoints as runs of consecutive ones: '300-600', '300-400,700'."""
    if not summary.window:
        return "none"
    index = [summary.steps.index(step) for step in summary.window]
    runs: list[list[int]] = []
    for i in index:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    steps = summary.steps
    return ",".join(
        f"{steps[r[0]]}-{steps[r[-1]]}" if len(r) > 1 else str(steps[r[0]]) for r in runs
    )


def stage_finding(stage: str, rows: list[CurveSummary], bound: float = DEFAULT_BOUND) -> str:
    """One line: does appearance lead leakage in this stage, by how much, and the light window."""
    learned = [r for r in rows if r.appearance_step is not None]
    leads = [r for r in learned if r.lead_steps is not None]
    ahead = [r for r in leads if r.lead_steps > 0]
    never = [r for r in learned if r.leakage_step is None]
    windows = [f"{_lr(r.lr)}@{window_text(r)}" for r in rows if r.window]
    parts = [f"concept order {stage}:"]
    if not learned:
        parts.append(f"appearance gained < {DEFAULT_MIN_GAIN} at every lr ({len(rows)})")
    else:
        parts.append(
            f"appearance first at {len(ahead) + len(never)}/{len(learned)} lrs that learned it"
        )
        if leads:
            lead = statistics.median(r.lead_steps for r in leads)
            distances = [r.lead_distance for r in leads if r.lead_distance is not None]
            lead_d = f", distance {statistics.median(distances):.3g}" if distances else ""
            parts.append(
                f"(median lead {lead:+g} steps{lead_d}; leakage > +{bound:g} at {len(leads)})"
            )
        if never:
            parts.append(f"(leakage stayed <= +{bound:g} at {len(never)})")
    parts.append("; light window: " + (", ".join(windows) if windows else "none"))
    return " ".join(parts).replace(" ;", ";")


def summary_lines(document: Mapping[str, Any], **thresholds) -> list[str]:
    """One line per stage with concept-order curves (none when no case has them)."""
    stages = analyse(_cases(document), **thresholds)
    bound = thresholds.get("bound", DEFAULT_BOUND)
    return [stage_finding(stage, rows, bound) for stage, rows in stages.items()]


def _cases(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in document.get("cases", []) if c.get("status") in ("ok", "diverged")]


TABLE_HEADER = [
    "lr",
    "seed",
    "appearance start->end",
    "reached at step (distance)",
    "leakage end",
    "leakage > bound at step (distance)",
    "lead steps (distance)",
    "leakage_edit end",
    "light window (steps)",
    "verdict",
]


def table_rows(rows: list[CurveSummary]) -> list[list[str]]:
    body = []
    for r in rows:
        lead = "-" if r.lead_steps is None else f"{r.lead_steps:+d} ({_num(r.lead_distance)})"
        reached = (
            "-"
            if r.appearance_step is None
            else (f"{r.appearance_step} ({_num(r.appearance_distance)})")
        )
        leaked = (
            "-" if r.leakage_step is None else (f"{r.leakage_step} ({_num(r.leakage_distance)})")
        )
        body.append(
            [
                _lr(r.lr),
                str(r.seed),
                f"{r.appearance[0]:.2f}->{r.appearance[-1]:.2f}",
                reached,
                _num(r.leakage[-1], 2),
                leaked,
                lead,
                _num(r.leakage_edit[-1], 2),
                window_text(r),
                r.verdict if r.status == "ok" else f"{r.verdict} ({r.status})",
            ]
        )
    return body


def markdown(document: Mapping[str, Any], **thresholds) -> str:
    from .tradeoff import render_markdown

    share = thresholds.get("share", DEFAULT_SHARE)
    bound = thresholds.get("bound", DEFAULT_BOUND)
    scope = APPEARANCE_SCOPES[thresholds.get("appearance", DEFAULT_APPEARANCE)][1]
    stages = analyse(_cases(document), **thresholds)
    lines = [
        "# ptibench concept-order curves",
        "",
        f"What is learned first: the concept's appearance (oracle: shape and colour, {scope}) "
        "or the training images' context (leakage: share of samples of prompts that ask no "
        "background/position showing a training image's (background, position), minus the base "
        "model's share with the class noun). "
        f"Reached = first checkpoint with appearance >= start + {share:g} x (end - start); "
        f"leakage > bound = first checkpoint with leakage > +{bound:g}; lead = the difference "
        "(positive: appearance first); light window = checkpoints with appearance reached and "
        f"leakage <= +{bound:g}. leakage_edit = share of samples of prompts that ask a "
        "background/position showing a training context instead, minus the base model's.",
    ]
    for stage, rows in stages.items():
        lines += [
            "",
            f"## {stage}",
            "",
            render_markdown(TABLE_HEADER, table_rows(rows)),
            "",
            stage_finding(stage, rows, bound),
        ]
    if not stages:
        lines += [
            "",
            "No case has concept-order curves (run with --eval-every N on the tiny world).",
        ]
    lines += ["", f"![concept order]({PLOT})"]
    return "\n".join(lines) + "\n"


def plot(path: Path, document: Mapping[str, Any], **thresholds) -> None:
    """Per stage: appearance (solid) and leakage (dashed) vs step and vs distance, one colour per
    lr; window checkpoints marked with dots; the leakage bound as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bound = thresholds.get("bound", DEFAULT_BOUND)
    stages = analyse(_cases(document), **thresholds)
    count = max(len(stages), 1)
    figure, axes = plt.subplots(count, 2, figsize=(12, 4.2 * count), squeeze=False)
    colours = plt.get_cmap("viridis")
    for (left, right), (stage, rows) in zip(axes, stages.items(), strict=False):
        for index, r in enumerate(rows):
            colour = colours(index / max(len(rows) - 1, 1))
            label = f"lr={_lr(r.lr)}" + (f" s{r.seed}" if r.seed else "")
            leak = [np.nan if v is None else v for v in r.leakage]
            left.plot(r.steps, r.appearance, "-", color=colour, label=label)
            left.plot(r.steps, leak, "--", color=colour)
            inside = [r.steps.index(s) for s in r.window]
            left.plot(
                [r.steps[i] for i in inside],
                [r.appearance[i] for i in inside],
                "o",
                color=colour,
                markersize=4,
            )
            dist = [np.nan if d is None else d for d in r.distance]
            right.plot(dist, r.appearance, "-", color=colour, label=label)
            right.plot(dist, leak, "--", color=colour)
        for ax in (left, right):
            ax.axhline(bound, color="tab:red", linestyle=":", linewidth=1)
            ax.set_ylabel("appearance (solid) / leakage over base (dashed)")
            ax.legend(fontsize=7)
        left.set_xlabel("step")
        left.set_title(f"{stage}: vs step (dots: light window)", fontsize=9)
        right.set_xlabel("distance travelled")
        moved = [d for r in rows for d in r.distance[1:] if d and d > 0]
        if moved:
            # linear from 0 (the start) to the first checkpoint's distance, log beyond it
            right.set_xscale("symlog", linthresh=min(moved))
            right.set_xlim(left=0)
        right.set_title(f"{stage}: vs distance", fontsize=9)
    if not stages:
        axes[0][0].text(0.5, 0.5, "no concept-order curves", ha="center", va="center")
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


def has_curves(document: Mapping[str, Any]) -> bool:
    return any(summarise(case) is not None for case in _cases(document))


def render(out_dir: Path, document: Mapping[str, Any], **thresholds) -> list[Path]:
    """concept_order.md and .png in `out_dir` when some case has curves; else nothing."""
    from .io import atomic_write_text

    if not has_curves(document):
        return []
    out_dir = Path(out_dir)
    md_path, png_path = out_dir / MARKDOWN, out_dir / PLOT
    atomic_write_text(md_path, markdown(document, **thresholds))
    plot(png_path, document, **thresholds)
    return [md_path, png_path]


# --------------------------------------------------------------------------- command line


def _run(args) -> int:
    from dataclasses import replace as dc_replace

    from . import report
    from .plugin import _json_safe, parse_lr_grid, parse_stages
    from .runner import run_case
    from .spec import CaseSpec, EvalConfig

    grid = parse_lr_grid(args.lr_grid)
    stages = list(parse_stages(args.stage))
    changes = {
        k: v
        for k, v in (
            ("samples_per_prompt", args.samples_per_prompt),
            ("sample_steps", args.sample_steps),
        )
        if v is not None
    }
    config = dc_replace(EvalConfig(), **changes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else None
    document: dict[str, Any] = {
        "format": "ptibench-results",
        "version": 1,
        "machine": report.machine_info(),
        "commit": report.commit_info(Path.cwd()),
        "versions": report.versions(),
        "invocation": sys.argv[1:],
        "options": {
            "lr_grid": str(grid),
            "stages": stages,
            "steps": args.steps,
            "eval_every": args.eval_every,
            "world": args.world,
            "concept": args.concept,
        },
        "cases": [],
    }
    for stage in stages:
        for lr in grid.for_stage(stage):
            spec = CaseSpec(
                stage=stage,
                lr=lr,
                world=args.world,
                concept=args.concept,
                steps=args.steps,
                eval=config,
                eval_every=args.eval_every,
                pivot_lr=args.pivot_lr,
                seed=args.seed,
            )
            result = run_case(spec, cache_dir=cache, progress=args.progress)
            case = _json_safe(result.to_dict())
            case["nodeid"] = f"{stage}-{spec.lr_id}-seed{spec.seed}"
            case["outcome"] = "passed"
            document["cases"].append(case)
            report.write_results(out, document)
            print(
                f"{case['nodeid']}: {result.status} ({result.timings.get('total_s', 0):.0f} s)",
                flush=True,
            )
    for line in summary_lines(document, **_thresholds(args)):
        print(line)
    for path in render(out, document, **_thresholds(args)):
        print(f"wrote {path}")
    return 0


def _thresholds(args) -> dict[str, Any]:
    return {
        "share": args.share,
        "bound": args.bound,
        "min_gain": args.min_gain,
        "appearance": args.appearance,
    }


def _report(args) -> int:
    from .report import load_results

    document = load_results(Path(args.dir))
    for line in summary_lines(document, **_thresholds(args)):
        print(line)
    for path in render(Path(args.dir), document, **_thresholds(args)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import PtibenchError

    parser = argparse.ArgumentParser(
        prog="python -m ptibench.concept_order", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an lr grid with checkpointed evaluation, then report")
    run.add_argument("--stage", default="finetune", help="comma list (default finetune)")
    run.add_argument("--lr-grid", default="quick", help="preset or lr list (default quick)")
    run.add_argument("--steps", type=int, default=1000)
    run.add_argument("--eval-every", type=int, default=100)
    run.add_argument("--world", default="tiny-world")
    run.add_argument("--concept", default="yellow-ring")
    run.add_argument("--pivot-lr", type=float, default=None)
    run.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    run.add_argument("--samples-per-prompt", type=int, default=None)
    run.add_argument("--sample-steps", type=int, default=None)
    run.add_argument("--out", default="ptibench-out/concept-order")
    run.add_argument("--cache", default=None)
    run.add_argument("--progress", action="store_true")
    rep = sub.add_parser("report", help="re-render concept_order.md/.png from results.json")
    rep.add_argument("dir")
    for p in (run, rep):
        p.add_argument("--share", type=float, default=DEFAULT_SHARE)
        p.add_argument("--bound", type=float, default=DEFAULT_BOUND)
        p.add_argument("--min-gain", type=float, default=DEFAULT_MIN_GAIN)
        p.add_argument(
            "--appearance",
            choices=sorted(APPEARANCE_SCOPES),
            default=DEFAULT_APPEARANCE,
            help="prompts the appearance curve is read from (default all)",
        )
    args = parser.parse_args(argv)
    try:
        return _run(args) if args.command == "run" else _report(args)
    except (PtibenchError, argparse.ArgumentTypeError) as error:
        print(f"ptibench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
