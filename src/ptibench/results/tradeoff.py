"""The trade-off table: per stage and method, what each lr buys in reconstruction and costs in
editability, with 95% intervals, whether each step between consecutive lrs is significant, and
which lrs lie past the knee.

Normalised axes: each metric is oriented so that higher is better, measured from its value at the
smallest sound lr, in units of its range over the sound lrs (diverged and broken ones left out,
so a collapse never sets the scale) or of its noise floor (the baseline tolerance) if the range
is smaller. Reconstruction gain R is the mean over reconstruction metrics; editability loss L the
mean over editability metrics of the drop. R and L read the metrics that carry an interval (every
per-sample metric; `denoise_loss` only with several seeds); a table without any reads them all,
untested. Intervals come from one joint bootstrap over samples and seeds
(ptibench.results.intervals), so every step's interval is paired across its two lrs; the knee
(ptibench.results.knee) reads them.

An lr where both sides lose at once (R falls and L rises each by more than BREAK, and each
significantly, against the last sound lr below it) is not a trade but a break: its status is
"broken", it keeps its place in the table and the plot, and the normalisation, the steps and the
knee are computed without it. Leaving a break out can shrink the ranges and reveal another, so
the search repeats until no new break appears.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptibench.results.baselines import noise_floor
from ptibench.results.intervals import (
    INTERVAL_METHOD,
    RESAMPLES,
    RNG_SEED,
    Draws,
    Replicates,
    bootstrap,
)
from ptibench.results.knee import (
    EQUAL,
    LEVEL,
    MIN_POINTS,
    Interval,
    Knee,
    Step,
    find_knee,
    interval,
    marginal_rate,
    step_between,
)
from ptibench.spec import DEFAULT_METHOD, METRICS, STAGES, lr_key

GroupKey = tuple[str, str, str, str]  # world, concept, method, stage

BREAK = 0.5
"""A step that loses more than this on both sides (in units of the metrics' ranges over the sound
lrs, averaged per side) breaks: a collapse, like LoRA at lr 1e-2 on the tiny world."""


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
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    gain_ci: tuple[float, float] | None = None  # of R and L at this lr
    loss_ci: tuple[float, float] | None = None
    step: Step | None = None  # from the last sound lr below (None for the first)

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
    knee: Knee | None
    covers: str = "no interval"
    axes: list[str] = field(default_factory=list)  # the metrics R and L read

    @property
    def title(self) -> str:
        world, concept, method, stage = self.key
        return f"{stage} / {method} ({world}, {concept})"

    def sound_rows(self) -> list[LrRow]:
        return [row for row in self.rows if row.sound]

    def knee_lr(self) -> float | None:
        if self.knee is None or self.knee.index is None:
            return None
        return self.sound_rows()[self.knee.index].lr


def table_key(case: Mapping[str, Any]) -> GroupKey:
    spec = case["spec"]
    return (spec["world"], spec["concept"], spec["method"], spec["stage"])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _oriented(metric: str, value):
    return value if METRICS[metric].direction == "higher" else -value


def build_table(
    key: GroupKey, cases: Iterable[Mapping[str, Any]], unit: str = "training seed"
) -> TradeoffTable:
    """One table from the cases of one group; diverged seeds are shown, never fed to the knee.
    `unit`: what the cases of one lr are replicates of (seeds; or concepts and seeds)."""
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
        group = sorted(by_lr[lr], key=lambda case: (case["spec"]["concept"], case["spec"]["seed"]))
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
    table = TradeoffTable(key, rows, kinds["reconstruction"], kinds["editability"], None)
    _place_knee(table, seeds_ok, unit)
    return table


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


@dataclass
class _Axis:
    """One side (R or L) at every measured lr, with its bootstrap replicates."""

    point: np.ndarray  # [lrs]
    draws: Draws  # [resamples, lrs]


def _axis(reps: Replicates, names: list[str], sound: list[int], sign: float, samples: int) -> _Axis:
    """Mean normalised gain (sign +1) or loss (sign -1) over `names`, scaled on `sound` rows."""
    lrs = len(reps.seeds)
    total = np.zeros(lrs)
    zeros = np.zeros((reps.resamples, lrs))
    total_draws = Draws(zeros, zeros, zeros, 2**31, 2**31)
    count = np.zeros(lrs)
    for name in names:
        point = reps.point[name]
        oriented = _oriented(name, point)
        on_curve = [oriented[j] for j in sound if math.isfinite(oriented[j])]
        if not on_curve:
            continue
        origin = on_curve[0]
        scale = max(max(on_curve) - min(on_curve), noise_floor(name, samples))
        finite = np.isfinite(point)

        def normalised(values, finite=finite, origin=origin, scale=scale, name=name):
            return np.where(finite, sign * (_oriented(name, values) - origin) / scale, 0.0)

        total += normalised(point)
        total_draws = total_draws + reps.draws[name].map(normalised)
        count += finite
    divisor = np.maximum(count, 1)
    return _Axis(total / divisor, total_draws.map(lambda values: values / divisor))


def _axis_metrics(reps: Replicates, names: list[str], rows: list[int]) -> tuple[list[str], bool]:
    """The metrics a side reads: those with an interval at every row that has them, or all of
    them (untested) when none has one."""
    tested = [
        n
        for n in names
        if any(reps.varies[n][i] for i in rows)
        and all(reps.varies[n][i] for i in rows if math.isfinite(reps.point[n][i]))
    ]
    return (tested, True) if tested else (list(names), not names)


def _breaks(
    reps: Replicates, recon: list[str], edit: list[str], samples: int, count: int
) -> set[int]:
    """The points that lose on both sides, by more than BREAK and significantly, against the
    last sound point before them. Each candidate is judged on axes scaled without it (a
    collapse would otherwise set the range it is measured in), and the search repeats until
    no new break appears (leaving one out can shrink the ranges). The first point is sound."""
    broken: set[int] = set()
    while True:
        found = set(broken)
        last = 0
        for j in range(1, count):
            if j in found:
                continue
            scale = [k for k in range(count) if k not in found and k != j]
            gain = _axis(reps, recon, scale, 1.0, samples)
            loss = _axis(reps, edit, scale, -1.0, samples)
            step = step_between(gain.point, loss.point, gain.draws, loss.draws, last, j)
            if (
                step.gain.value < -BREAK
                and step.loss.value > BREAK
                and step.gain.below_zero
                and step.loss.above_zero
            ):
                found.add(j)
            else:
                last = j
        if found == broken:
            return broken
        broken = found


def _place_knee(
    table: TradeoffTable, seeds: list[list[Mapping[str, Any]]], unit: str = "training seed"
) -> None:
    """Intervals, axes, breaks, steps and the knee of `table`, in place."""
    rows = table.rows
    valid = [i for i, row in enumerate(rows) if row.status != "diverged" and row.metrics]
    if not valid:
        return
    valid_rows = [rows[i] for i in valid]
    valid_seeds = [seeds[i] for i in valid]
    shown = ("distance", *table.reconstruction, *table.editability)
    names = [n for n in shown if any(n in r.metrics for r in valid_rows)]
    reps = bootstrap(valid_seeds, names, unit=unit)
    for j, row in enumerate(valid_rows):
        row.intervals = {name: reps.intervals[name][j] for name in reps.intervals}
    samples = min(
        (c["spec"]["eval"]["samples_per_prompt"] for g in valid_seeds for c in g), default=8
    )
    everything = list(range(len(valid_rows)))
    recon, recon_tested = _axis_metrics(reps, table.reconstruction, everything)
    edit, edit_tested = _axis_metrics(reps, table.editability, everything)
    table.axes = [*recon, *edit]
    broken = _breaks(reps, recon, edit, samples, len(valid_rows))
    sound = [j for j in everything if j not in broken]
    gain = _axis(reps, recon, sound, 1.0, samples)
    loss = _axis(reps, edit, sound, -1.0, samples)
    tested = recon_tested and edit_tested
    knee = find_knee(
        list(gain.point[sound]),
        list(loss.point[sound]),
        gain.draws[sound] if tested else None,
        loss.draws[sound] if tested else None,
    )
    previous = None
    for j, row in enumerate(valid_rows):
        row.gain, row.loss = float(gain.point[j]), float(loss.point[j])
        if knee.tested:
            row.gain_ci = _bounds(interval(row.gain, gain.draws[j], LEVEL))
            row.loss_ci = _bounds(interval(row.loss, loss.draws[j], LEVEL))
        if j in broken:
            row.broken = True
            row.status = "broken" if row.status == "ok" else f"broken, {row.status}"
        if previous is not None:
            if j in broken:
                row.step = step_between(gain.point, loss.point, gain.draws, loss.draws, previous, j)
            else:
                row.step = knee.steps[sound.index(j) - 1]
            row.d_gain, row.d_loss = row.step.gain.value, row.step.loss.value
            if j not in broken:
                row.rate = marginal_rate(row.d_gain, row.d_loss)
        if j not in broken:
            previous = j
    if knee.index is not None:
        for j in sound[knee.index + 1 :]:
            valid_rows[j].past_knee = True
    table.knee = knee
    table.covers = reps.covers()
    if not knee.tested and any(any(v) for v in reps.varies.values()):
        table.covers += "; R and L have none (a side has no metric with one)"


def _bounds(value: Interval) -> tuple[float, float]:
    return (value.low, value.high)


def tabulated(cases: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The cases the tables show: finished ones, ok or diverged (not failed or errored)."""
    return [case for case in cases if case.get("status") in ("ok", "diverged")]


ALL_CONCEPTS = "all concepts"


def build_tables(cases: Iterable[Mapping[str, Any]]) -> list[TradeoffTable]:
    """One table per world / concept / method / stage; where a world, method and stage ran
    several concepts, one more table over all of them (concept "all concepts (n)"): at each lr
    the mean over concepts and seeds, each concept-and-seed pair a replicate, so its intervals
    cover the spread between concepts too."""
    groups: dict[GroupKey, list[Mapping[str, Any]]] = {}
    for case in cases:
        groups.setdefault(table_key(case), []).append(case)
    pooled: dict[tuple[str, str, str], list[GroupKey]] = {}
    for key in groups:
        world, _, method, stage = key
        pooled.setdefault((world, method, stage), []).append(key)

    def order(key: GroupKey) -> tuple:
        world, concept, method, stage = key
        rank = STAGES.index(stage) if stage in STAGES else len(STAGES)
        return (
            world,
            method != DEFAULT_METHOD,
            method,
            rank,
            stage,
            concept == ALL_CONCEPTS,
            concept,
        )

    tables = {key: build_table(key, groups[key]) for key in groups}
    for (world, method, stage), keys in pooled.items():
        if len(keys) < 2:
            continue
        together = [case for key in keys for case in groups[key]]
        shown = (world, f"{ALL_CONCEPTS} ({len(keys)})", method, stage)
        table = build_table(shown, together, unit="concept x seed replicate")
        tables[(world, ALL_CONCEPTS, method, stage)] = table
    return [tables[key] for key in sorted(tables, key=order)]


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:+.3f}" if signed else f"{value:.4g}"


def _bound(value: float, signed: bool = False) -> str:
    return f"{value:+.2g}" if signed else f"{value:.3g}"


def with_interval(value: float | None, bounds: tuple[float, float] | None) -> str:
    """'0.528 [0.50, 0.55]', or the value alone when it has no interval."""
    if value is None or bounds is None:
        return _num(value)
    return f"{_num(value)} [{_bound(bounds[0])}, {_bound(bounds[1])}]"


def _side(value: Interval) -> str:
    """A change of R or L, starred when its 95% interval excludes 0."""
    return f"{value.value:+.3f}{'*' if value.spread and value.significant else ''}"


def net_text(row: LrRow) -> str:
    """E loss - R gain of the step into `row`, with its simultaneous interval when it has one."""
    if row.step is None or row.broken:
        return "-"
    net = row.step.net
    if not net.spread:
        return f"{net.value:+.3f}"
    return f"{net.value:+.3f} [{_bound(net.low, True)}, {_bound(net.high, True)}]"


def step_text(row: LrRow) -> str:
    """What the step into `row` does, beyond its uncertainty: 'costs' (editability lost
    exceeds reconstruction gained), 'buys' (the reverse), 'n.s.' (neither); with a '?' when
    the step has no interval and the word reads the means."""
    if row.step is None or row.broken:
        return "-"
    return row.step.verdict + ("" if row.step.tested else "?")


def rate_text(row: LrRow) -> str:
    """The marginal rate in words where a number would mislead: 'free' (reconstruction gained,
    no editability lost), 'no gain' (editability lost, nothing gained), 'no trade' (neither)."""
    if row.rate is None:
        return "-"
    if math.isinf(row.rate):
        return "no gain"
    if row.rate == 0.0:
        return "free" if (row.d_gain or 0.0) > EQUAL else "no trade"
    return f"{row.rate:.3g}"


def knee_line(table: TradeoffTable) -> str:
    """One sentence on the knee: where and on what evidence, or that there is none, and what
    the intervals cover."""
    knee = table.knee
    if knee is None:
        return "knee: none (every case diverged)"
    valid = [row.lr for row in table.sound_rows()]
    broken = [lr_key(row.lr) for row in table.rows if row.broken]
    sentence = _knee_sentence(knee, valid)
    if broken:
        return f"{sentence}; breaks at lr={', '.join(broken)} (left out)"
    return sentence


def _knee_sentence(knee: Knee, valid: list[float]) -> str:
    if knee.too_few:
        return f"knee: no knee ({len(valid)} usable lr(s); a knee needs at least {MIN_POINTS})"
    steps = len(knee.steps)
    first = knee.first_cost
    if not knee.tested:
        if knee.index is None:
            return "knee: no knee by the means (untested: no step's uncertainty is known)"
        return (
            f"knee: lr={lr_key(valid[knee.index])} by the means, untested (no step's "
            f"uncertainty is known); lrs above it are flagged"
        )
    simultaneous = f"{1 - (1 - knee.level) * steps:.0%} simultaneous over {steps} steps"
    if first is None:
        return (
            f"knee: no significant knee (no step among {steps} loses more editability than it "
            f"gains reconstruction beyond its interval, {simultaneous})"
        )
    net = knee.steps[first - 1].net
    evidence = (
        f"the step to {lr_key(valid[first])} loses more editability than it gains "
        f"reconstruction: E-R {net.value:+.3f} [{_bound(net.low, True)}, "
        f"{_bound(net.high, True)}] ({simultaneous})"
    )
    if knee.index is None:
        return f"knee: no significant knee inside the grid ({evidence}: the first step)"
    sentence = f"knee: lr={lr_key(valid[knee.index])}, {evidence}; lrs above it are flagged"
    back = next((i for i in range(first, steps) if knee.steps[i].buys), None)
    if back is None:
        return sentence
    net = knee.steps[back].net
    return (
        f"{sentence}; but the step to {lr_key(valid[back + 1])} buys again (E-R "
        f"{net.value:+.3f} [{_bound(net.low, True)}, {_bound(net.high, True)}])"
    )


def intervals_line(table: TradeoffTable) -> str:
    """What the table's intervals cover, printed above it."""
    return f"intervals: {table.covers}"


def _columns(table: TradeoffTable) -> list[str]:
    return ["distance", *table.reconstruction, *table.editability]


def table_cells(table: TradeoffTable) -> tuple[list[str], list[list[str]]]:
    header = [
        "lr",
        "status",
        *_columns(table),
        "R gain",
        "E loss",
        "E-R",
        "step",
        "rate",
        "knee",
        "baseline",
    ]
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
        cells += [
            with_interval(row.metrics.get(name), row.intervals.get(name))
            for name in _columns(table)
        ]
        cells += [
            "-" if row.step is None else _side(row.step.gain),
            "-" if row.step is None else _side(row.step.loss),
            net_text(row),
            step_text(row),
            rate_text(row),
            "PAST KNEE" if row.past_knee else ("knee" if row.lr == table.knee_lr() else ""),
            row.check,
        ]
        body.append(cells)
    return header, body


LEGEND = (
    "Brackets: 95% intervals (what they cover is on the line above the table: samples, and "
    "training seeds with --seeds N); oracle shares: at least Wilson's; a metric measured "
    "once per case (distance, denoise_loss) has none with one seed and is left out of R and L. "
    "R gain / E loss: change of reconstruction gain / editability loss against the previous "
    "sound lr, on normalised axes (1 = the metric's range over the sound lrs), * where its 95% "
    "interval excludes 0; E-R: E loss minus R gain with its interval, simultaneous over the "
    "table's steps; step: costs = E-R above 0 (more editability lost than reconstruction "
    "gained, beyond the uncertainty), buys = below 0, n.s. = neither, ? = read from the means "
    "(no interval); rate = E loss / R gain "
    "(free = gained at no editability cost, no gain = editability lost for nothing, no trade = "
    "neither); knee = the last lr before the first step that costs, PAST KNEE = an lr above "
    "it; broken = both sides lost at once, significantly (left out of the scales, the steps "
    "and the knee); baseline = the case checked against its stored baseline."
)


def _value(value: Interval | float | None, bounds: tuple[float, float] | None = None) -> dict:
    if isinstance(value, Interval):
        return {"value": value.value, "low": value.low, "high": value.high}
    low, high = bounds if bounds is not None else (None, None)
    return {"value": value, "low": low, "high": high}


def _step_record(row: LrRow, previous: float | None) -> dict[str, Any] | None:
    if row.step is None:
        return None
    record = {
        "from": previous,
        "d_gain": {**_value(row.step.gain), "significant": row.step.gain.significant},
        "d_loss": {**_value(row.step.loss), "significant": row.step.loss.significant},
    }
    if not row.broken:
        record["net"] = _value(row.step.net)
        record["verdict"] = row.step.verdict
    return record


def table_record(table: TradeoffTable) -> dict[str, Any]:
    """One table as results.json keeps it under "tradeoff" (README, "Reading the report"):
    every metric, R and L with their intervals per lr, each step with its verdict, the knee."""
    world, concept, method, stage = table.key
    knee = table.knee
    rows = []
    previous = None
    for row in table.rows:
        rows.append(
            {
                "lr": row.lr,
                "status": row.status,
                "seeds": row.seeds,
                "metrics": {
                    name: _value(value, row.intervals.get(name))
                    for name, value in sorted(row.metrics.items())
                    if name in METRICS
                },
                "gain": _value(row.gain, row.gain_ci),
                "loss": _value(row.loss, row.loss_ci),
                "step": _step_record(row, previous),
                "broken": row.broken,
                "past_knee": row.past_knee,
                "knee": row.lr == table.knee_lr(),
            }
        )
        if row.sound:
            previous = row.lr
    first = None if knee is None else knee.first_cost
    sound = table.sound_rows()
    return {
        "world": world,
        "concept": concept,
        "method": method,
        "stage": stage,
        "intervals": {
            "level": LEVEL,
            "covers": table.covers,
            "method": INTERVAL_METHOD,
            "resamples": RESAMPLES,
            "rng_seed": RNG_SEED,
        },
        "axes": list(table.axes),
        "knee": {
            "lr": table.knee_lr(),
            "verdict": "no knee (every case diverged)" if knee is None else knee.verdict,
            "tested": bool(knee and knee.tested),
            "simultaneous_level": None if knee is None else knee.level,
            "first_cost": None if first is None else sound[first].lr,
            "text": knee_line(table),
        },
        "rows": rows,
    }


def tradeoff_records(cases: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every table of `cases` as results.json keeps it."""
    return [table_record(table) for table in build_tables(tabulated(cases))]


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
