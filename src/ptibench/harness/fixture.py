"""The `ptibench` fixture: runs a case through the `pytest_ptibench_run_case` hook and checks it
against its stored baseline (or records it, with --update-baselines).
"""

from __future__ import annotations

import argparse
import json
import shlex

import pytest

from ptibench.case_options import concepts
from ptibench.errors import PtibenchError
from ptibench.grids import parse_lr_grid
from ptibench.harness.session import PAYLOAD_KEY, SESSION, recorded_context
from ptibench.results import baselines
from ptibench.results.document import case_record


def without_options(args: list[str]) -> list[str]:
    """`args` less --lr-grid and --stage (and their values), to add narrower ones."""
    kept: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg.startswith(("--lr-grid=", "--stage=")):
            continue
        if arg == "--stage":
            index += 1
            continue
        if arg == "--lr-grid":
            if index < len(args) and _is_grid(args[index]):
                index += 1
            continue
        kept.append(arg)
    return kept


def without_concept(args: list[str]) -> list[str]:
    """`args` less --concept and its value."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip or arg.startswith("--concept="):
            skip = False
            continue
        skip = arg == "--concept"
        if not skip:
            kept.append(arg)
    return kept


def _is_grid(text: str) -> bool:
    try:
        parse_lr_grid(text)
    except argparse.ArgumentTypeError:
        return False
    return not text.startswith("-")


class CaseRunner:
    """The `ptibench` fixture: runs a case through the hook and checks it against its baseline."""

    def __init__(self, request):
        self.request = request
        self.config = request.config
        self.session = self.config.stash[SESSION]

    def run(self, spec):
        try:
            result = self.config.hook.pytest_ptibench_run_case(spec=spec, config=self.config)
        except PtibenchError as error:
            problem = str(error)
        except OSError as error:  # disk full, read-only cache: one line naming the file
            where = f"cannot write {error.filename}: " if error.filename else ""
            problem = f"{where}{error.strerror or error}"
        else:
            problem = None
        if problem is not None:
            pytest.fail(f"ptibench: error: {problem}", pytrace=False)
        if result is None:
            pytest.fail(
                "ptibench: no pytest_ptibench_run_case implementation gave a result", pytrace=False
            )
        return result

    def _publish(self, result, verdict: str, note: str = "") -> None:
        case = case_record(
            result, self.request.node.nodeid, baseline={"verdict": verdict, "note": note}
        )
        self.request.node.user_properties.append((PAYLOAD_KEY, json.dumps(case)))

    def _fail_with_error(self, result, problem: str) -> None:
        """Fail the case on a user-facing problem: one line, no traceback, no chained context."""
        self._publish(result, "error", problem)
        failure = pytest.fail.Exception(f"ptibench: error: {problem}", pytrace=False)
        failure.__suppress_context__ = True
        raise failure

    def _hint(self, spec=None, force: bool = False) -> str:
        """The command that records baselines: this selection, or only `spec`'s stage and lr."""
        args = list(self.config.invocation_params.args)
        if spec is not None:
            args = [*without_options(args), "--lr-grid", spec.lr_id[3:], "--stage", spec.stage]
            if len(concepts(self.config.option)) > 1:
                args = [*without_concept(args), "--concept", spec.concept]
        args = [a for a in args if a not in ("--update-baselines", "--force")]
        wanted = ["--update-baselines", "--force"] if force else ["--update-baselines"]
        return "pytest " + shlex.join([*args, *wanted])

    def _confirm(self, found, result, first):
        """Train the case again with a fresh seed: None (the case is published as passed) when
        that seed does not fail one of the same metrics, else (seed, its comparison)."""
        seed = baselines.confirmation_seed(result.spec.seed)
        again = baselines.compare(
            found.entry, self.run(result.spec.with_(seed=seed)), found.summary
        )
        if baselines.confirmed(first, again):
            return seed, again
        where = ", ".join(first.failed) or "its status"
        self._publish(
            result,
            "passed",
            f"outside the seed spread on {where}; a fresh seed ({seed}) is not: a new draw, "
            "not a regression",
        )
        return None

    def check(self, result) -> None:
        """Pass, fail with the comparison table, or (with --update-baselines) record it. A case
        without a baseline of its own passes with a note (beside the reference method's
        baseline where there is one), or fails with --ptibench-strict."""
        spec = result.spec
        label = f"{spec.stage} {spec.lr_id} seed {spec.seed}"
        if self.config.option.update_baselines:
            try:
                path = baselines.update(
                    self.session.baseline_dir,
                    result,
                    recorded_context(self.config, result),
                    force=self.config.option.force_baselines,
                )
            except (PtibenchError, OSError) as error:
                self._fail_with_error(result, f"cannot update the baseline: {error}")
            self._publish(result, "updated", str(path))
            return
        try:
            found = baselines.lookup(self.session.baseline_dir, spec)
        except PtibenchError as error:
            self._fail_with_error(result, str(error))
        if found.entry is None:
            self._publish(result, "missing", found.reason)
            if self.config.option.ptibench_strict:
                pytest.fail(
                    f"no baseline for {label}: {found.reason}\ncreate it with: {self._hint()}",
                    pytrace=False,
                )
            return
        comparison = baselines.compare(found.entry, result, found.summary)
        fresh = None
        if (
            not comparison.passed
            and found.summary is not None
            and self.config.option.ptibench_confirm
        ):
            fresh = self._confirm(found, result, comparison)
            if fresh is None:
                return
        note = comparison.status_note
        if comparison.improved:
            note = f"better than the baseline: {', '.join(comparison.improved)}"
        self._publish(result, "passed" if comparison.passed else "failed", note)
        if not comparison.passed:
            table = baselines.format_rows(comparison.rows) if comparison.rows else ""
            if fresh is not None:
                seed, again = fresh
                table += f"\nconfirmed by a fresh seed ({seed}):" + (
                    f" {again.status_note}" if again.status_note else ""
                )
                table += f"\n{baselines.format_rows(again.rows)}" if again.rows else ""
            now = recorded_context(self.config, result)
            recorded = found.entry.get("recorded", {})
            changed = baselines.what_changed(recorded, now)
            force = bool(baselines.recorded_differently(recorded, now))
            pytest.fail(
                f"{label} differs from its baseline {found.path}"
                + (f": {comparison.status_note}" if comparison.status_note else "")
                + (f"\n{table}" if table else "")
                + (f"\nsince the baseline was recorded: {changed}" if changed else "")
                + f"\nif the change is intended, update it: {self._hint(spec, force)}",
                pytrace=False,
            )
