"""Where the reconstruction / editability trade-off turns: the knee over log10(lr).

Two rules, both on normalised axes (reconstruction gain R and editability loss L, each 0 at the
smallest lr, in units of the metric's range over the grid, or of its noise floor when the range is
smaller than that, so that pure noise never stretches to a full unit):

- **kneed** (pinned 0.9.0): KneeLocator on the net curve N = R - L against x = log10(lr), concave
  and increasing with S=1. N rises while reconstruction is bought cheaply and flattens or falls once
  editability is paid for it, so its knee is the corner of the trade-off. kneed answers None on
  linear or constant curves and may answer an endpoint when the shape does not fit: both are read
  as "no knee".
- **marginal rate**: between consecutive lrs, rate = (editability lost) / (reconstruction gained).
  The knee is the last lr before the first step whose rate exceeds 1 (more editability lost than
  reconstruction gained); a step that loses editability and gains nothing has an infinite rate.
  No such step, or one already at the first step (the rate never changes inside the grid, as on
  a straight line), means "no knee".

Fewer than 4 points never have a knee: a corner needs points on both of its sides.

The table flags lrs past the marginal-rate knee (it says what "past the knee" means: each further
step costs more editability than it buys reconstruction); kneed's answer is printed beside it and
used only when the rate rule finds none. With several seeds per lr, the knee of the seed means is
reported with its stability: the share of bootstrap resamples of the seeds giving the same knee.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 4
RATE_LIMIT = 1.0
KNEED_SENSITIVITY = 1.0
ROUNDING = 1e-6  # on normalised axes (1 = a metric's range), smaller changes are not a trend


@dataclass(frozen=True)
class Knee:
    """A knee: `index` into the lrs given (None = no knee) and the rule that found it."""

    index: int | None
    rule: str

    def lr(self, lrs: Sequence[float]) -> float | None:
        return None if self.index is None else float(lrs[self.index])


def marginal_rates(gain: Sequence[float], loss: Sequence[float]) -> list[float | None]:
    """Editability lost per unit of reconstruction gained, point to point (first: None)."""
    rates: list[float | None] = [None]
    for i in range(1, len(gain)):
        gained = gain[i] - gain[i - 1]
        lost = loss[i] - loss[i - 1]
        if lost <= ROUNDING:
            rates.append(0.0)
        elif gained <= ROUNDING:
            rates.append(math.inf)
        else:
            rates.append(lost / gained)
    return rates


def knee_by_rate(gain: Sequence[float], loss: Sequence[float], limit: float = RATE_LIMIT) -> Knee:
    """The last point before the first step whose marginal rate exceeds `limit`."""
    if len(gain) < MIN_POINTS:
        return Knee(None, "rate")
    for i, rate in enumerate(marginal_rates(gain, loss)):
        if rate is not None and rate > limit + ROUNDING:
            return Knee(i - 1 if i > 1 else None, "rate")
    return Knee(None, "rate")


def knee_by_kneed(log_lrs: Sequence[float], gain: Sequence[float], loss: Sequence[float]) -> Knee:
    """kneed on the net curve R - L; None and endpoints are 'no knee'."""
    from kneed import KneeLocator

    if len(log_lrs) < MIN_POINTS:
        return Knee(None, "kneed")
    net = np.asarray(gain, dtype=float) - np.asarray(loss, dtype=float)
    if float(np.ptp(net)) <= ROUNDING * max(1.0, float(np.max(np.abs(net)))):
        return Knee(None, "kneed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        locator = KneeLocator(
            list(log_lrs),
            list(net),
            S=KNEED_SENSITIVITY,
            curve="concave",
            direction="increasing",
            interp_method="interp1d",
            online=False,
        )
    if locator.knee is None:
        return Knee(None, "kneed")
    index = int(np.argmin(np.abs(np.asarray(log_lrs) - float(locator.knee))))
    if index in (0, len(log_lrs) - 1):
        return Knee(None, "kneed")
    return Knee(index, "kneed")


@dataclass(frozen=True)
class KneeReport:
    """Both rules' answers, the one the table flags by, and (several seeds) how stable it is."""

    kneed: Knee
    rate: Knee
    stability: float | None = None
    resamples: int = 0

    @property
    def chosen(self) -> Knee:
        """The marginal-rate rule (it says what 'past the knee' means), else kneed's answer."""
        return self.rate if self.rate.index is not None else self.kneed


def find_knee(
    lrs: Sequence[float], gain: Sequence[float], loss: Sequence[float]
) -> tuple[Knee, Knee]:
    """kneed's and the marginal-rate rule's knee on points sorted by lr."""
    log_lrs = [math.log10(lr) for lr in lrs]
    return knee_by_kneed(log_lrs, gain, loss), knee_by_rate(gain, loss)


def knee_stability(
    lrs: Sequence[float],
    gain_by_seed: Sequence[Sequence[float]],
    loss_by_seed: Sequence[Sequence[float]],
    resamples: int = 200,
    rng_seed: int = 0,
) -> KneeReport:
    """Knee of the seed means, and the share of seed resamples (bootstrap per lr) agreeing with it.

    `gain_by_seed[i]` holds the gains of lr i, one per seed (the same for the losses).
    """
    mean_gain = [float(np.mean(g)) for g in gain_by_seed]
    mean_loss = [float(np.mean(v)) for v in loss_by_seed]
    kneed_knee, rate_knee = find_knee(lrs, mean_gain, mean_loss)
    report = KneeReport(kneed_knee, rate_knee)
    if max((len(g) for g in gain_by_seed), default=0) < 2:
        return report
    rng = np.random.default_rng(rng_seed)
    agree = 0
    for _ in range(resamples):
        picks = [rng.integers(0, len(g), len(g)) for g in gain_by_seed]
        gain = [float(np.mean(np.asarray(g)[p])) for g, p in zip(gain_by_seed, picks, strict=True)]
        loss = [float(np.mean(np.asarray(v)[p])) for v, p in zip(loss_by_seed, picks, strict=True)]
        resampled = KneeReport(*find_knee(lrs, gain, loss))
        agree += resampled.chosen.index == report.chosen.index
    return KneeReport(kneed_knee, rate_knee, agree / resamples, resamples)
