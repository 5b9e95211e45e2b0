"""Run history and comparison.

`autosave` keeps a copy of a finished report folder under `<out>/runs/NNNN_<commit>/` (the
commit's first 12 digits, `-dirty` for a checkout with uncommitted changes), so later runs do
not overwrite it. `compare_runs` reads two results.json and says, per case and metric, how
they differ and whether the difference is larger than the samples' spread, from the
per-sample records each case carries (ptibench.results.significance).
"""

from __future__ import annotations

import math
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptibench.errors import PtibenchError
from ptibench.io import ensure_dir, publish_dir
from ptibench.results.document import RESULTS, load_results
from ptibench.results.significance import Test, fisher, welch
from ptibench.results.tables import render_text
from ptibench.spec import METRICS, lr_key

RUNS_DIR = "runs"
RUN_NAME = re.compile(r"(?P<number>\d{4,})_(?P<commit>[0-9A-Za-z.-]+)")

SHARES = ("appearance", "edit_success", "leakage")
PER_SAMPLE = ("lpips", "clip_i", "clip_t", *SHARES)


def _run_number(path: Path) -> int | None:
    match = RUN_NAME.fullmatch(path.name)
    return int(match["number"]) if match else None


def saved_runs(out_dir: Path) -> list[Path]:
    """The autosaved runs under `out_dir`, oldest first."""
    folder = Path(out_dir) / RUNS_DIR
    runs = [p for p in folder.glob("*") if p.is_dir() and _run_number(p) is not None]
    return sorted(runs, key=_run_number)


def _commit_tag(document: Mapping[str, Any]) -> str:
    commit = document.get("commit") or {}
    tag = (commit.get("id") or "nocommit")[:12]
    return tag + ("-dirty" if commit.get("dirty") else "")


def autosave(out_dir: Path, document: Mapping[str, Any]) -> Path:
    """Copy the report folder `out_dir` (all but its runs/) to the next numbered run folder.

    Copied into a staging folder first and renamed into place, so a run folder is complete or
    absent; two sessions saving at once get different numbers."""
    out_dir = Path(out_dir)
    runs = ensure_dir(out_dir / RUNS_DIR)
    staging = runs / f".saving-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for item in sorted(out_dir.iterdir()):
            if item.name == RUNS_DIR or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, staging / item.name)
            else:
                shutil.copy2(item, staging / item.name)
        tag = _commit_tag(document)
        while True:
            number = max((_run_number(p) for p in saved_runs(out_dir)), default=0) + 1
            target = runs / f"{number:04d}_{tag}"
            if publish_dir(staging, target):
                return target
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise PtibenchError(f"cannot save the run in {runs}: {error.strerror or error}") from None


def resolve_run(name: str, out_dir: Path) -> Path:
    """A report folder from what the user typed: a folder, its results.json, or an autosaved
    run under `out_dir`/runs/ by name or number (1, 0001, or -1 for the newest)."""
    path = Path(name)
    if path.is_file() and path.name == RESULTS:
        return path.parent
    if path.is_dir():
        return path
    if (Path(out_dir) / RUNS_DIR / name).is_dir():
        return Path(out_dir) / RUNS_DIR / name
    if re.fullmatch(r"-?\d+", name):
        runs = saved_runs(out_dir)
        number = int(name)
        if number < 0 and -number <= len(runs):
            return runs[number]
        found = [run for run in runs if _run_number(run) == number]
        if found:
            return found[0]
        saved = ", ".join(run.name for run in runs) or "none"
        raise PtibenchError(f"no run {name} in {Path(out_dir) / RUNS_DIR} (saved runs: {saved})")
    raise PtibenchError(f"{name}: no such report folder (nor a run number)")


def sample_readings(case: Mapping[str, Any]) -> dict[str, list]:
    """Per metric, the per-sample readings behind it (pooled over the edit prompts for the
    editability metrics); empty for a case without per-sample records."""
    records = case.get("records") or {}
    recon = records.get("reconstruction") or {}
    edits = records.get("edits") or []
    readings: dict[str, list] = {}
    for name in ("lpips", "clip_i", "appearance"):
        if recon.get(name):
            readings[name] = list(recon[name])
    clip_t = [value for edit in edits for value in edit.get("clip_t", [])]
    if clip_t:
        readings["clip_t"] = clip_t
    hits = [hit for edit in edits for hit in edit.get("edit", [])]
    if hits:
        readings["edit_success"] = hits
    copies = [
        hit for row in (records.get("leakage") or {}).get("prompts", []) for hit in row["copy"]
    ]
    if copies:  # leakage = their share less a base share that both runs share
        readings["leakage"] = copies
    return readings


@dataclass
class MetricDiff:
    metric: str
    a: float | None
    b: float | None
    test: Test | None
    verdict: str

    @property
    def diff(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class CaseDiff:
    key: tuple[str, str, str, str]  # world, concept, method, stage
    lr: float
    seed: int
    status: tuple[str, str]
    metrics: list[MetricDiff] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)


@dataclass
class RunComparison:
    a: Path
    b: Path
    alpha: float
    cases: list[CaseDiff]
    only_a: list[str]
    only_b: list[str]
    headers: tuple[str, str] = ("", "")


def _case_key(case: Mapping[str, Any]) -> tuple:
    spec = case["spec"]
    return (spec["world"], spec["concept"], spec["method"], spec["stage"], spec["lr"], spec["seed"])


def _label(key: tuple) -> str:
    world, concept, method, stage, lr, seed = key
    return f"{stage} / {method} ({world}, {concept}) lr={lr_key(lr)} seed {seed}"


def _verdict(metric: str, a: float, b: float, test: Test | None, alpha: float) -> str:
    if test is None:
        return "one reading, no test"
    if math.isnan(test.p):
        return "too few samples"
    if test.p >= alpha:
        return "not significant"
    direction = METRICS[metric].direction if metric in METRICS else "higher"
    better = (b > a) == (direction == "higher")
    return f"significant: B {'better' if better else 'worse'}"


def _settings_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    def flat(spec: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in spec.items():
            if isinstance(value, dict):
                out.update({f"{name}.{k}": v for k, v in value.items()})
            else:
                out[name] = value
        return out

    fa, fb = flat(a["spec"]), flat(b["spec"])
    return [
        f"{name} {fa.get(name)!r} vs {fb.get(name)!r}"
        for name in sorted(set(fa) | set(fb))
        if fa.get(name) != fb.get(name)
    ]


def compare_cases(a: Mapping[str, Any], b: Mapping[str, Any], alpha: float) -> list[MetricDiff]:
    """Each metric of two runs of the same case: values, test and verdict."""
    readings_a, readings_b = sample_readings(a), sample_readings(b)
    metrics_a, metrics_b = a.get("metrics") or {}, b.get("metrics") or {}
    order = [m for m in METRICS if m in metrics_a or m in metrics_b]
    order += sorted((set(metrics_a) | set(metrics_b)) - set(order))
    diffs = []
    for name in order:
        va, vb = metrics_a.get(name), metrics_b.get(name)
        if va is None or vb is None:
            diffs.append(MetricDiff(name, va, vb, None, "only in one run"))
            continue
        test = None
        if name in readings_a and name in readings_b:
            test = (fisher if name in SHARES else welch)(readings_a[name], readings_b[name])
        elif name in PER_SAMPLE:
            diffs.append(MetricDiff(name, va, vb, None, "no per-sample records"))
            continue
        diffs.append(MetricDiff(name, va, vb, test, _verdict(name, va, vb, test, alpha)))
    return diffs


def compare_runs(a: Path, b: Path, alpha: float = 0.05) -> RunComparison:
    """Compare the cases two report folders share (matched by world, concept, method, stage,
    lr and seed); cases only one of them ran are listed."""
    doc_a, doc_b = load_results(a), load_results(b)
    cases_a = {_case_key(c): c for c in doc_a["cases"]}
    cases_b = {_case_key(c): c for c in doc_b["cases"]}
    shared = sorted(set(cases_a) & set(cases_b), key=lambda k: (*k[:4], float(k[4]), k[5]))
    diffs = []
    for key in shared:
        ca, cb = cases_a[key], cases_b[key]
        both_ok = ca.get("status") == cb.get("status") == "ok"
        diffs.append(
            CaseDiff(
                key[:4],
                float(key[4]),
                int(key[5]),
                (str(ca.get("status")), str(cb.get("status"))),
                compare_cases(ca, cb, alpha) if both_ok else [],
                _settings_diff(ca, cb),
            )
        )
    return RunComparison(
        Path(a),
        Path(b),
        alpha,
        diffs,
        [_label(k) for k in sorted(set(cases_a) - set(cases_b), key=str)],
        [_label(k) for k in sorted(set(cases_b) - set(cases_a), key=str)],
        (_describe(doc_a), _describe(doc_b)),
    )


def _describe(document: Mapping[str, Any]) -> str:
    commit = document.get("commit") or {}
    when = document.get("written", "")
    dirty = ", uncommitted changes" if commit.get("dirty") else ""
    return f"commit {(commit.get('id') or 'unknown')[:12]}{dirty}; written {when}"


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def format_comparison(comparison: RunComparison) -> str:
    """The terminal text of a comparison: per table of cases, metric | A | B | B-A | test | p."""
    lines = [
        f"A: {comparison.a} ({comparison.headers[0]})",
        f"B: {comparison.b} ({comparison.headers[1]})",
        f"significance: two-sided p < {comparison.alpha} (Fisher's exact test for shares of "
        "oracle hits, Welch's t-test for per-sample readings; not corrected for the number "
        "of comparisons)",
    ]
    if not comparison.cases:
        lines.append("the two runs share no case (same world, concept, method, stage, lr, seed)")
    header = ["lr", "seed", "metric", "A", "B", "B-A", "test", "p", "verdict"]
    tables: dict[tuple, list[CaseDiff]] = {}
    for case in comparison.cases:
        tables.setdefault(case.key, []).append(case)
    significant = 0
    for key, cases in tables.items():
        world, concept, method, stage = key
        lines += ["", f"{stage} / {method} ({world}, {concept})"]
        body = []
        for case in cases:
            if case.settings:
                lines.append(
                    f"lr={lr_key(case.lr)} seed {case.seed}: settings differ: "
                    + "; ".join(case.settings)
                )
            if not case.metrics:
                body.append(
                    [
                        lr_key(case.lr),
                        str(case.seed),
                        "status",
                        *case.status,
                        "",
                        "",
                        "",
                        "same" if case.status[0] == case.status[1] else "changed",
                    ]
                )
                continue
            for diff in case.metrics:
                significant += diff.verdict.startswith("significant")
                body.append(
                    [
                        lr_key(case.lr),
                        str(case.seed),
                        diff.metric,
                        _num(diff.a),
                        _num(diff.b),
                        _num(diff.diff, signed=True),
                        diff.test.name if diff.test else "-",
                        "-" if diff.test is None else _num(diff.test.p),
                        diff.verdict,
                    ]
                )
        lines.append(render_text(header, body, align="left"))
    for label, only in (("A", comparison.only_a), ("B", comparison.only_b)):
        if only:
            lines += ["", f"only in {label}:", *(f"  {name}" for name in only)]
    lines += ["", f"{significant} significant difference(s) at p < {comparison.alpha}"]
    return "\n".join(lines)
