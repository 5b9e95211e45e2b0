"""The report directory: results.json (the source of truth), and tradeoff.md, tradeoff.png,
report.html and the cases' artifacts (sample grids, embeddings, LoRAs) rendered or copied from
it, so `ptibench report DIR` can redo them without training.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptibench.io import atomic_copy, atomic_write_text, ensure_dir
from ptibench.results.baselines import path_part
from ptibench.results.document import load_results, write_results
from ptibench.results.figures import new_figure, save_figure
from ptibench.results.html import HTML_REPORT, write_html
from ptibench.results.sections import registered_sections
from ptibench.results.tables import render_markdown, render_text
from ptibench.results.tradeoff import (
    LEGEND,
    TradeoffTable,
    build_tables,
    intervals_line,
    knee_line,
    reference_cells,
    table_cells,
    tabulated,
)
from ptibench.spec import DEFAULT_CONCEPT, DEFAULT_METHOD, METRICS, lr_key

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _reference_for(document: Mapping[str, Any], table: TradeoffTable) -> Mapping[str, Any] | None:
    world, concept, method, stage = table.key
    if method == DEFAULT_METHOD:
        return None
    return document.get("reference", {}).get("|".join((world, concept, method, stage)))


def _cases(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return tabulated(document["cases"])


def summary_lines(document: Mapping[str, Any]) -> list[str]:
    """The terminal version: one table and knee line per stage and method, plus comparisons."""
    lines: list[str] = []
    for table in build_tables(_cases(document)):
        lines += [
            "",
            f"trade-off: {table.title}",
            intervals_line(table),
            render_text(*table_cells(table)),
            knee_line(table),
        ]
        reference = _reference_for(document, table)
        if reference:
            lines += [
                f"{table.key[2]} beside the stored {DEFAULT_METHOD} baseline (new | base | diff):",
                render_text(*reference_cells(table, reference)),
            ]
    notes = [
        f"{case['nodeid']}: {case['baseline']['note']}"
        for case in document["cases"]
        if case.get("baseline", {}).get("note") and case["baseline"]["verdict"] == "passed"
    ]
    lines += ["", LEGEND, *notes, timing_line(document)]
    for section in registered_sections():
        lines += section.summary_lines(document)
    return lines


def timing_line(document: Mapping[str, Any]) -> str:
    """How long the cases took, in worker time, and the cache hits.

    A case trained in a group run (stage 1 batched, stage-2 LoRA stacked) records its share of
    that run in `train_s` and, with the pivot the run trained first, in `batched_train_s` (0 for
    a case that trained alone); with group sampling, its share of the run's sampling is in
    `batched_eval_s` and in `eval_s`. The run happened before the case started, so that time is
    outside the case's `total_s` and is added to the total here. The parts add up to the total.
    """
    cases = document["cases"]
    cached = sum(bool(case.get("from_cache")) for case in cases)
    fresh = [case.get("timings") or {} for case in cases if not case.get("from_cache")]
    batched = [
        t.get("batched_train_s", 0.0) + t.get("batched_eval_s", 0.0)
        for t in fresh
        if t.get("batched_train_s") or t.get("batched_eval_s")
    ]
    train = sum(t.get("train_s", 0.0) + t.get("pivot_s", 0.0) for t in fresh)
    evaluate = sum(t.get("eval_s", 0.0) for t in fresh)
    total = sum(t.get("total_s", 0.0) for t in fresh) + sum(batched)
    shared = f" ({sum(batched):.0f} s of it in group runs, {len(batched)} cases)" if batched else ""
    other = max(total - train - evaluate, 0.0)
    return (
        f"{len(cases)} case(s): {len(cases) - cached} run, {cached} from the cache; worker time "
        f"{total:.0f} s = training {train:.0f} s{shared} + evaluation {evaluate:.0f} s "
        f"+ loading and writing {other:.0f} s"
    )


def markdown(document: Mapping[str, Any]) -> str:
    commit = document.get("commit", {})
    lines = [
        "# ptibench trade-off report",
        "",
        f"commit {commit.get('id')} (branch {commit.get('branch')}, dirty {commit.get('dirty')}); "
        f"grid {document.get('options', {}).get('lr_grid')}; "
        f"steps {document.get('options', {}).get('steps')}",
        "",
        LEGEND,
    ]
    for table in build_tables(_cases(document)):
        lines += [
            "",
            f"## {table.title}",
            "",
            intervals_line(table),
            "",
            render_markdown(*table_cells(table)),
            "",
            knee_line(table),
        ]
        reference = _reference_for(document, table)
        if reference:
            lines += [
                "",
                f"### beside the stored {DEFAULT_METHOD} baseline",
                "",
                render_markdown(*reference_cells(table, reference)),
            ]
    samples = [case for case in document["cases"] if case.get("samples")]
    if samples:
        lines += ["", "## samples", ""]
        for case in samples:
            for name in case["samples"]:
                lines.append(f"![{name}](samples/{name})")
    lines += [
        "",
        f"The same with the sample grids and provenance, offline: [{HTML_REPORT}]({HTML_REPORT}).",
    ]
    return "\n".join(lines) + "\n"


def case_label(spec: Mapping[str, Any]) -> str:
    """The file-name stem of a case's copied artifacts: concept, stage, method, lr and seed (a
    run with several concepts holds cases that differ in the concept alone)."""
    stem = f"{spec['stage']}-{spec['method']}-lr={lr_key(spec['lr'])}-seed{spec['seed']}"
    return f"{path_part(spec.get('concept', DEFAULT_CONCEPT))}-{stem}"


def _link_or_copy(source: str, target: str) -> None:
    """A hard link when source and target share a file system (free, and it survives the cache
    entry's removal), else an atomic copy."""
    try:
        if os.path.lexists(target):
            os.unlink(target)
        os.link(source, target)
    except OSError:
        atomic_copy(Path(source), Path(target))


def _place(source: Path, target: Path) -> None:
    if source.is_dir():
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        ensure_dir(target.parent)
        _link_or_copy(str(source), str(target))


def collect_artifacts(out_dir: Path, case: dict[str, Any]) -> None:
    """Bring a case's artifacts into the report directory and point the case at them by paths
    relative to it: images under samples/ (listed in case["samples"]), the rest (embeddings,
    LoRA weights, a fine-tuned UNet) under artifacts/<case>/. A path already inside the
    directory is kept; one whose source is gone (cache cleared) keeps its old text."""
    out_dir = Path(out_dir)
    label = case_label(case["spec"])
    placed: dict[str, str] = {}
    samples: list[str] = []
    for name, recorded in sorted((case.get("artifacts") or {}).items()):
        source = Path(str(recorded))
        source = source if source.is_absolute() else out_dir / source
        suffix = source.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            relative = Path("samples") / f"{label}-{name}{suffix}"
        else:
            relative = Path("artifacts") / label / source.name
        target = out_dir / relative
        if source.exists() and source.resolve() != target.resolve():
            _place(source, target)
        if target.exists():
            placed[name] = relative.as_posix()
            if suffix in IMAGE_SUFFIXES:
                samples.append(relative.name)
        else:
            placed[name] = str(recorded)
    case["artifacts"] = placed
    case["samples"] = samples


def plot(path: Path, tables: list[TradeoffTable]) -> None:
    """Per table: reconstruction vs editability (lr labels, knee and breaks marked, 95%
    intervals as error bars), and each metric vs the distance travelled with its interval;
    better is up (and right)."""
    figure, axes = new_figure(len(tables), width=11)
    for (left, right), table in zip(axes, tables, strict=False):
        _plot_tradeoff(left, table)
        _plot_distance(right, table)
    save_figure(figure, path)


def _errors(centres: list[float], bounds: list) -> list[list[float]] | None:
    """Error-bar extents (below, above) of `centres` from their intervals, or None without."""
    if not any(bounds):
        return None
    low = [max(c - b[0], 0.0) if b else 0.0 for c, b in zip(centres, bounds, strict=True)]
    high = [max(b[1] - c, 0.0) if b else 0.0 for c, b in zip(centres, bounds, strict=True)]
    return [low, high]


def _flip(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if bounds is None else (-bounds[1], -bounds[0])


def _plot_tradeoff(ax, table: TradeoffTable) -> None:
    rows = table.sound_rows()
    gains = [row.gain for row in rows]
    edits = [-row.loss for row in rows]
    ax.errorbar(
        gains,
        edits,
        xerr=_errors(gains, [row.gain_ci for row in rows]),
        yerr=_errors(edits, [_flip(row.loss_ci) for row in rows]),
        fmt="o-",
        color="tab:blue",
        ecolor="tab:gray",
        capsize=2,
    )
    knee = table.knee_lr()
    for row, x, y in zip(rows, gains, edits, strict=True):
        colour = "tab:red" if row.past_knee else "black"
        ax.annotate(
            lr_key(row.lr),
            (x, y),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
            color=colour,
        )
        if row.lr == knee:
            ax.plot([x], [y], "*", markersize=16, color="tab:red", label=f"knee lr={lr_key(knee)}")
    _mark_breaks(ax, table, gains, edits)
    ax.set_xlabel("reconstruction gain (normalised) → better")
    ax.set_ylabel("editability (normalised, 0 = smallest lr) ↑ better")
    ax.set_title(f"{table.title}: {_knee_word(table)}", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _knee_word(table: TradeoffTable) -> str:
    """The plot title's verdict: the knee, or which kind of 'no knee'."""
    knee = table.knee
    if knee is None:
        return "no knee (every case diverged)"
    if knee.index is not None:
        return knee.verdict.replace("knee", f"knee at {lr_key(table.knee_lr())}", 1)
    return knee.verdict


def _mark_breaks(ax, table: TradeoffTable, gains: list[float], edits: list[float]) -> None:
    """Broken lrs as red crosses, pulled inside the sound points' frame (a collapse can lie
    many ranges away) and labelled."""
    broken = [row for row in table.rows if row.broken]
    if not broken or not gains:
        return
    x_low, x_high = min(gains), max(gains)
    y_low, y_high = min(edits), max(edits)
    x_pad, y_pad = max(x_high - x_low, 0.2) * 0.15, max(y_high - y_low, 0.2) * 0.15
    for index, row in enumerate(broken):
        x = min(max(row.gain, x_low - x_pad), x_high + x_pad)
        y = min(max(-row.loss, y_low - y_pad), y_high + y_pad)
        ax.plot(
            [x],
            [y],
            "X",
            markersize=11,
            color="tab:red",
            label="breaks (both sides lose)" if index == 0 else None,
        )
        ax.annotate(
            f"{lr_key(row.lr)} breaks",
            (x, y),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
            color="tab:red",
        )


def _unit(value: float, low: float, high: float, higher: bool) -> float:
    """`value` on the worst..best = 0..1 scale of [low, high] (0.5 when they are equal)."""
    if high <= low:
        return 0.5
    return ((value - low) if higher else (high - value)) / (high - low)


def _plot_distance(ax, table: TradeoffTable) -> None:
    ax.set_title(f"{table.title}: metrics vs distance (up = better)", fontsize=9)
    rows = table.sound_rows()
    distances = [row.metrics.get("distance") for row in rows]
    if not rows or not all(d is not None and d > 0 for d in distances):
        ax.text(0.5, 0.5, "no distance recorded", ha="center", va="center")
        return
    for name in [*table.reconstruction, *table.editability]:
        values = [row.metrics.get(name, math.nan) for row in rows]
        low, high = min(values), max(values)
        higher = METRICS[name].direction == "higher"
        centres = [_unit(v, low, high, higher) for v in values]
        bounds = [
            tuple(sorted(_unit(b, low, high, higher) for b in bound))
            if (bound := row.intervals.get(name))
            else None
            for row in rows
        ]
        style = "o-" if name in table.reconstruction else "s--"
        arrow = "↑" if higher else "↓, drawn flipped"
        (line,) = ax.plot(
            distances, centres, style, label=f"{name} ({arrow}; {low:.3g}..{high:.3g})"
        )
        extents = _errors(centres, bounds)
        if extents:
            ax.errorbar(
                distances, centres, yerr=extents, fmt="none", ecolor=line.get_color(), capsize=2
            )
    knee = table.knee_lr()
    if knee:
        at = dict(zip([r.lr for r in rows], distances, strict=True))[knee]
        ax.axvline(at, color="tab:red", linestyle=":", label="knee")
    for index, row in enumerate(r for r in table.rows if r.broken):
        at = row.metrics.get("distance")
        if at and at > 0:
            ax.axvline(
                at,
                color="tab:red",
                linestyle="-",
                linewidth=2,
                alpha=0.5,
                label="breaks" if index == 0 else None,
            )
    ax.set_xscale("log")
    ax.set_xlabel("distance travelled")
    ax.set_ylabel("metric, worst..best of the sound lrs -> 0..1")
    ax.legend(fontsize=7)


def render(out_dir: Path, document: dict[str, Any] | None = None) -> list[Path]:
    """Write every report file from `document` (default: the directory's results.json)."""
    out_dir = Path(out_dir)
    document = load_results(out_dir) if document is None else document
    document = json.loads(json.dumps(document))
    for case in document["cases"]:
        collect_artifacts(out_dir, case)
    results_path = write_results(out_dir, document)
    md_path = out_dir / "tradeoff.md"
    atomic_write_text(md_path, markdown(document))
    png_path = out_dir / "tradeoff.png"
    tables = build_tables(_cases(document))
    plot(png_path, tables)
    paths = [results_path, md_path, png_path]
    for section in registered_sections():
        paths += section.render(out_dir, document)
    html_path = out_dir / HTML_REPORT
    notes = [timing_line(document)]
    for section in registered_sections():
        notes += section.summary_lines(document)
    write_html(
        html_path,
        document,
        tables,
        notes,
        [p for p in paths if p not in (results_path, md_path, png_path)],
    )
    return [*paths, html_path]
