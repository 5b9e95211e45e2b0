"""The plugin's session object: what the options selected, the checks that turn a bad selection
into a usage error, the cases in worker-friendly order, and (on the controller) the cases merged
from every worker's reports into results.json and the reports rendered at the end.

The hooks in ptibench.harness.plugin hand off to this object and do nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ptibench.case_options import DEFAULT_STAGES, case_specs, concepts
from ptibench.concept import load_concept
from ptibench.errors import PtibenchError
from ptibench.grids import PRESETS, LrGrid
from ptibench.models.checkpoints import default_device
from ptibench.models.registry import resolve_world
from ptibench.provenance import commit_info, versions
from ptibench.results import baselines
from ptibench.results.api import Tradeoff
from ptibench.results.document import results_document, run_context, write_results
from ptibench.results.export import check_tracker, to_tensorboard
from ptibench.results.history import autosave, saved_runs
from ptibench.results.report import collect_artifacts
from ptibench.run.cache import fresh_cache_dir
from ptibench.run.pretrain import group_key
from ptibench.run.ray_executor import DEFAULT_RETRIES, RayExecutor, import_ray
from ptibench.spec import DEFAULT_METHOD, STAGES, CaseSpec, lr_key
from ptibench.training.methods import get_method

PAYLOAD_KEY = "ptibench"
SPEC_FIXTURE = "ptibench_spec"
FRESH_CACHE_ENV = "PTIBENCH_FRESH_CACHE"


@dataclass
class PluginSession:
    """Everything the plugin keeps for one pytest session (on the controller it also merges the
    cases' payloads as their reports arrive)."""

    config: Any
    grid: LrGrid | None
    stages: tuple[str, ...]
    out_dir: Path
    baseline_dir: Path
    cache_dir: Path | None
    is_worker: bool
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    deselected: int = 0
    grid_specs: list[CaseSpec] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    executor: RayExecutor | None = None

    @classmethod
    def from_config(cls, config) -> PluginSession:
        opt = config.option
        here = Path(config.invocation_params.dir)
        return cls(
            config=config,
            grid=opt.lr_grid,
            stages=opt.stage or DEFAULT_STAGES,
            out_dir=here / opt.ptibench_out,
            baseline_dir=(
                here / opt.ptibench_baselines
                if opt.ptibench_baselines
                else Path(config.rootpath) / "baselines"
            ),
            cache_dir=session_cache_dir(opt, here, hasattr(config, "workerinput")),
            is_worker=hasattr(config, "workerinput"),
        )

    # --- at configure time: where the cases run

    def check_executor(self) -> None:
        """--executor ray: no -n beside it, Ray importable (only then imported), and the
        executor made; the --ray-* options without it are a usage error."""
        opt = self.config.option
        if opt.executor != "ray":
            for name, value in (
                ("--ray-address", opt.ray_address),
                ("--ray-retries", opt.ray_retries),
            ):
                if value is not None:
                    raise pytest.UsageError(f"{name} needs --executor ray")
            return
        if getattr(opt, "numprocesses", None):
            raise pytest.UsageError(
                "--executor ray runs the cases as tasks on the Ray cluster: drop -n "
                "(pytest-xdist); the cluster's nodes are the workers"
            )
        if self.grid is None or self.is_worker:
            return
        address = opt.ray_address or "auto"
        try:
            import_ray(loopback=address == "local")
            self.executor = RayExecutor(
                address=address,
                retries=DEFAULT_RETRIES if opt.ray_retries is None else opt.ray_retries,
                on_event=lambda line: write_line(self.config, f"ptibench: {line}"),
            )
        except PtibenchError as error:
            raise pytest.UsageError(str(error)) from None

    def start_executor(self) -> None:
        """Submit the selected cases to the cluster as soon as they are known."""
        if self.executor is None or not self.grid_specs or self.config.option.collectonly:
            return
        try:
            self.executor.start(self.grid_specs, cache_dir=self.cache_dir)
        except PtibenchError as error:
            raise pytest.UsageError(str(error)) from None

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()

    # --- before collection: a bad selection is a usage error, not hours of training later

    def check_selection(self) -> None:
        if self.grid is None:
            return
        self._check_method()
        self._check_world_and_concept()
        if not self.is_worker:
            self._check_out_dir()
            if self.config.option.report_to:
                try:
                    check_tracker(self.config.option.report_to)
                except PtibenchError as error:
                    raise pytest.UsageError(str(error)) from None

    def _check_method(self) -> None:
        """--method must name a registered method that has every stage asked for; without
        --stage, the default stages are narrowed to those the method has."""
        try:
            method = get_method(self.config.option.method)
        except PtibenchError as error:
            raise pytest.UsageError(f"--method: {error}") from None
        if self.config.option.stage is None:
            self.stages = (
                tuple(s for s in DEFAULT_STAGES if s in method.stages) or method.stages[:1]
            )
        missing = [s for s in self.stages if s not in getattr(method, "stages", STAGES)]
        if missing:
            raise pytest.UsageError(
                f"--method {method.name} has no stage {', '.join(missing)} "
                f"(it has: {', '.join(method.stages)})"
            )

    def _check_world_and_concept(self) -> None:
        device = self.config.option.device
        checks = [("--device", default_device, device)] if device else []
        checks += [("--world", resolve_world, self.config.option.world)]
        checks += [("--concept", load_concept, name) for name in concepts(self.config.option)]
        for option, check, value in checks:
            try:
                check(value)
            except PtibenchError as error:
                raise pytest.UsageError(f"{option}: {error}") from None

    def _check_out_dir(self) -> None:
        probe = self.out_dir / f".ptibench-probe-{os.getpid()}"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise pytest.UsageError(
                f"--ptibench-out: cannot write in {self.out_dir}: {error.strerror or error}"
            ) from None

    # --- collection

    def specs(self) -> list[CaseSpec]:
        """The cases of this pytest run, in the same order on every xdist worker."""
        return case_specs(
            self.config.option, self.grid, self.stages, range(self.config.option.seeds)
        )

    def case_id(self, spec: CaseSpec) -> str:
        """`inversion-lr=1e-02`; with seeds `-seed=N`; with several concepts the concept first."""
        seeds = self.config.option.seeds
        several = len(concepts(self.config.option)) > 1
        return (
            (f"{spec.concept}-" if several else "")
            + f"{spec.stage}-{spec.lr_id}"
            + (f"-seed={spec.seed}" if seeds > 1 else "")
        )

    def order_items(self, items: list) -> None:
        """Mark the case items; without --lr-grid deselect them, else put them in
        worker-friendly order (other tests keep their places)."""
        cases = [item for item in items if is_case(item)]
        for item in cases:
            item.add_marker(pytest.mark.ptibench)
        if self.grid is None and cases:
            self.deselected = len(cases)
            self.config.hook.pytest_deselected(items=cases)
            items[:] = [item for item in items if not is_case(item)]
        elif cases:
            ordered = iter(worker_friendly_order(cases))
            items[:] = [next(ordered) if is_case(item) else item for item in items]

    def remember_selection(self, items: list) -> None:
        """The selected cases (after -k and deselection): the first inversion case of a grid
        trains the whole selected grid batched (ptibench.run.pretrain)."""
        if self.grid is not None:
            self.grid_specs = [
                item.callspec.params[SPEC_FIXTURE]
                for item in items
                if is_case(item) and hasattr(item, "callspec")
            ]
            self.start_executor()

    # --- on the controller: merging, results.json, the reports

    def merge(self, report) -> None:
        """Take the case payloads of one report and rewrite results.json."""
        payloads = [value for key, value in report.user_properties if key == PAYLOAD_KEY]
        if not payloads or report.when != "call":
            return
        merged = []
        for payload in payloads:
            case = json.loads(payload)
            case["outcome"] = report.outcome
            self.cases[report.nodeid] = case
            merged.append(case)
        try:
            for case in merged:  # the report folder keeps the artifacts, not the cache's paths
                collect_artifacts(self.out_dir, case)
            write_results(self.out_dir, self.document())
        except Exception as error:  # noqa: BLE001 - a report problem must not stop the benchmark
            message = str(error)  # a PtibenchError already names the file
            if not isinstance(error, PtibenchError):
                message = f"cannot write {self.out_dir / 'results.json'}: {error}"
            if message not in self.errors:
                self.errors.append(message)

    def document(self) -> dict[str, Any]:
        if not self.context:
            opt = self.config.option
            options = {
                "lr_grid": str(self.grid),
                "stages": list(self.stages),
                **{
                    name: getattr(opt, name)
                    for name in (
                        "steps",
                        "world",
                        "concept",
                        "method",
                        "seeds",
                        "pivot_lr",
                        "eval_every",
                    )
                },
            }
            self.context = run_context(
                Path(self.config.rootpath), list(self.config.invocation_params.args), options
            )
        cases = list(self.cases.values())
        return results_document(self.context, cases, reference_values(self.baseline_dir, cases))

    def finish(self, session) -> None:
        """Render the reports and the summary text; a failure here is an error line, exit 1."""
        if self.grid is None:
            if self.deselected:
                self.summary.append(
                    f"{self.deselected} benchmark test(s) deselected: "
                    "pass --lr-grid to run the cases"
                )
            return
        if self.executor is not None:
            self.summary.extend(self.executor.summary())
        if not self.cases:
            return
        try:
            document = self.document()
            report = Tradeoff(document)
            paths = report.write(self.out_dir)
            self.summary.extend(report.summary_lines())
            self.summary.append("reports: " + ", ".join(str(p) for p in paths))
        except Exception as error:  # noqa: BLE001 - one line; the session still ends cleanly
            self.errors.append(f"cannot write the reports in {self.out_dir}: {error}")
        else:
            self.keep(report.document)
        try:
            self.summary.extend(self.baseline_lines())
        except Exception as error:  # noqa: BLE001 - one line; the session still ends cleanly
            self.errors.append(f"cannot read the baselines in {self.baseline_dir}: {error}")
        if self.errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def keep(self, document: dict[str, Any]) -> None:
        """--report-to and --ptibench-autosave, after the reports are written."""
        opt = self.config.option
        try:
            if opt.report_to == "tensorboard":
                folder = to_tensorboard(self.out_dir, document)
                self.summary.append(f"tensorboard: tensorboard --logdir {folder}")
            if opt.ptibench_autosave:
                before = saved_runs(self.out_dir)
                run = autosave(self.out_dir, document)
                self.summary.append(f"saved this run as {run}")
                if before:
                    self.summary.append(f"compare it: ptibench compare {before[-1]} {run}")
        except Exception as error:  # noqa: BLE001 - one line; the session still ends cleanly
            self.errors.append(str(error) if isinstance(error, PtibenchError) else repr(error))

    def baseline_lines(self) -> list[str]:
        """Cases that had no baseline of their own, and stored entries no case used."""
        cases = list(self.cases.values())
        missing = [c for c in cases if (c.get("baseline") or {}).get("verdict") == "missing"]
        lines = []
        if missing and not self.config.option.ptibench_strict:
            args = [a for a in self.config.invocation_params.args if a != "--update-baselines"]
            lines.append(
                f"{len(missing)} case(s) had no baseline of their own and were not checked "
                "(--ptibench-strict makes that an error)"
            )
            if any(c["spec"]["method"] != DEFAULT_METHOD for c in missing):
                lines.append(
                    f"methods other than {DEFAULT_METHOD} are shown beside {DEFAULT_METHOD}'s "
                    "stored baseline above, where it has one of the same settings"
                )
            lines.append("record them with: pytest " + shlex.join([*args, "--update-baselines"]))
        specs = [CaseSpec.from_dict(case["spec"]) for case in cases]
        full = {stage: PRESETS["default"][stage] for stage in STAGES}
        unused = baselines.unused_entries(self.baseline_dir, specs, full)
        if unused:
            lines.append(
                f"{len(unused)} stored baseline entr{'y' if len(unused) == 1 else 'ies'} "
                "not used by this run's cases (kept; remove them by hand if obsolete):"
            )
            lines += [
                f"  {entry.path}: lr={entry.lr} seed {entry.seed}"
                + (f" (recorded with {entry.differs})" if entry.differs else "")
                for entry in unused
            ]
        return lines

    def write_summary(self, terminalreporter) -> None:
        if not self.summary and not self.errors:
            return
        try:
            terminalreporter.write_sep("=", "ptibench")
            for line in self.summary:
                terminalreporter.write_line(line)
            for error in self.errors:
                terminalreporter.write_line(f"ptibench: error: {error}", red=True)
        except Exception as error:  # noqa: BLE001 - the summary must never become a traceback
            terminalreporter.write_line(f"ptibench: cannot print the summary: {error}")


SESSION = pytest.StashKey[PluginSession]()


def write_line(config, line: str) -> None:
    """One line on the terminal now, on a line of its own (progress dots leave the cursor
    mid-line), also from inside a test, whose output pytest otherwise captures."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    suspended = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with suspended:
        writer = getattr(terminal, "_tw", None)  # (write_line ends a test file's line itself)
        if getattr(writer, "width_of_current_line", 0) and not terminal.currentfspath:
            terminal.write("\n")
        terminal.write_line(line)
        terminal.flush()


def session_cache_dir(opt, here: Path, is_worker: bool) -> Path | None:
    """--ptibench-cache; with --no-cache, a fresh cache for this pytest run, made by the controller
    and handed to the xdist workers through the environment (they start after it)."""
    root = here / opt.ptibench_cache if opt.ptibench_cache else None
    if not opt.no_cache or opt.lr_grid is None:
        return root
    if is_worker and os.environ.get(FRESH_CACHE_ENV):
        return Path(os.environ[FRESH_CACHE_ENV])
    fresh = fresh_cache_dir(root)
    os.environ[FRESH_CACHE_ENV] = str(fresh)
    return fresh


def is_case(item) -> bool:
    return SPEC_FIXTURE in getattr(item, "fixturenames", ())


def worker_friendly_order(cases: list) -> list:
    """Cases in the order that keeps two or more xdist workers busy.

    A worker's first case trains the group runs nobody else has started (ptibench.run.pretrain)
    and later cases of a group wait until its run is done. xdist's load scheduler starts each
    worker on a chunk of consecutive items (two for the default grid), so each group's first two
    cases go first (the runs start at once, spread over the workers), then the cases that train
    alone, then the rest of the stage-1 groups, whose batched run ends first, then the rest of
    the stage-2 groups, which wait on a pivot and a stacked run. Alone, the order changes
    nothing.
    """
    groups: dict[str, list] = {}
    alone = []
    for item in cases:
        key = group_key(item.callspec.params[SPEC_FIXTURE]) if hasattr(item, "callspec") else None
        if key is None:
            alone.append(item)
        else:
            groups.setdefault(key, []).append(item)
    leaders = [item for members in groups.values() for item in members[:2]]
    rest = [item for members in groups.values() for item in members[2:]]
    rest.sort(key=lambda item: item.callspec.params[SPEC_FIXTURE].stage != "inversion")
    return leaders + alone + rest


def recorded_context(config, result) -> dict[str, Any]:
    """What a baseline entry records besides the numbers: versions, device, commit."""
    env = dict(result.environment or {})
    return {
        "device": env.get("device", "cpu"),
        "cpu": env.get("cpu"),
        "dtype": env.get("dtype"),
        "threads": env.get("threads"),
        "compiled": bool(env.get("compiled", False)),
        "deterministic": bool(env.get("deterministic", False)),
        "sample_dtype": env.get("sample_dtype", env.get("dtype")),
        "world_version": env.get("world_version"),
        "method_version": env.get("method_key"),
        "versions": {**versions(), **env.get("versions", {})},
        "commit": commit_info(Path(config.rootpath)),
    }


def reference_values(baseline_dir: Path, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The default method's stored baselines beside each non-default method's cases."""
    reference: dict[str, Any] = {}
    for case in cases:
        spec = CaseSpec.from_dict(case["spec"])
        if spec.method == DEFAULT_METHOD:
            continue
        entry = baselines.stored_entry(baseline_dir, spec.with_(method=DEFAULT_METHOD))
        if entry is None:
            continue
        group = "|".join((spec.world, spec.concept, spec.method, spec.stage))
        reference.setdefault(group, {})[lr_key(spec.lr)] = {
            "status": entry["status"],
            "metrics": {name: m["value"] for name, m in entry["metrics"].items()},
        }
    return reference
