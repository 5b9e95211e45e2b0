"""results.json: the report directory's source of truth, written after every finished case and
read back by `ptibench report DIR`.

Beside the cases (each with its per-sample `records`), every write adds `tradeoff`: the tables
as the reports show them, recomputed from the cases each time (ptibench.results.tradeoff,
`table_record`): per lr every metric as {"value", "low", "high"} (the 95% interval; null bounds
where there is none), R and L with theirs, the step from the last sound lr with its verdict,
and the knee. Reading a file never trusts a stored `tradeoff`; the cases are the data.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptibench.errors import PtibenchError
from ptibench.io import atomic_write_json, json_safe
from ptibench.provenance import commit_info, machine_info, versions
from ptibench.results.tradeoff import tradeoff_records
from ptibench.spec import STAGES

RESULTS = "results.json"
FORMAT = "ptibench-results"


def write_results(out_dir: Path, document: Mapping[str, Any]) -> Path:
    """Atomically (re)write results.json, with the trade-off tables recomputed from the cases;
    called after every finished case."""
    path = Path(out_dir) / RESULTS
    tables = tradeoff_records(document.get("cases") or [])
    atomic_write_json(path, {**document, "tradeoff": json_safe(tables), "written": _now()})
    return path


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def load_results(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / RESULTS
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PtibenchError(
            f"{path}: no such file (run the benchmark with --ptibench-out)"
        ) from None
    except (OSError, ValueError) as error:
        raise PtibenchError(f"{path}: not readable results JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise PtibenchError(f"{path}: not a ptibench results file")
    validate_cases(document.get("cases"), str(path))
    return document


def validate_cases(cases: Any, where: str) -> None:
    """PtibenchError (one line, naming `where` and the case) unless `cases` is a list of cases
    that can be tabulated."""
    if not isinstance(cases, list):
        raise PtibenchError(f'{where}: wrong schema: "cases" must be a list')
    for index, case in enumerate(cases):
        problem = _case_problem(case)
        if problem:
            raise PtibenchError(f"{where}: wrong schema: cases[{index}] {problem}")


CASE_SPEC_FIELDS = ("world", "concept", "method", "stage", "lr", "seed")


def _case_problem(case: Any) -> str | None:
    """What keeps a results.json case from being tabulated, or None."""
    if not isinstance(case, dict):
        return "must be an object"
    spec = case.get("spec")
    if not isinstance(spec, dict):
        return 'needs a "spec" object'
    missing = [name for name in CASE_SPEC_FIELDS if name not in spec]
    if missing:
        return f"spec lacks {', '.join(missing)}"
    if not isinstance(spec["lr"], int | float) or isinstance(spec["lr"], bool):
        return f"spec lr {spec['lr']!r} is not a number"
    if not isinstance(case.get("status"), str):
        return 'needs a "status"'
    if not isinstance(case.get("metrics", {}), dict):
        return '"metrics" must be an object'
    return None


def run_context(root: Path, invocation: list[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """What every results.json records about its run: machine, commit, versions, options."""
    return {
        "machine": machine_info(),
        "commit": commit_info(root),
        "versions": versions(),
        "invocation": list(invocation),
        "options": dict(options),
    }


def case_order(case: Mapping[str, Any]) -> tuple:
    spec = case["spec"]
    rank = STAGES.index(spec["stage"]) if spec["stage"] in STAGES else len(STAGES)
    return (spec["world"], spec["concept"], spec["method"], rank, spec["lr"], spec["seed"])


def results_document(
    context: Mapping[str, Any],
    cases: list[Mapping[str, Any]],
    reference: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The results document: the run's context, its cases in table order, and (for a method
    other than the default) the default method's stored values beside them."""
    return {
        "format": FORMAT,
        "version": 1,
        **context,
        "cases": sorted(cases, key=case_order),
        "reference": dict(reference or {}),
    }


def case_record(result, nodeid: str, **extra: Any) -> dict[str, Any]:
    """One case of the document: the result as strict JSON, named by its node id."""
    return {**json_safe(result.to_dict()), "nodeid": nodeid, **extra}
