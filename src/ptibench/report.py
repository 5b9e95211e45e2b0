"""The report directory: results.json (the source of truth), and tradeoff.md, tradeoff.png and the
sample grids rendered from it, so `ptibench report DIR` can redo them without training.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ptibench import concept_order
from ptibench.baselines import lr_key
from ptibench.errors import PtibenchError
from ptibench.io import atomic_write_json, atomic_write_text
from ptibench.spec import DEFAULT_METHOD
from ptibench.tradeoff import (
    LEGEND,
    TradeoffTable,
    build_tables,
    knee_line,
    reference_cells,
    render_markdown,
    render_text,
    table_cells,
)

RESULTS = "results.json"
PACKAGES = (
    "ptibench",
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "open_clip_torch",
    "lpips",
    "kneed",
    "numpy",
    "pytest",
)


def versions() -> dict[str, str | None]:
    """Installed versions of what changes the numbers (read from metadata, nothing imported)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def commit_info(root: Path) -> dict[str, Any]:
    """{id, dirty, branch} of the git checkout at `root`; None values outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "id": commit,
        "dirty": None if status is None else bool(status),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def write_results(out_dir: Path, document: Mapping[str, Any]) -> Path:
    """Atomically (re)write results.json; called after every finished case."""
    path = Path(out_dir) / RESULTS
    atomic_write_json(path, {**document, "written": _now()})
    return path


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def load_results(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / RESULTS
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PtibenchError(
            f"{path}: no such file (run the benchmark with --ptibench-out)"
        ) from None
    except (OSError, ValueError) as error:
        raise PtibenchError(f"{path}: not readable results JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != "ptibench-results":
        raise PtibenchError(f"{path}: not a ptibench results file")
    if not isinstance(document.get("cases"), list):
        raise PtibenchError(f'{path}: wrong schema: "cases" must be a list')
    for index, case in enumerate(document["cases"]):
        problem = _case_problem(case)
        if problem:
            raise PtibenchError(f"{path}: wrong schema: cases[{index}] {problem}")
    return document


CASE_SPEC_FIELDS = ("world", "concept", "method", "stage", "lr", "seed")


def _case_problem(case: Any) -> str | None:
    """What keeps a results.json case from being tabulated, or None."""
    if not isinstance(case, dict):
        return "must be an object"
    spec = case.get("spec")
    if not isinstance(spec, dict):
        return 'needs a "spec" object'
    missing = [name for name in CASE_SPEC_FIELDS if name not in spec]
    if missing:
        return f"spec lacks {', '.join(missing)}"
    if not isinstance(spec["lr"], int | float) or isinstance(spec["lr"], bool):
        return f"spec lr {spec['lr']!r} is not a number"
    if not isinstance(case.get("status"), str):
        return 'needs a "status"'
    if not isinstance(case.get("metrics", {}), dict):
        return '"metrics" must be an object'
    return None


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
    return lines + concept_order.summary_lines(document)


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
    """Reconstruction vs editability (lr labels, knee marked) and both vs distance, per table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(len(tables), 1)
    figure, axes = plt.subplots(count, 2, figsize=(11, 4.2 * count), squeeze=False)
    for (left, right), table in zip(axes, tables, strict=False):
        rows = [row for row in table.rows if row.gain is not None]
        gains = [row.gain for row in rows]
        edits = [-row.loss for row in rows]
        left.plot(gains, edits, "o-", color="tab:blue")
        for row, x, y in zip(rows, gains, edits, strict=True):
            left.annotate(
                lr_key(row.lr),
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
                color="tab:red" if row.past_knee else "black",
            )
        knee = table.knee_lr()
        for row, x, y in zip(rows, gains, edits, strict=True):
            if row.lr == knee:
                left.plot(
                    [x], [y], "*", markersize=16, color="tab:red", label=f"knee lr={lr_key(knee)}"
                )
        left.set_xlabel("reconstruction gain (normalised)")
        left.set_ylabel("editability (normalised, 0 = smallest lr)")
        left.set_title(f"{table.title}: {'knee' if knee else 'no knee'}", fontsize=9)
        if knee:
            left.legend(fontsize=8)
        distances = [row.metrics.get("distance") for row in rows]
        if rows and all(d is not None and d > 0 for d in distances):
            for name in [*table.reconstruction, *table.editability]:
                values = [row.metrics.get(name, float("nan")) for row in rows]
                low, high = min(values), max(values)
                scaled = [(v - low) / (high - low) if high > low else 0.5 for v in values]
                style = "o-" if name in table.reconstruction else "s--"
                right.plot(distances, scaled, style, label=f"{name} ({low:.3g}..{high:.3g})")
            if knee:
                right.axvline(
                    dict(zip([r.lr for r in rows], distances, strict=True))[knee],
                    color="tab:red",
                    linestyle=":",
                    label="knee",
                )
            right.set_xscale("log")
            right.set_xlabel("distance travelled")
            right.set_ylabel("metric, min..max of the grid -> 0..1")
            right.legend(fontsize=7)
        else:
            right.text(0.5, 0.5, "no distance recorded", ha="center", va="center")
        right.set_title(f"{table.title}: metrics vs distance", fontsize=9)
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


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
    return [results_path, md_path, png_path, *concept_order.render(out_dir, document)]
