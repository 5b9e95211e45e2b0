"""The concept-order report section: concept_order.md, concept_order.png and one summary line
per stage, written into a report directory when some case has curves.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptibench.io import atomic_write_text
from ptibench.results.figures import new_figure, save_figure
from ptibench.results.tables import render_markdown
from ptibench.spec import lr_key
from ptibench.studies.concept_order.analysis import (
    APPEARANCE_SCOPES,
    DEFAULT_APPEARANCE,
    DEFAULT_BOUND,
    DEFAULT_MIN_GAIN,
    DEFAULT_SHARE,
    CurveSummary,
    analyse,
    finished_cases,
    summarise,
)

MARKDOWN = "concept_order.md"


PLOT = "concept_order.png"


def _lr(lr: float) -> str:

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
    stages = analyse(finished_cases(document), **thresholds)
    bound = thresholds.get("bound", DEFAULT_BOUND)
    return [stage_finding(stage, rows, bound) for stage, rows in stages.items()]


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

    share = thresholds.get("share", DEFAULT_SHARE)
    bound = thresholds.get("bound", DEFAULT_BOUND)
    scope = APPEARANCE_SCOPES[thresholds.get("appearance", DEFAULT_APPEARANCE)][1]
    stages = analyse(finished_cases(document), **thresholds)
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
    from matplotlib import colormaps

    bound = thresholds.get("bound", DEFAULT_BOUND)
    stages = analyse(finished_cases(document), **thresholds)
    figure, axes = new_figure(len(stages), width=12)
    colours = colormaps["viridis"]
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
    save_figure(figure, path)


def has_curves(document: Mapping[str, Any]) -> bool:
    return any(summarise(case) is not None for case in finished_cases(document))


def render(out_dir: Path, document: Mapping[str, Any], **thresholds) -> list[Path]:
    """concept_order.md and .png in `out_dir` when some case has curves; else nothing."""

    if not has_curves(document):
        return []
    out_dir = Path(out_dir)
    md_path, png_path = out_dir / MARKDOWN, out_dir / PLOT
    atomic_write_text(md_path, markdown(document, **thresholds))
    plot(png_path, document, **thresholds)
    return [md_path, png_path]
