"""The trade-off table: per stage and method, what each lr buys in reconstruction and costs in
editability, the marginal rate between consecutive lrs, and which lrs lie past the knee.

Normalised axes: each metric is oriented so that higher is better, measured from its value at the
smallest (non-diverged) lr, in units of its range over the grid or of its noise floor (the
baseline tolerance) if the range is smaller. Reconstruction gain R is the mean over reconstruction
metrics; editability loss L the mean over editability metrics of the drop. Both are what
`ptibench.results.knee` reads.

An lr where both sides lose at once (R falls and L rises by more than BREAK against the last
sound lr below it) is not a trade but a break: its status is "broken", it keeps its place on the
axes, and the marginal rates and the knee are computed without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptibench.results.baselines import noise_floor
from ptibench.results.knee import (
    MIN_POINTS,
    ROUNDING,
    KneeReport,
    knee_stability,
    marginal_rates,
)
from ptibench.spec import DEFAULT_METHOD, METRICS, STAGES, lr_key

GroupKey = tuple[str, str, str, str]  # world, concept, method, stage

BREAK = 0.5
"""A step that loses more than this on both sides (in units of the metrics' ranges over the grid,
averaged per side) breaks: a collapse, like LoRA at lr 1e-2 on the tiny world (-0.98 / +0.83)."""


@dataclass
class LrRow:
    lr: float
    status: str  # "ok", "broken", "diverged", or "diverged k/n" when only some seeds diverged
    seeds: int
    metrics: dict[str, float]
    gain: float | None = None
    loss: float | None = None
    d_gain: float | None = None
    d_loss: float | None = None
    rate: float | None = None
    past_knee: bool = False
    diverged_at: list[int] = field(default_factory=list)
    check: str = ""  # against the stored baseline: pass, FAIL, missing, updated, error
    broken: bool = False
    gain_range: tuple[float, float] | None = None  # over seeds, when there are several
    loss_range: tuple[float, float] | None = None

    @property
    def sound(self) -> bool:
        """On the trade-off curve: measured, not diverged, not broken (what the knee reads)."""
        return self.gain is not None and not self.broken


@dataclass
class TradeoffTable:
    key: GroupKey
    rows: list[LrRow]
    reconstruction: list[str]
    editability: list[str]
    knee: KneeReport | None

    @property
    def title(self) -> str:
        world, concept, method, stage = self.key
        return f"{stage} / {method} ({world}, {concept})"

    def sound_rows(self) -> list[LrRow]:
        return [row for row in self.rows if row.sound]

    def knee_lr(self) -> float | None:
        if self.knee is None or self.knee.chosen.index is None:
            return None
        return self.sound_rows()[self.knee.chosen.index].lr


def table_key(case: Mapping[str, Any]) -> GroupKey:
    spec = case["spec"]
    return (spec["world"], spec["concept"], spec["method"], spec["stage"])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _oriented(metric: str, value: float) -> float:
    return value if METRICS[metric].direction == "higher" else -value


def build_table(key: GroupKey, cases: Iterable[Mapping[str, Any]]) -> TradeoffTable:
    """One table from the cases of one group; diverged seeds are shown, never fed to the knee."""
    by_lr: dict[float, list[Mapping[str, Any]]] = {}
    for case in cases:
        by_lr.setdefault(float(case["spec"]["lr"]), []).append(case)
    present = {
        name
        for group in by_lr.values()
        for case in group
        if case["status"] == "ok"
        for name, value in case["metrics"].items()
        if _finite(value)
    }
    kinds = {
        kind: [m for m in METRICS if METRICS[m].kind == kind and m in present]
        for kind in ("reconstruction", "editability")
    }
    rows: list[LrRow] = []
    seeds_ok: list[list[Mapping[str, Any]]] = []
    for lr in sorted(by_lr):
        group = sorted(by_lr[lr], key=lambda case: case["spec"]["seed"])
        ok = [case for case in group if case["status"] == "ok"]
        diverged = [case for case in group if case["status"] != "ok"]
        means = {}
        for name in sorted({n for case in ok for n in case["metrics"]}):
            values = [case["metrics"][name] for case in ok if _finite(case["metrics"].get(name))]
            if values:
                means[name] = float(np.mean(values))
        if not ok:
            status = "diverged"
        elif diverged:
            status = f"diverged {len(diverged)}/{len(group)}"
        else:
            status = "ok"
        rows.append(
            LrRow(
                lr,
                status,
                len(group),
                means,
                diverged_at=[
                    c["diverged_at"] for c in diverged if c.get("diverged_at") is not None
                ],
                check=_check(group),
            )
        )
        seeds_ok.append(ok)
    knee = _place_knee(rows, seeds_ok, kinds["reconstruction"], kinds["editability"])
    return TradeoffTable(key, rows, kinds["reconstruction"], kinds["editability"], knee)


CHECK_WORDS = {
    "passed": "pass",
    "failed": "FAIL",
    "missing": "missing",
    "updated": "updated",
    "error": "error",
}


def _check(cases: list[Mapping[str, Any]]) -> str:
    """The worst baseline verdict among an lr's seeds (a failure outranks a pass)."""
    verdicts = [(case.get("baseline") or {}).get("verdict", "") for case in cases]
    for verdict in ("error", "failed", "missing", "updated", "passed"):
        if verdict in verdicts:
            return CHECK_WORDS[verdict]
    return ""


def _axis(
    rows: list[LrRow],
    seeds: list[list[Mapping[str, Any]]],
    names: list[str],
    sign: float,
    samples: int,
) -> tuple[list[float], list[list[float]]]:
    """Mean normalised (gain or loss) per valid row, and per seed, for `names`."""
    if not names:
        return [0.0] * len(rows), [[0.0] * max(len(s), 1) for s in seeds]
    per_metric = []
    per_metric_seed = []
    for name in names:
        oriented = [
            _oriented(name, row.metrics[name]) if name in row.metrics else math.nan for row in rows
        ]
        finite = [v for v in oriented if math.isfinite(v)]
        origin = finite[0] if finite else 0.0
        scale = max(max(finite) - min(finite), noise_floor(name, samples)) if finite else 1.0
        per_metric.append([sign * (v - origin) / scale for v in oriented])
        per_metric_seed.append(
            [
                [
                    sign * (_oriented(name, c["metrics"][name]) - origin) / scale
                    for c in group
                    if _finite(c["metrics"].get(name))
                ]
                for group in seeds
            ]
        )
    means = [
        float(np.nanmean([m[i] for m in per_metric]))
        if any(math.isfinite(m[i]) for m in per_metric)
        else 0.0
        for i in range(len(rows))
    ]
    by_seed = []
    for i in range(len(seeds)):
        columns = [m[i] for m in per_metric_seed if m[i]]
        width = min((len(c) for c in columns), default=0)
        by_seed.append(
            [float(np.mean([c[s] for c in columns])) for s in range(width)] or [means[i]]
        )
    return means, by_seed


def _place_knee(
    rows: list[LrRow],
    seeds: list[list[Mapping[str, Any]]],
    reconstruction: list[str],
    editability: list[str],
) -> KneeReport | None:
    valid = [i for i, row in enumerate(rows) if row.status != "diverged" and row.metrics]
    if not valid:
        return None
    valid_rows = [rows[i] for i in valid]
    valid_seeds = [seeds[i] for i in valid]
    samples = min(
        (c["spec"]["eval"]["samples_per_prompt"] for g in valid_seeds for c in g), default=8
    )
    gain, gain_seeds = _axis(valid_rows, valid_seeds, reconstruction, 1.0, samples)
    loss, loss_seeds = _axis(valid_rows, valid_seeds, editability, -1.0, samples)
    sound = [not broken for broken in breaks(gain, loss)]
    on_curve = [j for j in range(len(valid_rows)) if sound[j]]
    rates = marginal_rates([gain[j] for j in on_curve], [loss[j] for j in on_curve])
    previous = None
    for j, row in enumerate(valid_rows):
        row.gain, row.loss = gain[j], loss[j]
        if len(gain_seeds[j]) > 1:
            row.gain_range = (min(gain_seeds[j]), max(gain_seeds[j]))
            row.loss_range = (min(loss_seeds[j]), max(loss_seeds[j]))
        if previous is not None:
            row.d_gain, row.d_loss = gain[j] - gain[previous], loss[j] - loss[previous]
        if sound[j]:
            row.rate = rates[on_curve.index(j)]
            previous = j
        else:
            row.broken = True
            row.status = "broken" if row.status == "ok" else f"broken, {row.status}"
    knee = knee_stability(
        [valid_rows[j].lr for j in on_curve],
        [gain_seeds[j] for j in on_curve],
        [loss_seeds[j] for j in on_curve],
    )
    if knee.chosen.index is not None:
        for j in on_curve[knee.chosen.index + 1 :]:
            valid_rows[j].past_knee = True
    return knee


def breaks(gain: list[float], loss: list[float], limit: float = BREAK) -> list[bool]:
    """Which points lose on both sides against the last sound point before them: reconstruction
    gain down and editability loss up, each by more than `limit`. The first point is sound."""
    broken = [False] * len(gain)
    last = 0
    for j in range(1, len(gain)):
        if gain[j] - gain[last] < -limit and loss[j] - loss[last] > limit:
            broken[j] = True
        else:
            last = j
    return broken


def build_tables(cases: Iterable[Mapping[str, Any]]) -> list[TradeoffTable]:
    groups: dict[GroupKey, list[Mapping[str, Any]]] = {}
    for case in cases:
        groups.setdefault(table_key(case), []).append(case)

    def order(key: GroupKey) -> tuple:
        world, concept, method, stage = key
        rank = STAGES.index(stage) if stage in STAGES else len(STAGES)
        return (world, concept, method != DEFAULT_METHOD, method, rank, stage)

    return [build_table(key, groups[key]) for key in sorted(groups, key=order)]


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:+.3f}" if signed else f"{value:.4g}"


def rate_text(row: LrRow) -> str:
    """The marginal rate in words where a number would mislead: 'free' (reconstruction gained,
    no editability lost), 'no gain' (editability lost, nothing gained), 'no trade' (neither)."""
    if row.rate is None:
        return "-"
    if math.isinf(row.rate):
        return "no gain"
    if row.rate == 0.0:
        return "free" if (row.d_gain or 0.0) > ROUNDING else "no trade"
    return f"{row.rate:.3g}"


def knee_line(table: TradeoffTable) -> str:
    """One sentence on the knee: where, by which rule, how stable; or that there is none."""
    knee = table.knee
    if knee is None:
        return "knee: none (every case diverged)"
    valid = [row.lr for row in table.sound_rows()]
    broken = [lr_key(row.lr) for row in table.rows if row.broken]
    if broken:
        return f"{_knee_sentence(knee, valid)}; breaks at lr={', '.join(broken)} (left out)"
    return _knee_sentence(knee, valid)


def _knee_sentence(knee: KneeReport, valid: list[float]) -> str:
    def say(index: int | None) -> str:
        return "none" if index is None else lr_key(valid[index])

    chosen = knee.chosen
    if len(valid) < MIN_POINTS:
        return f"knee: no knee ({len(valid)} usable lr(s); a knee needs at least {MIN_POINTS})"
    head = (
        "knee: no knee (neither rule finds a turn in the trade-off)"
        if chosen.index is None
        else f"knee: lr={lr_key(valid[chosen.index])} by {chosen.rule}; lrs above it are flagged"
    )
    detail = (
        f"kneed on R-L vs log10(lr): {say(knee.kneed.index)}; "
        f"marginal rate > 1: {say(knee.rate.index)}"
    )
    stability = (
        f"; stability {knee.stability:.0%} of {knee.resamples} seed resamples"
        if knee.stability is not None
        else ""
    )
    return f"{head} ({detail}{stability})"


def _columns(table: TradeoffTable) -> list[str]:
    return ["distance", *table.reconstruction, *table.editability]


def table_cells(table: TradeoffTable) -> tuple[list[str], list[list[str]]]:
    header = ["lr", "status", *_columns(table), "R gain", "E loss", "rate", "knee", "baseline"]
    if any(row.seeds > 1 for row in table.rows):
        header.insert(2, "seeds")
    body = []
    for row in table.rows:
        status = row.status
        if row.diverged_at and row.status == "diverged":
            status = f"diverged@{min(row.diverged_at)}"
        cells = [lr_key(row.lr), status]
        if "seeds" in header:
            cells.append(str(row.seeds))
        cells += [_num(row.metrics.get(name)) for name in _columns(table)]
        cells += [
            _num(row.d_gain, True),
            _num(row.d_loss, True),
            rate_text(row),
            "PAST KNEE" if row.past_knee else ("knee" if row.lr == table.knee_lr() else ""),
            row.check,
        ]
        body.append(cells)
    return header, body


LEGEND = (
    "R gain / E loss: change of reconstruction gain / editability loss against the previous lr, "
    "on normalised axes (1 = the metric's range over the grid); rate = E loss / R gain "
    "(editability lost per unit of reconstruction gained; free = gained at no editability cost, "
    "no gain = editability lost for nothing, no trade = neither); PAST KNEE = an lr above the "
    "knee; broken = both sides lost at once (left out of the rates and the knee); "
    "baseline = the case checked against its stored baseline."
)


def reference_cells(
    table: TradeoffTable, reference: Mapping[str, Mapping[str, Any]]
) -> tuple[list[str], list[list[str]]]:
    """This method's values beside the stored baseline method's, lr by lr, with differences.

    `reference` maps an lr key to {"status": ..., "metrics": {...}} of the baseline method.
    """
    names = _columns(table)
    header = ["lr"] + [f"{n} {w}" for n in names for w in ("new", "base", "diff")]
    body = []
    for row in table.rows:
        ref = reference.get(lr_key(row.lr))
        cells = [lr_key(row.lr)]
        for name in names:
            new = None if row.status == "diverged" else row.metrics.get(name)
            base = None
            if ref is not None and ref.get("status") == "ok":
                base = ref.get("metrics", {}).get(name)
            diff = new - base if new is not None and base is not None else None
            cells += [
                "diverged" if row.status == "diverged" else _num(new),
                ("diverged" if ref and ref.get("status") == "diverged" else _num(base)),
                _num(diff, True),
            ]
        body.append(cells)
    return header, body
