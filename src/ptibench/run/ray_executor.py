"""Running cases on a Ray cluster: `pytest benchmark/ --lr-grid --executor ray`, or
`run_cases(specs, executor=RayExecutor(address="auto"))`.

The controller (the pytest session, or the process that calls run_cases) plans the work from its
cache, submits it as Ray tasks, and imports each task's files as it arrives (ray.wait), so a
stopped controller keeps every case that had finished:

- the uncached cases of one group (same everything but lr) are one task, trained as a local run
  trains them (ptibench.run.pretrain): stage 1 batched, stage-2 LoRA stacked around its pivot;
- a stage-2 pivot that is not in the cache is one task, ahead of the group that needs it;
- every case is one task, handed the parcels of the tasks it depends on (its group, its pivot),
  so Ray runs it after them;
- a case already in the cache is not submitted.

A task asks for one GPU where the cluster has GPUs and the world does not pin the CPU, else for
`cpus_per_task` CPU slots. Tasks compute in scratch folders and return bytes
(ptibench.run.tasks): this controller alone writes the cache, the baselines and the reports, so
no file lock has to work across nodes. Ray reruns a task whose worker or node died, up to
`retries` times; a task that raises fails its case with one line, and a rerun computes only the
cases that are not in the cache.

Ray is imported only when an executor connects.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ptibench.errors import PtibenchError
from ptibench.run.cache import (
    PIVOTS_DIR,
    RESULT_FILE,
    TRAINED_DIR,
    Entry,
    ResultCache,
    code_version,
)
from ptibench.run.pretrain import (
    MIN_BATCHED,
    discard_trained,
    group_key,
    has_trained,
    trained_dir,
)
from ptibench.run.runner import export_artifacts, resolve_case
from ptibench.run.tasks import Parcel, Setup, case_task, grid_task, pivot_task, unpack
from ptibench.spec import CaseResult, CaseSpec
from ptibench.training.finetune import pivot_spec

INSTALL_HINT = "pip install 'ptibench[ray]'"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray gives its processes the loopback address instead of the
machine's network address: a local cluster that nothing on the network can reach or join."""

DEFAULT_RETRIES = 3

CRASHES = {
    "WorkerCrashedError": "its worker process died (killed, or out of memory)",
    "NodeDiedError": "its node died",
    "OutOfMemoryError": "its node ran out of memory",
    "TaskCancelledError": "it was cancelled",
    "ObjectLostError": "its input was lost with a node",
    "OwnerDiedError": "its input was lost with a node",
    "ObjectReconstructionFailedError": "its input was lost with a node and could not be rebuilt",
    "TaskUnschedulableError": "no node of the cluster can run it",
    "RuntimeEnvSetupError": "its node could not set up its environment",
}


def import_ray(*, loopback: bool = False):
    """Ray, or one error line that says how to install it. With `loopback` (a local cluster
    that ptibench starts), the cluster listens on 127.0.0.1 and sends no usage statistics."""
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise PtibenchError(
            f"the Ray executor needs Ray, which is not installed here: {INSTALL_HINT}"
        ) from None
    return ray


def case_label(spec: CaseSpec) -> str:
    method = f" ({spec.method})" if spec.method != "pti" else ""
    return f"{spec.stage} {spec.lr_id} seed {spec.seed}{method}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def one_line(text: Any) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def failure_reason(error: BaseException, retries: int) -> str:
    """What went wrong in a task, in one line: the exception it raised (a PtibenchError as it
    is), or what Ray says happened to its worker or node."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, PtibenchError):
        return str(cause)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {one_line(cause)}"
    name = type(error).__name__
    if name in CRASHES:
        left = "no retry was left" if retries else "retries are off"
        return f"{CRASHES[name]}, and {left} ({name}; retries: {retries})"
    return f"{name}: {one_line(error)}"


@dataclass
class Unit:
    """One task to submit: a group run (stage-1 grid, stage-2 stack), a pivot or a case."""

    kind: str
    key: str
    specs: tuple[CaseSpec, ...]
    world: Any
    needs: tuple[str, ...] = ()
    given: dict[str, bytes] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.kind == "grid" and self.specs[0].stage == "inversion":
            return f"stage-1 grid of {len(self.specs)} lrs"
        if self.kind == "grid":
            return f"stage-2 stack of {len(self.specs)} lrs"
        if self.kind == "pivot":
            return f"pivot of {case_label(self.specs[0])}"
        return case_label(self.specs[0])


@dataclass
class Plan:
    """What a run submits (`units`, dependencies first) and what it does not: the cases in the
    cache and those that cannot run (bad input, one line each)."""

    units: list[Unit] = field(default_factory=list)
    entries: dict[CaseSpec, Entry] = field(default_factory=dict)
    cached: dict[CaseSpec, CaseResult] = field(default_factory=dict)
    failed: dict[CaseSpec, str] = field(default_factory=dict)


def _files(cache: ResultCache, folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(cache.root).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def plan_work(specs: list[CaseSpec], cache: ResultCache) -> Plan:
    """The tasks that compute `specs` into `cache` (see the module docstring)."""
    plan = Plan()
    groups: dict[str, list[tuple[CaseSpec, Any, Any, str]]] = {}
    pivots: dict[str, Unit] = {}
    cases: list[Unit] = []

    def pivot_input(spec, world, method, version) -> tuple[tuple[str, ...], dict[str, bytes]]:
        """A stage-2 case's pivot: (the pivot task it needs,) or the cached pivot's bytes."""
        if spec.stage == "inversion":
            return (), {}
        pivot = cache.pivot_path(pivot_spec(spec), version, method)
        name = pivot.relative_to(cache.root).as_posix()
        if pivot.is_file():
            return (), {name: pivot.read_bytes()}
        pivots.setdefault(name, Unit("pivot", name, (spec,), world))
        return (name,), {}

    for spec in dict.fromkeys(specs):
        try:
            world, version, _, method, _ = resolve_case(spec, cache.root)
        except PtibenchError as error:
            plan.failed[spec] = str(error)
            continue
        entry = cache.entry(spec, version, method)
        plan.entries[spec] = entry
        cached = cache.load(entry)
        if cached is not None:
            plan.cached[spec] = cached
        elif (key := group_key(spec)) is not None:
            groups.setdefault(key, []).append((spec, world, method, version))
        else:
            needs, given = pivot_input(spec, world, method, version)
            cases.append(Unit("case", entry.name, (spec,), world, needs=needs, given=given))
    group_units = []
    for group, members in groups.items():
        needs, given = pivot_input(*members[0])
        todo = [m[0] for m in members if not has_trained(cache, plan.entries[m[0]])]
        batched = len(todo) >= MIN_BATCHED
        if batched:
            unit = Unit(
                "grid", f"grid-{group}", tuple(todo), members[0][1], needs=needs, given=dict(given)
            )
            group_units.append(unit)
        for spec, world, _, _ in members:
            entry = plan.entries[spec]
            if has_trained(cache, entry):
                slot = {**_files(cache, trained_dir(cache, entry)), **given}
                cases.append(Unit("case", entry.name, (spec,), world, needs=needs, given=slot))
            else:
                mine = ((group_units[-1].key,) if batched else ()) + needs
                cases.append(Unit("case", entry.name, (spec,), world, needs=mine, given=given))
    order = {spec: index for index, spec in enumerate(dict.fromkeys(specs))}
    cases.sort(key=lambda unit: order[unit.specs[0]])
    plan.units = [*pivots.values(), *group_units, *cases]
    return plan


def task_request(world, nodes: list[dict], cpus_per_task: int, where: str) -> dict[str, Any]:
    """What a task asks Ray for: one GPU where the world may use one and the cluster's nodes
    (their resources) have GPUs, with `cpus_per_task` CPUs. A request that no node can meet is
    an error now, not a task that waits forever."""
    gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    device = (getattr(world, "device", None) or "").split(":")[0]
    if device == "cuda" and not gpus:
        raise PtibenchError(f"world {world.name} runs on CUDA but {where} has no GPU")
    if cpus < cpus_per_task:
        raise PtibenchError(
            f"no node of {where} has {cpus_per_task} CPU(s) for a task (the largest has {cpus:g})"
        )
    request: dict[str, Any] = {"num_cpus": cpus_per_task}
    if device != "cpu" and gpus:
        request["num_gpus"] = 1
    return request


def on_node(task: Callable[..., Parcel], *args: Any) -> Parcel:
    """A task body as Ray runs it: the parcel notes the node it was computed on."""
    import ray

    parcel = task(*args)
    parcel.node = ray.get_runtime_context().get_node_id()
    return parcel


TASK_BODIES = {"grid": grid_task, "pivot": pivot_task, "case": case_task}


@dataclass
class RayExecutor:
    """Runs cases as Ray tasks (see the module docstring).

    `address`: "local" starts a private cluster in this process (`local_cpus` CPUs, default all
    of them) and stops it at the end; "auto" joins the cluster this machine belongs to (started
    with `ray start`, or named by $RAY_ADDRESS); "HOST:PORT" joins the cluster whose head is
    there. An existing connection (ray.init called before) is used as it is. `on_event` gets
    one line per submission and per finished task. `init_options` go to ray.init.
    """

    address: str = "auto"
    retries: int = DEFAULT_RETRIES
    cpus_per_task: int = 1
    local_cpus: int | None = None
    on_event: Callable[[str], None] | None = None
    init_options: dict[str, Any] = field(default_factory=dict)
    submitted: Counter = field(default_factory=Counter, init=False)
    plan: Plan | None = field(default=None, init=False)

    def __post_init__(self):
        self._ray = None
        self._owns_ray = False
        self._cache: ResultCache | None = None
        self._outcomes: dict[CaseSpec, CaseResult | str] = {}
        self._pending: dict[Any, Unit] = {}
        self._refs: dict[str, Any] = {}
        self._units: dict[str, Unit] = {}
        self._broken: dict[str, str] = {}
        self._pivot_seconds: dict[str, float] = {}
        self._where = self.address
        self._started = 0.0
        self._stopped = ""
        if not isinstance(self.retries, int) or self.retries < 0:
            raise PtibenchError(f"Ray retries must be an integer >= 0, got {self.retries!r}")
        if not isinstance(self.cpus_per_task, int) or self.cpus_per_task < 1:
            raise PtibenchError(f"cpus per task must be an integer >= 1, got {self.cpus_per_task}")

    # --- connecting

    def connect(self):
        """Connect to the cluster (once); one error line when that fails."""
        if self._ray is not None:
            return self._ray
        local = self.address == "local"
        ray = import_ray(loopback=local)
        if not ray.is_initialized():
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if local:  # explicit: $RAY_ADDRESS must not turn "local" into someone's cluster
                options.update(address="local", num_cpus=self.local_cpus or os.cpu_count() or 1)
                options.update(include_dashboard=False)
            else:
                check_reachable(self.address)
                options["address"] = self.address
            options.update(self.init_options)
            try:
                ray.init(**options)
            except Exception as error:  # noqa: BLE001 - Ray's reasons vary; one line names it
                what = "start a local Ray cluster" if local else f"join {self.address}"
                hint = ""
                if self.address == "auto":
                    hint = " (start one with `ray start --head`, or use --ray-address local)"
                raise PtibenchError(f"cannot {what}: {one_line(error)}{hint}") from None
            self._owns_ray = True
        self._ray = ray
        self._where = "a local cluster" if local else f"the cluster at {self.address}"
        return ray

    # --- submitting

    def start(self, specs: list[CaseSpec], *, cache_dir: Path | None = None) -> Plan:
        """Plan `specs` against the cache and submit what it lacks (with nothing to submit,
        no cluster is joined or started)."""
        self._started = time.monotonic()
        self._cache = ResultCache(cache_dir)
        plan = self.plan = plan_work(list(specs), self._cache)
        self._outcomes.update(plan.cached)
        self._outcomes.update(plan.failed)
        if not plan.units:
            self._event(self.submission_line())
            return plan
        ray = self.connect()
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        requests = {
            id(unit.world): task_request(unit.world, nodes, self.cpus_per_task, self._where)
            for unit in plan.units
        }
        setup = ray.put(Setup.here(list(plan.entries), self.cpus_per_task))
        remote = ray.remote(on_node)
        for unit in plan.units:
            options = dict(
                requests[id(unit.world)],
                max_retries=self.retries,
                retry_exceptions=False,
                name=f"ptibench {unit.label}",
            )
            args: list[Any] = [TASK_BODIES[unit.kind]]
            args.append(list(unit.specs) if unit.kind == "grid" else unit.specs[0])
            args.append(setup)
            if unit.given:
                args.append(Parcel(unit.given, socket.gethostname(), 0.0, code_version()))
            args += [self._refs[key] for key in unit.needs]
            ref = remote.options(**options).remote(*args)
            self._refs[unit.key] = ref
            self._units[unit.key] = unit
            self._pending[ref] = unit
            self.submitted[unit.kind] += 1
        self._event(self.submission_line())
        return plan

    def submission_line(self) -> str:
        total = sum(self.submitted.values())
        parts = [
            plural(self.submitted[kind], name)
            for kind, name in (("grid", "group run"), ("pivot", "pivot"), ("case", "case"))
            if self.submitted[kind]
        ]
        cached = len((self.plan or Plan()).cached)
        line = f"ray: {plural(total, 'task')} submitted"
        line += f" to {self._where} ({', '.join(parts)})" if total else ""
        return line + f", {plural(cached, 'case')} from the cache"

    # --- results as they arrive

    def result(self, spec: CaseSpec, *, artifacts_dir: Path | None = None) -> CaseResult:
        """The result of `spec` (waiting for it, importing whatever finishes meanwhile), or a
        PtibenchError with the one line that says why it failed."""
        if self.plan is None:
            raise PtibenchError("the Ray executor has not been started")
        self.pump(until=spec)
        outcome = self._outcomes.get(spec)
        if outcome is None and self._stopped:
            raise PtibenchError(
                f"{case_label(spec)}: the controller was {self._stopped} before it arrived; "
                "rerun to resume from the cache"
            )
        if outcome is None:
            raise PtibenchError(f"{case_label(spec)} was not submitted to the Ray cluster")
        if isinstance(outcome, str):
            raise PtibenchError(f"{case_label(spec)} failed on the Ray cluster: {outcome}")
        if artifacts_dir is not None:
            outcome = export_artifacts(outcome, Path(artifacts_dir) / spec.key())
        return outcome

    def pump(self, until: CaseSpec | None = None) -> None:
        """Import finished tasks as they arrive, until `until` has an outcome (None: all).

        Ctrl-C, or SIGTERM (a Slurm time limit; Ray's handler makes it a SystemExit), stops the
        executor: what arrived is in the cache, the cluster drops the rest, and a case still
        waited for fails at once with one line instead of waiting on. Ctrl-C goes on up (pytest
        ends the session on it); after SIGTERM the session ends normally, its reports written."""
        try:
            while self._pending and (until is None or until not in self._outcomes):
                ready, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    self._take(ref)
        except KeyboardInterrupt:
            self._stopped = "interrupted"
            self.close()
            raise
        except SystemExit:
            # Ray's native failure handler arms a 3 s alarm on SIGTERM that aborts the process:
            # disarmed, so the session can write its reports
            signal.alarm(0)
            self._stopped = "terminated"
            self._pending.clear()

    def _take(self, ref) -> None:
        unit = self._pending.pop(ref, None)
        if unit is None:
            return
        for need in unit.needs:  # what it depends on first: its slots, its pivot's time
            self._take(self._refs[need])
        try:
            parcel = self._ray.get(ref)
        except Exception as error:  # noqa: BLE001 - a task that raised, or lost its worker
            self._fail(unit, error)
            return
        if parcel.code_version != code_version():
            self._fail(unit, None, _other_code(parcel))
        elif unit.kind == "grid":
            unpack(_under(parcel.files, TRAINED_DIR), self._cache.root)
            self._event(f"[ray] done  {unit.label} on {parcel.host} in {parcel.seconds:.1f}s")
        elif unit.kind == "pivot":
            self._keep_pivots(parcel, unit.key)
            self._pivot_seconds[unit.key] = parcel.seconds
            self._event(f"[ray] done  {unit.label} on {parcel.host} in {parcel.seconds:.1f}s")
        else:
            self._import_case(unit, parcel)

    def _fail(self, unit: Unit, error: BaseException | None, reason: str = "") -> None:
        reason = reason or failure_reason(error, self.retries)
        for need in unit.needs:
            if need in self._broken:
                reason = f"its {self._units[need].label} failed: {self._broken[need]}"
        self._broken[unit.key] = reason
        if unit.kind == "case":
            self._outcomes[unit.specs[0]] = reason
        self._event(f"[ray] failed {unit.label}: {reason}")

    def _keep_pivots(self, parcel: Parcel, only: str | None = None) -> None:
        """Pivots a task made, written where the cache has none yet (as a local run shares
        them); a stage-1 case's pivot only where no pivot task of this run makes it."""
        for name, data in _under(parcel.files, PIVOTS_DIR).items():
            if only is not None and name != only:
                continue
            if only is None and name in self._units:
                continue
            path = self._cache.root / name
            if not path.is_file():
                unpack({name: data}, self._cache.root)

    def _import_case(self, unit: Unit, parcel: Parcel) -> None:
        """Publish a case's entry into the cache as run_case would (staged, then renamed)."""
        spec, cache = unit.specs[0], self._cache
        entry = self.plan.entries[spec]
        prefix = entry.name + "/"
        files = {k[len(prefix) :]: v for k, v in parcel.files.items() if k.startswith(prefix)}
        if RESULT_FILE not in files:
            elsewhere = any(name.endswith("/" + RESULT_FILE) for name in parcel.files)
            self._fail(unit, None, _other_key(parcel) if elsewhere else "its task returned nothing")
            return
        staging = cache.staging(entry)
        try:
            unpack({k: v for k, v in files.items() if k != RESULT_FILE}, staging)
            record = CaseResult.from_dict(json.loads(files[RESULT_FILE]))
            result = replace(
                record,
                artifacts={name: str(staging / path) for name, path in record.artifacts.items()},
                from_cache=False,
                environment={
                    **record.environment,
                    "ray": {"node": parcel.node, "host": parcel.host},
                },
            )
            self._add_pivot_time(unit, result)
            with cache.lock(entry):
                stored = cache.load(entry)
                if stored is None:
                    result = cache.store(entry, result, staging)
                else:
                    cache.discard(staging)
                    result = replace(stored, from_cache=False)
            discard_trained(cache, entry)
        except BaseException:
            cache.discard(staging)
            raise
        self._keep_pivots(parcel)
        self._outcomes[spec] = result
        self._event(
            f"[ray] done  {unit.label} on {parcel.host} in {parcel.seconds:.1f}s "
            f"({self.progress_text()})"
        )

    def _add_pivot_time(self, unit: Unit, result: CaseResult) -> None:
        """The first stage-2 case of a pivot carries its training time, as in a local run."""
        for need in unit.needs:
            seconds = self._pivot_seconds.pop(need, None)
            if seconds is not None:
                result.timings["pivot_s"] = seconds
                result.timings["total_s"] = result.timings.get("total_s", 0.0) + seconds

    def progress_text(self) -> str:
        plan = self.plan or Plan()
        total = len(plan.entries) + len(plan.failed)
        done = len(self._outcomes)
        elapsed = time.monotonic() - self._started
        return f"{done}/{total} cases done, {elapsed:.0f}s elapsed"

    def _event(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)

    # --- the whole job, and the end

    def summary(self) -> list[str]:
        if self.plan is None:
            return []
        failed = sum(isinstance(o, str) for o in self._outcomes.values())
        return [self.submission_line() + f", {failed} failed"]

    def run_cases(
        self,
        specs: list[CaseSpec],
        *,
        cache_dir: Path | None = None,
        artifacts_dir: Path | None = None,
        progress: bool | None = None,
    ) -> list[CaseResult]:
        """Every spec's result, in order (the run_cases of ptibench.run.runner, on Ray). A case
        that failed is a PtibenchError after the others have finished and are in the cache."""
        problems: list[str] = []
        results: list[CaseResult] = []
        try:
            self.start(specs, cache_dir=cache_dir)
            for spec in specs:
                try:
                    results.append(self.result(spec, artifacts_dir=artifacts_dir))
                except PtibenchError as error:
                    problems.append(str(error))
        finally:
            self.close()
        if self._stopped == "terminated":
            raise SystemExit(1)
        if problems:
            more = f" (and {len(problems) - 1} more case(s) failed)" if len(problems) > 1 else ""
            raise PtibenchError(problems[0] + more)
        return results

    def close(self) -> None:
        """Disconnect; a local cluster this executor started stops, and with it any task
        still running there."""
        if self._ray is not None and self._owns_ray:
            self._ray.shutdown()
        self._ray = None
        self._owns_ray = False
        self._pending.clear()


def _under(files: dict[str, bytes], folder: str) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name.startswith(folder + "/")}


def _other_code(parcel: Parcel) -> str:
    return (
        f"node {parcel.host} computes with other code or libraries than this controller "
        f"(code version {parcel.code_version}, here {code_version()}): install the same "
        "ptibench and the same torch, diffusers, transformers and peft on every node"
    )


def _other_key(parcel: Parcel) -> str:
    return (
        f"node {parcel.host} computed it under another cache key: its copy of the world's "
        "files or of the concept folder differs from this controller's (give every node the "
        "same files at the same paths)"
    )


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT that does not answer is one error line now, not a long wait inside Ray."""
    if address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise PtibenchError(f"Ray address {address!r}: give auto, local or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout).close()
    except OSError as error:
        raise PtibenchError(
            f"cannot reach the Ray cluster at {address}: {error.strerror or error}"
        ) from None
