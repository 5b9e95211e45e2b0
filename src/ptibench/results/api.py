"""The trade-off table and the knee from Python, without pytest.

`tradeoff(results)` takes what a run produced — `CaseResult`s from `run_cases`, the cases of a
results.json, or the folder that holds one — and gives a `Tradeoff`: its tables (one per world,
concept, method and stage), the knee of each, the text the plugin prints and the report files
it writes. The pytest plugin and `ptibench report` go through this class too, so a script
sees what the benchmark shows::

    from ptibench.results.api import tradeoff
    from ptibench.run.runner import run_cases
    from ptibench.spec import CaseSpec

    results = run_cases([CaseSpec(stage="inversion", lr=lr) for lr in (1e-3, 1e-2, 1e-1)])
    report = tradeoff(results)
    print(report.text())                 # the tables and knee lines
    print(report.knee("inversion"))      # the knee lr, or None
    report.write("my-report")            # results.json, tradeoff.md, tradeoff.png, samples
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptibench.errors import PtibenchError
from ptibench.io import json_safe
from ptibench.results.document import (
    RESULTS,
    case_record,
    load_results,
    results_document,
    run_context,
    validate_cases,
)
from ptibench.results.report import markdown, render, summary_lines
from ptibench.results.tradeoff import TradeoffTable, build_tables
from ptibench.spec import DEFAULT_METHOD, CaseResult

Results = Iterable[CaseResult | Mapping[str, Any]]


def _case(item: CaseResult | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(item, CaseResult):
        spec = item.spec
        nodeid = f"{spec.stage}-{spec.lr_id}-seed={spec.seed}"
        return case_record(item, nodeid)
    if isinstance(item, Mapping):
        return json.loads(json.dumps(json_safe(dict(item))))
    raise PtibenchError(
        f"a result must be a CaseResult or a results.json case, got {type(item).__name__}"
    )


class Tradeoff:
    """A run's results as the reports read them (a results document), with the trade-off
    tables, knees, text and report files computed from it."""

    def __init__(self, document: Mapping[str, Any]):
        validate_cases(document.get("cases"), "results")
        self.document = dict(document)

    @classmethod
    def from_results(
        cls,
        results: Results,
        *,
        context: Mapping[str, Any] | None = None,
        reference: Mapping[str, Any] | None = None,
    ) -> Tradeoff:
        """From CaseResults or results.json cases; `context` defaults to this machine, the
        current folder's commit and the installed versions."""
        cases = [_case(item) for item in results]
        validate_cases(cases, "results")
        if context is None:
            context = run_context(Path.cwd(), [], {})
        return cls(results_document(context, cases, reference))

    @classmethod
    def from_directory(cls, folder: Path | str) -> Tradeoff:
        """From a report folder's results.json (or the file itself)."""
        folder = Path(folder)
        if folder.name == RESULTS and folder.is_file():
            folder = folder.parent
        return cls(load_results(folder))

    def _cases(self) -> list[Mapping[str, Any]]:
        return [c for c in self.document["cases"] if c.get("status") in ("ok", "diverged")]

    @property
    def tables(self) -> list[TradeoffTable]:
        """One table per (world, concept, method, stage), the default method first."""
        return build_tables(self._cases())

    def table(self, stage: str, method: str = DEFAULT_METHOD) -> TradeoffTable:
        found = [t for t in self.tables if t.key[3] == stage and t.key[2] == method]
        if not found:
            have = ", ".join(f"{t.key[3]}/{t.key[2]}" for t in self.tables) or "none"
            raise PtibenchError(f"no results for stage {stage!r} of {method!r} (have: {have})")
        return found[0]

    def knee(self, stage: str, method: str = DEFAULT_METHOD) -> float | None:
        """The knee lr of `stage` (None: no knee, or too few lrs for one)."""
        return self.table(stage, method).knee_lr()

    def knees(self) -> dict[str, float | None]:
        """Every table's knee lr, by table title."""
        return {table.title: table.knee_lr() for table in self.tables}

    def summary_lines(self) -> list[str]:
        """What the plugin prints at the end of a session."""
        return summary_lines(self.document)

    def text(self) -> str:
        return "\n".join(self.summary_lines())

    def markdown(self) -> str:
        return markdown(self.document)

    def write(self, out_dir: Path | str) -> list[Path]:
        """Write the report files into `out_dir`; returns their paths."""
        return render(Path(out_dir), self.document)


def tradeoff(
    results: Results | Path | str,
    *,
    context: Mapping[str, Any] | None = None,
    reference: Mapping[str, Any] | None = None,
) -> Tradeoff:
    """A Tradeoff from CaseResults, results.json cases, or a report folder (see the module
    docstring)."""
    if isinstance(results, Path | str):
        return Tradeoff.from_directory(results)
    return Tradeoff.from_results(results, context=context, reference=reference)
