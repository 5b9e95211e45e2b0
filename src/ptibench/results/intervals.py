"""95% intervals for the trade-off table, from the per-sample records every case keeps.

A metric's uncertainty comes from what varies when the benchmark is rerun: the evaluation
samples and, with `--seeds N`, the training seed. One bootstrap covers both and keeps the lrs
paired, because the samples of every lr are drawn from the same sample seeds (and seed s is the
same training seed at every lr):

- **samples**: a replicate draws n sample indices with replacement and takes, at every lr, every
  seed and for every metric, the mean of the readings at those indices. A sample index is the
  unit: for the editability metrics its reading is the mean over the edit prompts of that
  sample's readings (they share its noise seed), so the mean of the readings is the aggregate.
- **training seeds** (several per lr): the same replicate also draws seeds with replacement and
  averages their resampled means; lrs with the same seeds draw the same ones.
- Deviations from the point estimate are scaled by sqrt(k/(k-1)) at each level (k = samples or
  seeds), so the replicates' spread is the usual standard error.
- An interval is the value +- Student's t quantile x that standard error, with Welch-
  Satterthwaite degrees of freedom from the two levels (n - 1 for n samples, s - 1 for s
  seeds). Plain percentiles of the replicates are too narrow at 8 samples, most of all in the
  far tails the knee's simultaneous intervals read: a 95% one covers a mean about 89% of the
  time, and on grids with shuffled lr labels they let 7% show a knee (this way: 1%).
- The oracle shares (`appearance`, `edit_success`) count hits out of samples: their t interval
  is widened to contain Wilson's interval of the pooled count. The t interval alone collapses to
  [0, 0] at 0/8; Wilson's alone would treat the 72 edit samples as independent, although the 9
  prompts of one sample index share its noise seed.
- A metric with no per-sample readings (`denoise_loss`, `distance`: one reading per case) has an
  interval only over training seeds; with one seed it has none.

Everything the table computes from the means (normalised axes, steps between lrs, the knee's
test) is linear in them, so its replicates come from the same draws (`Draws`). The RNG seed is
fixed: the same results give the same intervals.

Readings come from `records` (ptibench.evaluation.evaluate); a metric may also put one reading
per sample index under `records["per_sample"][name]`. Readings whose mean does not reproduce
the case's aggregate are not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

LEVEL = 0.95
RESAMPLES = 4000
RNG_SEED = 15
SHARES = ("appearance", "edit_success")
INTERVAL_METHOD = (
    "value +- Student's t x bootstrap standard error (sample indices resampled alike at every "
    "lr, and training seeds; Welch-Satterthwaite degrees of freedom); oracle shares: widened to "
    "contain Wilson's interval of the pooled count"
)
AGREEMENT = 1e-6
"""How closely the mean of the per-sample readings must reproduce the stored aggregate."""


@dataclass(frozen=True)
class Readings:
    """One case's per-sample readings: per metric, one value per sample index, and for the
    oracle shares the pooled count (hits, samples) behind the share."""

    values: dict[str, np.ndarray]
    counts: dict[str, tuple[int, int]]


def _mean_over_prompts(rows: list[list[float]]) -> list[float] | None:
    """Per sample index, the mean over prompts; None unless every prompt has the same count."""
    if not rows or len({len(row) for row in rows}) != 1 or not rows[0]:
        return None
    return [float(v) for v in np.mean(np.asarray(rows, dtype=float), axis=0)]


def case_readings(case: Mapping[str, Any]) -> Readings:
    """The per-sample readings of `case` whose means reproduce its aggregates."""
    records = case.get("records") or {}
    metrics = case.get("metrics") or {}
    recon = records.get("reconstruction") or {}
    edits = [edit for edit in records.get("edits") or [] if isinstance(edit, Mapping)]
    raw: dict[str, list[float] | None] = {}
    counts: dict[str, tuple[int, int]] = {}
    for name in ("lpips", "clip_i", "appearance"):
        if recon.get(name):
            raw[name] = [float(v) for v in recon[name]]
    if recon.get("appearance"):
        counts["appearance"] = (int(sum(map(bool, recon["appearance"]))), len(recon["appearance"]))
    raw["clip_t"] = _mean_over_prompts([e["clip_t"] for e in edits if e.get("clip_t")])
    hits = [[float(bool(h)) for h in e["edit"]] for e in edits if e.get("edit")]
    raw["edit_success"] = _mean_over_prompts(hits)
    if raw["edit_success"] is not None:
        counts["edit_success"] = (int(sum(map(sum, hits))), sum(map(len, hits)))
    for name, values in (records.get("per_sample") or {}).items():
        if isinstance(values, list) and values:
            raw[name] = [float(v) for v in values]
    values: dict[str, np.ndarray] = {}
    for name, readings in raw.items():
        aggregate = metrics.get(name)
        if readings is None or not _finite(aggregate) or len(readings) < 2:
            continue
        array = np.asarray(readings, dtype=float)
        if np.all(np.isfinite(array)) and abs(array.mean() - aggregate) <= AGREEMENT * max(
            1.0, abs(aggregate)
        ):
            values[name] = array
    return Readings(values, {k: v for k, v in counts.items() if k in values})


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def wilson(hits: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson's score interval for a share of `hits` out of `n`."""
    if n <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of bootstrap draws."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return (float(low), float(high))


def _expansion(k: int) -> float:
    return math.sqrt(k / (k - 1)) if k > 1 else 1.0


def t_quantile(level: float, df: float) -> float:
    """The two-sided `level` quantile of Student's t (the normal's for infinite df)."""
    from scipy.stats import t

    if not math.isfinite(df):
        return NormalDist().inv_cdf(0.5 + level / 2)
    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Draws:
    """Bootstrap replicates of a statistic ([resamples] or [resamples, points]) in three
    flavours: samples and seeds resampled together (`both`), samples only, seeds only; `n` and
    `s` are the fewest sample indices per case and seeds per lr behind them.

    Everything the table computes from the metric means is linear in them, so its replicates
    come from the same linear map applied to each flavour (`map`, `+`, `-`, columns)."""

    both: np.ndarray
    samples: np.ndarray
    seeds: np.ndarray
    n: int
    s: int

    def map(self, fn) -> Draws:
        return Draws(fn(self.both), fn(self.samples), fn(self.seeds), self.n, self.s)

    def __getitem__(self, index) -> Draws:
        return self.map(lambda a: a[:, index])

    def _pair(self, other: Draws, fn) -> Draws:
        return Draws(
            fn(self.both, other.both),
            fn(self.samples, other.samples),
            fn(self.seeds, other.seeds),
            min(self.n, other.n),
            min(self.s, other.s),
        )

    def __add__(self, other: Draws) -> Draws:
        return self._pair(other, np.add)

    def __sub__(self, other: Draws) -> Draws:
        return self._pair(other, np.subtract)

    def degrees_of_freedom(self) -> float:
        """Welch-Satterthwaite's, from the variance each level contributes (sample indices:
        n - 1 degrees of freedom; training seeds: s - 1)."""
        parts = [
            (float(np.var(self.samples)), self.n - 1),
            (float(np.var(self.seeds)), self.s - 1),
        ]
        parts = [(v, df) for v, df in parts if v > 0 and df > 0]
        if not parts:
            return math.inf
        return sum(v for v, _ in parts) ** 2 / sum(v * v / df for v, df in parts)

    def interval(self, value: float, level: float = LEVEL) -> tuple[float, float]:
        """`value` +- Student's t quantile x the replicates' standard error (1-D draws)."""
        se = float(np.std(self.both, ddof=1))
        if not se > 0:
            return (value, value)
        half = t_quantile(level, self.degrees_of_freedom()) * se
        return (value - half, value + half)


@dataclass
class Replicates:
    """Bootstrap replicates of the metric means of one table, drawn together across its lrs.

    `point[name]` is the mean per lr ([lrs], NaN where an lr has none), `draws[name]` its
    replicates ([resamples, lrs]); `varies[name][i]` says whether lr i's replicates spread at
    all (per-sample readings or several seeds); `intervals[name][i]` is what the table shows."""

    point: dict[str, np.ndarray]
    draws: dict[str, Draws]
    varies: dict[str, list[bool]]
    seeds: list[int]
    samples: list[int]
    resamples: int
    level: float = LEVEL
    intervals: dict[str, list[tuple[float, float] | None]] = field(default_factory=dict)
    unit: str = "training seed"  # what a replicate of an lr is (several concepts: "concept x seed")

    def covers(self) -> str:
        """What the intervals cover, in words ("95% CI, sampling only, 1 training seed")."""
        seeds = sorted({s for s in self.seeds if s}) or [1]
        count = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        seed_text = f"{count} {self.unit}{'s' if seeds[-1] > 1 else ''}"
        level = f"{self.level:.0%} CI"
        if not any(any(v) for v in self.varies.values()):
            return f"no interval (no per-sample records, {seed_text})"
        if seeds[-1] <= 1:
            return f"{level}, sampling only, {seed_text}"
        if not any(self.samples):
            return f"{level} over {seed_text} only (no per-sample records)"
        return f"{level} over samples and {seed_text}"


def bootstrap(
    groups: Sequence[Sequence[Mapping[str, Any]]],
    names: Sequence[str],
    resamples: int = RESAMPLES,
    rng_seed: int = RNG_SEED,
    level: float = LEVEL,
    unit: str = "training seed",
) -> Replicates:
    """Replicates of every metric in `names` at every lr; `groups[i]` holds lr i's cases (one
    per training seed, not diverged; or one per concept and seed, `unit` says which), in the
    same order at every lr."""
    rng = np.random.default_rng(rng_seed)
    readings = [[case_readings(case) for case in group] for group in groups]
    weights: dict[Any, np.ndarray] = {}

    def weights_for(key: Any, k: int) -> np.ndarray:
        """Multinomial resampling weights of k units, shared by everything keyed alike (the
        same sample count: the same sample seeds; the same seeds at two lrs)."""
        if key not in weights:
            weights[key] = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples) / k
        return weights[key]

    lrs = len(groups)
    samples = [max((len(v) for r in rs for v in r.values.values()), default=0) for rs in readings]
    seeds = [len(group) for group in groups]
    replicates = Replicates(
        point={},
        draws={},
        varies={},
        seeds=seeds,
        samples=samples,
        resamples=resamples,
        level=level,
        unit=unit,
    )
    for name in names:
        point = np.full(lrs, math.nan)
        flavours = {k: np.full((resamples, lrs), math.nan) for k in ("both", "samples", "seeds")}
        varies = [False] * lrs
        counts: list[tuple[int, int] | None] = [None] * lrs
        fewest = (math.inf, math.inf)
        for i, (group, group_readings) in enumerate(zip(groups, readings, strict=True)):
            members = [
                (case, r)
                for case, r in zip(group, group_readings, strict=True)
                if _finite((case.get("metrics") or {}).get(name))
            ]
            if not members:
                continue
            values = np.array([float(case["metrics"][name]) for case, _ in members])
            case_draws = []
            for value, (_, r) in zip(values, members, strict=True):
                if name in r.values:
                    v = r.values[name]
                    spread = weights_for(("samples", len(v)), len(v)) @ v - v.mean()
                    case_draws.append(value + _expansion(len(v)) * spread)
                    varies[i] = True
                    fewest = (min(fewest[0], len(v)), fewest[1])
                else:
                    case_draws.append(np.full(resamples, value))
            stacked = np.asarray(case_draws)  # [seeds, resamples]
            centre = float(values.mean())
            point[i] = centre
            fewest = (fewest[0], min(fewest[1], len(members)))
            if len(members) > 1:
                key = tuple(case["spec"]["seed"] for case, _ in members)
                w = weights_for(("seeds", key), len(members))
                grow = _expansion(len(members))
                mixed = np.einsum("bs,sb->b", w, stacked)
                flavours["both"][:, i] = centre + grow * (mixed - centre)
                flavours["samples"][:, i] = stacked.mean(axis=0)
                flavours["seeds"][:, i] = centre + grow * (w @ values - centre)
                varies[i] = True
            else:
                flavours["both"][:, i] = flavours["samples"][:, i] = stacked[0]
                flavours["seeds"][:, i] = centre
            pooled = [r.counts.get(name) for _, r in members]
            if name in SHARES and all(pooled):
                counts[i] = (sum(c[0] for c in pooled), sum(c[1] for c in pooled))
        n, s = (int(x) if math.isfinite(x) else 1 for x in fewest)
        draws = Draws(flavours["both"], flavours["samples"], flavours["seeds"], n, s)
        replicates.point[name] = point
        replicates.draws[name] = draws
        replicates.varies[name] = varies
        replicates.intervals[name] = [
            _metric_interval(name, point[i], draws[i], varies[i], counts[i], level)
            if math.isfinite(point[i])
            else None
            for i in range(lrs)
        ]
    return replicates


def _metric_interval(
    name: str,
    value: float,
    draws: Draws,
    varies: bool,
    counts: tuple[int, int] | None,
    level: float,
) -> tuple[float, float] | None:
    """A metric's interval at one lr: the t interval; for an oracle share, widened to contain
    Wilson's interval of the pooled count."""
    if not varies:
        return None
    low, high = draws.interval(value, level)
    if name in SHARES and counts is not None:
        w_low, w_high = wilson(*counts, level=level)
        return (max(0.0, min(low, w_low)), min(1.0, max(high, w_high)))
    return (low, high)
