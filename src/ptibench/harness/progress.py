"""Progress under pytest-xdist: the controller prints each case as a worker starts it and as it
finishes, with the session's elapsed time and an estimate of what is left.

xdist workers show no progress bars (their output is not the terminal's), and pytest's own
progress is a dot per finished test: on the default grid the first dot comes minutes in. The
controller learns that a case started when the worker's setup report arrives (the case's work
is all in its call phase) and that it finished with the call report. A serial run prints
nothing here: it keeps its own progress bars.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from ptibench.harness.session import PluginSession, write_line


def clock(seconds: float) -> str:
    """12:05 or 1:02:05."""
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def worker_of(report) -> str | None:
    """The xdist worker a report came from ('gw0'), None in a serial run."""
    node = getattr(report, "node", None)
    gateway = getattr(node, "gateway", None)
    return getattr(gateway, "id", None) if gateway is not None else None


@dataclass
class CaseProgress:
    """Registered on the controller: one line per case start and finish under xdist."""

    session: PluginSession
    total: int | None = None
    done: int = 0
    first_start: float | None = None
    first_done: float | None = None
    workers: set[str] = field(default_factory=set)
    running: dict[str, str] = field(default_factory=dict)
    _case_ids: set[str] | None = None

    def case_id(self, nodeid: str) -> str | None:
        """The case's parameter id when `nodeid` is one of this pytest run's cases."""
        if self.session.grid is None or not nodeid.endswith("]") or "[" not in nodeid:
            return None
        if self._case_ids is None:
            self._case_ids = {self.session.case_id(spec) for spec in self.session.specs()}
        param = nodeid[nodeid.rindex("[") + 1 : -1]
        return param if param in self._case_ids else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        if self.total is None:
            self.total = sum(self.case_id(nodeid) is not None for nodeid in ids)

    def pytest_runtest_logreport(self, report):
        worker = worker_of(report)
        case = self.case_id(report.nodeid) if worker else None
        if case is None:
            return
        now = time.monotonic()
        if report.when == "setup" and report.passed:
            self.first_start = self.first_start or now
            self.workers.add(worker)
            self.running[report.nodeid] = worker
            self.write(f"[{worker}] start {case} ({len(self.running)} running, {self.counts(now)})")
        elif report.when == "call" or (report.when == "setup" and not report.passed):
            self.running.pop(report.nodeid, None)
            self.done += 1
            self.first_done = self.first_done or now
            self.write(
                f"[{worker}] done  {case}: {report.outcome} in {clock(report.duration)} "
                f"({self.counts(now)}{self.eta(now)})"
            )

    def counts(self, now: float) -> str:
        total = "?" if self.total is None else str(self.total)
        return f"{self.done}/{total} done, {clock(now - (self.first_start or now))} elapsed"

    def eta(self, now: float) -> str:
        """Time left at the pace of the finishes after the first one. The first finish sets no
        pace: it comes after the grid's group runs, which train many cases before any of them
        is measured (paced by the elapsed time, a `--seeds 3` grid's first finish, at 17 min,
        would read 10 h left where 8 min are). Shown once the later finishes outnumber the
        workers, so that each worker's pace counts."""
        if self.total is None or self.first_done is None or self.done - 1 < len(self.workers):
            return ""
        left = max(self.total - self.done, 0)
        pace = (now - self.first_done) / (self.done - 1)
        return f", ETA {clock(pace * left)}"

    def write(self, line: str) -> None:
        write_line(self.session.config, f"ptibench: {line}")
