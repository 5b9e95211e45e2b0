"""Where the reconstruction / editability trade-off turns: a knee only where the data show one.

The input is, per sound lr in lr order, the reconstruction gain R and the editability loss L on
normalised axes (ptibench.results.tradeoff), with bootstrap replicates drawn jointly across the
lrs (ptibench.results.intervals), so every difference between two lrs has its own interval.

- A **step** from one sound lr to the next changes R by dR and L by dL. It **costs** when the
  editability lost exceeds the reconstruction gained beyond its uncertainty: the interval of
  dL - dR lies above 0 (and dL > 0: editability really goes). It **buys** when dR - dL's
  interval lies above 0 (and dR > 0).
- The intervals of dL - dR are simultaneous over the m steps of the grid (each at level
  1 - ALPHA/m, Bonferroni), so on a grid where nothing but noise changes, some step is called
  a cost with probability at most ALPHA = 0.05.
- The **knee** is the last lr before the first step that costs. There is none when no step
  costs ("no significant knee"), when the very first step already costs (the turn lies below
  the grid), or with fewer than MIN_POINTS sound lrs (a corner needs points on both sides).

Without replicates (no per-sample records and one training seed) every interval is the mean
itself: the rule then reads the means and its knee is marked untested.

kneed (a corner of R - L) is not consulted: it reads means, with no notion of uncertainty, and
a rule that reads means (kneed, or "the first step whose rate dL/dR exceeds 1") finds a knee in
about half of the grids whose lr labels are shuffled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ptibench.results.intervals import Draws

MIN_POINTS = 4
ALPHA = 0.05
LEVEL = 0.95
EQUAL = 1e-9
"""Floating-point equality on the normalised axes (1 = a metric's range): differences below it
are rounding of equal numbers, not a trend."""


@dataclass(frozen=True)
class Interval:
    """A value with its interval (low == high == value when nothing varies)."""

    value: float
    low: float
    high: float

    @property
    def above_zero(self) -> bool:
        return self.low > EQUAL

    @property
    def below_zero(self) -> bool:
        return self.high < -EQUAL

    @property
    def significant(self) -> bool:
        return self.above_zero or self.below_zero

    @property
    def spread(self) -> bool:
        return self.high - self.low > EQUAL


def interval(value: float, draws: Draws | None, level: float) -> Interval:
    """`value` with its `level` interval from bootstrap `draws` (None: no spread)."""
    value = float(value)
    if draws is None:
        return Interval(value, value, value)
    low, high = draws.interval(value, level)
    return Interval(value, float(low), float(high))


@dataclass(frozen=True)
class Step:
    """The step into a sound lr from the sound lr before it: dR and dL with their pointwise
    intervals, and dL - dR with its simultaneous one (the knee's test); `tested` is False when
    the intervals are the means themselves (no replicates)."""

    gain: Interval
    loss: Interval
    net: Interval
    tested: bool = True

    @property
    def costs(self) -> bool:
        return self.net.above_zero and self.loss.value > EQUAL

    @property
    def buys(self) -> bool:
        return self.net.below_zero and self.gain.value > EQUAL

    @property
    def verdict(self) -> str:
        return "costs" if self.costs else "buys" if self.buys else "n.s."


def step_between(
    gain: Sequence[float],
    loss: Sequence[float],
    gain_draws: Draws | None,
    loss_draws: Draws | None,
    before: int,
    after: int,
    net_level: float = LEVEL,
    level: float = LEVEL,
) -> Step:
    """The step from point `before` to point `after` (draws over the points, or None: the
    rule reads the means)."""
    d_gain = gain[after] - gain[before]
    d_loss = loss[after] - loss[before]
    dg = dl = net = None
    if gain_draws is not None and loss_draws is not None:
        dg = gain_draws[after] - gain_draws[before]
        dl = loss_draws[after] - loss_draws[before]
        net = dl - dg
    return Step(
        interval(d_gain, dg, level),
        interval(d_loss, dl, level),
        interval(d_loss - d_gain, net, net_level),
        net is not None,
    )


def simultaneous_level(steps: int, alpha: float = ALPHA) -> float:
    """Each of `steps` intervals at this level keeps the chance that any misses at `alpha`."""
    return 1 - alpha / max(steps, 1)


@dataclass(frozen=True)
class Knee:
    """The knee of a curve: `index` into its points (None = no knee), the steps it was read
    from (steps[i - 1] goes into point i), whether their intervals came from data (`tested`),
    and the simultaneous level of the dL - dR intervals."""

    index: int | None
    steps: tuple[Step, ...]
    tested: bool
    level: float
    points: int

    @property
    def first_cost(self) -> int | None:
        """The point the first costing step goes into, or None."""
        return next((i + 1 for i, step in enumerate(self.steps) if step.costs), None)

    @property
    def too_few(self) -> bool:
        return self.points < MIN_POINTS

    @property
    def verdict(self) -> str:
        """In words: 'knee', 'no significant knee', 'turns below the grid' (the first step
        already costs), 'too few lrs'; '(untested)' when the intervals are the means."""
        if self.too_few:
            return "too few lrs"
        if self.index is not None:
            word = "knee"
        elif self.first_cost is not None:
            word = "turns below the grid"
        else:
            word = "no significant knee" if self.tested else "no knee"
        return word if self.tested else f"{word} (untested)"

    def lr(self, lrs: Sequence[float]) -> float | None:
        return None if self.index is None else float(lrs[self.index])


def find_knee(
    gain: Sequence[float],
    loss: Sequence[float],
    gain_draws: Draws | None = None,
    loss_draws: Draws | None = None,
    alpha: float = ALPHA,
) -> Knee:
    """The knee of points in lr order: the last one before the first step that costs.

    `gain_draws` / `loss_draws` are bootstrap replicates drawn jointly across the points
    (ptibench.results.intervals.Draws); without them the rule reads the means, untested."""
    points = len(gain)
    level = simultaneous_level(points - 1, alpha)
    steps = tuple(
        step_between(gain, loss, gain_draws, loss_draws, i - 1, i, level) for i in range(1, points)
    )
    tested = gain_draws is not None and loss_draws is not None
    knee = Knee(None, steps, tested, level, points)
    first = knee.first_cost
    if knee.too_few or first is None or first < 2:
        return knee
    return Knee(first - 1, steps, tested, level, points)


def marginal_rate(d_gain: float, d_loss: float) -> float:
    """Editability lost per unit of reconstruction gained (0: nothing lost; inf: lost for
    nothing gained). Descriptive: the knee reads dL - dR with its interval, not this ratio."""
    if d_loss <= EQUAL:
        return 0.0
    if d_gain <= EQUAL:
        return math.inf
    return d_loss / d_gain
