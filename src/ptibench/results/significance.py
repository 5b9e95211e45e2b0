"""Is a difference between two runs larger than their samples' spread?

Two tests, chosen by what a metric counts: a share of oracle hits (appearance, edit_success)
is a count of successes out of samples, compared with Fisher's exact test on the 2x2 table; a
continuous per-sample reading (LPIPS, CLIP-I, CLIP-T of each sample) is compared with Welch's
t-test, which does not assume equal spreads. Both two-sided; the p-values are per metric and
lr, not corrected for how many are read at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Test:
    name: str  # "fisher" or "welch"
    p: float


def fisher(hits_a: Sequence[bool], hits_b: Sequence[bool]) -> Test:
    """Fisher's exact test on successes / failures of two runs' samples."""
    from scipy.stats import fisher_exact

    a, b = sum(map(bool, hits_a)), sum(map(bool, hits_b))
    table = [[a, len(hits_a) - a], [b, len(hits_b) - b]]
    return Test("fisher", float(fisher_exact(table).pvalue))


def welch(values_a: Sequence[float], values_b: Sequence[float]) -> Test:
    """Welch's t-test on two runs' per-sample readings. Identical readings give p = 1; readings
    without spread on either side that differ give p = 0 (no noise to hide the difference)."""
    from scipy.stats import ttest_ind

    a, b = [float(v) for v in values_a], [float(v) for v in values_b]
    if sorted(a) == sorted(b):
        return Test("welch", 1.0)
    if len(a) < 2 or len(b) < 2:
        return Test("welch", math.nan)
    if len(set(a)) == 1 and len(set(b)) == 1:
        return Test("welch", 0.0)
    return Test("welch", float(ttest_ind(a, b, equal_var=False).pvalue))
