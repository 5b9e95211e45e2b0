"""The xdist progress line's ETA paces the finishes after the first one: a grid's first finish
comes after its group runs, which train every case of a group before any of them is measured."""

from __future__ import annotations

from ptibench.harness.progress import CaseProgress


def eta_at(finishes: list[float], total: int, workers: int = 2) -> str:
    """The ETA printed with the last of `finishes` (seconds since the session started)."""
    progress = CaseProgress(session=None, total=total)
    progress.workers = {f"gw{i}" for i in range(workers)}
    progress.first_done = finishes[0]
    progress.done = len(finishes)
    return progress.eta(finishes[-1])


def test_the_group_runs_do_not_set_the_pace():
    """A `--seeds 3` grid's first three finishes: 17 min of group runs, then 23 s and 19 s."""
    assert eta_at([1030, 1053, 1072], total=39) == ", ETA 12:36"


def test_no_eta_until_the_later_finishes_outnumber_the_workers():
    assert eta_at([1030], total=39) == ""
    assert eta_at([1030, 1031], total=39) == ""
    assert eta_at([1030, 1031], total=39, workers=1) == ", ETA 0:37"


def test_steady_finishes_give_their_pace_times_the_cases_left():
    """Two workers at 60 s a case: a finish every 30 s after the first."""
    assert eta_at([60, 60, 120, 120, 180], total=10) == ", ETA 2:30"
    assert eta_at([60, 60, 120, 120, 180, 180, 240, 240, 300, 300], total=10) == ", ETA 0:00"
