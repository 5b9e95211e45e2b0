"""The report directory: results.json (the source of truth), and tradeoff.md, tradeoff.png and the
sample grids rendered from it, so `ptibench report DIR` can redo them without training.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptibench.io import atomic_write_text
from ptibench.results.document import load_results, write_results
from ptibench.results.figures import new_figure, save_figure
from ptibench.results.sections import registered_sections
from ptibench.results.tables import render_markdown, render_text
from ptibench.results.tradeoff import (
    LEGEND,
    TradeoffTable,
    build_tables,
    knee_line,
    reference_cells,
    table_cells,
)
from ptibench.spec import DEFAULT_METHOD, lr_key


def _reference_for(document: Mapping[str, Any], table: TradeoffTable) -> Mapping[str, Any] | None:
    world, concept, method, stage = table.key
    if method == DEFAULT_METHOD:
        return None
    return document.get("reference", {}).get("|".join((world, concept, method, stage)))


def _cases(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [case for case in document["cases"] if case.get("status") in ("ok", "diverged")]


def summary_lines(document: Mapping[str, Any]) -> list[str]:
    """The terminal version: one table and knee line per stage and method, plus comparisons."""
    lines: list[str] = []
    for table in build_tables(_cases(document)):
        lines += [
            "",
            f"trade-off: {table.title}",
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
    """How long the cases took: wall time of their training and evaluation, and cache hits."""
    cases = document["cases"]
    cached = sum(bool(case.get("from_cache")) for case in cases)
    fresh = [case.get("timings") or {} for case in cases if not case.get("from_cache")]
    train = sum(t.get("train_s", 0.0) + t.get("pivot_s", 0.0) for t in fresh)
    evaluate = sum(t.get("eval_s", 0.0) for t in fresh)
    total = sum(t.get("total_s", 0.0) for t in fresh)
    return (
        f"{len(cases)} case(s): {len(cases) - cached} run ({total:.0f} s: training {train:.0f} s, "
        f"evaluation {evaluate:.0f} s), {cached} from the cache"
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
    return "\n".join(lines) + "\n"


def copy_samples(out_dir: Path, document: dict[str, Any]) -> None:
    """Copy each case's image artifacts to out/samples/ so the report outlives the cache."""
    target = Path(out_dir) / "samples"
    for case in document["cases"]:
        spec = case["spec"]
        copied = []
        for name, source in sorted((case.get("artifacts") or {}).items()):
            source_path = Path(str(source))
            if source_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                continue
            file_name = (
                f"{spec['stage']}-{spec['method']}-lr={lr_key(spec['lr'])}"
                f"-seed{spec['seed']}-{name}{source_path.suffix.lower()}"
            )
            if source_path.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source_path, target / file_name)
            if (target / file_name).is_file():
                copied.append(file_name)
        case["samples"] = copied


def plot(path: Path, tables: list[TradeoffTable]) -> None:
    """Per table: reconstruction vs editability (lr labels, knee marked), and each metric vs the
    distance travelled."""
    figure, axes = new_figure(len(tables), width=11)
    for (left, right), table in zip(axes, tables, strict=False):
        rows = [row for row in table.rows if row.gain is not None]
        _plot_tradeoff(left, table, rows)
        _plot_distance(right, table, rows)
    save_figure(figure, path)


def _plot_tradeoff(ax, table: TradeoffTable, rows: list) -> None:
    gains = [row.gain for row in rows]
    edits = [-row.loss for row in rows]
    ax.plot(gains, edits, "o-", color="tab:blue")
    knee = table.knee_lr()
    for row, x, y in zip(rows, gains, edits, strict=True):
        colour = "tab:red" if row.past_knee else "black"
        ax.annotate(
            lr_key(row.lr), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8,
            color=colour,
        )
        if row.lr == knee:
            ax.plot([x], [y], "*", markersize=16, color="tab:red", label=f"knee lr={lr_key(knee)}")
    ax.set_xlabel("reconstruction gain (normalised)")
    ax.set_ylabel("editability (normalised, 0 = smallest lr)")
    ax.set_title(f"{table.title}: {'knee' if knee else 'no knee'}", fontsize=9)
    if knee:
        ax.legend(fontsize=8)


def _plot_distance(ax, table: TradeoffTable, rows: list) -> None:
    ax.set_title(f"{table.title}: metrics vs distance", fontsize=9)
    distances = [row.metrics.get("distance") for row in rows]
    if not rows or not all(d is not None and d > 0 for d in distances):
        ax.text(0.5, 0.5, "no distance recorded", ha="center", va="center")
        return
    for name in [*table.reconstruction, *table.editability]:
        values = [row.metrics.get(name, float("nan")) for row in rows]
        low, high = min(values), max(values)
        scaled = [(v - low) / (high - low) if high > low else 0.5 for v in values]
        style = "o-" if name in table.reconstruction else "s--"
        ax.plot(distances, scaled, style, label=f"{name} ({low:.3g}..{high:.3g})")
    knee = table.knee_lr()
    if knee:
        at = dict(zip([r.lr for r in rows], distances, strict=True))[knee]
        ax.axvline(at, color="tab:red", linestyle=":", label="knee")
    ax.set_xscale("log")
    ax.set_xlabel("distance travelled")
    ax.set_ylabel("metric, min..max of the grid -> 0..1")
    ax.legend(fontsize=7)


def render(out_dir: Path, document: dict[str, Any] | None = None) -> list[Path]:
    """Write every report file from `document` (default: the directory's results.json)."""
    out_dir = Path(out_dir)
    document = load_results(out_dir) if document is None else document
    document = json.loads(json.dumps(document))
    copy_samples(out_dir, document)
    results_path = write_results(out_dir, document)
    md_path = out_dir / "tradeoff.md"
    atomic_write_text(md_path, markdown(document))
    png_path = out_dir / "tradeoff.png"
    plot(png_path, build_tables(_cases(document)))
    paths = [results_path, md_path, png_path]
    for section in registered_sections():
        paths += section.render(out_dir, document)
    return paths
