"""The ptibench pytest plugin: `pytest benchmark/ --lr-grid` runs the lr grid of each stage, checks
every case against its stored baseline, and ends with the trade-off table, the knee and reports.

Per-case data travels on `report.user_properties` so the controller of an xdist session sees every
case; the controller merges them, rewrites results.json as cases finish (a killed session keeps
them), and at the end renders the reports in `pytest_sessionfinish`. The terminal summary only
prints what was prepared there and never raises.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ptibench import baselines
from ptibench.compiling import COMPILE_ENV
from ptibench.errors import PtibenchError
from ptibench.spec import DEFAULT_CONCEPT, DEFAULT_METHOD, DEFAULT_WORLD, STAGES

PAYLOAD_KEY = "ptibench"
SPEC_FIXTURE = "ptibench_spec"
DEFAULT_STAGES = ("inversion", "finetune")
DEFAULT_OUT = "ptibench-out"

# Per stage, sized to the tiny world: inversion distance grows ~ c*lr*steps (c ~ 0.1-0.4) and its
# reconstruction keeps rising up to lr ~ 1, so the grid spans 1e-3..1; LoRA and full fine-tuning
# move weights directly and need far smaller lrs.
PRESETS: dict[str, dict[str, tuple[float, ...]]] = {
    "default": {
        "inversion": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
        "finetune": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        "finetune-full": (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4),
    },
    "quick": {
        "inversion": (1e-3, 3e-2, 1.0),
        "finetune": (1e-4, 1e-3, 1e-2),
        "finetune-full": (1e-6, 1e-5, 1e-4),
    },
    "wide": {
        "inversion": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        "finetune": (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
        "finetune-full": (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
    },
}


@dataclass(frozen=True)
class LrGrid:
    """What `--lr-grid` asked for: a preset (one grid per stage) or one explicit list for all."""

    preset: str | None = None
    lrs: tuple[float, ...] = ()

    def for_stage(self, stage: str) -> tuple[float, ...]:
        return PRESETS[self.preset][stage] if self.preset else self.lrs

    def __str__(self) -> str:
        return self.preset or ",".join(baselines.lr_key(lr) for lr in self.lrs)


def parse_lr_grid(text: str) -> LrGrid:
    """argparse type for --lr-grid: a preset name or a comma list of distinct lrs > 0."""
    value = text.strip()
    if value in PRESETS:
        return LrGrid(preset=value)
    presets = ", ".join(PRESETS)
    if not value:
        raise argparse.ArgumentTypeError(f"empty grid (give a preset: {presets}, or 1e-4,1e-3)")
    lrs: list[float] = []
    seen: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        try:
            lr = float(item)
        except ValueError:
            hint = ""
            if Path(value).exists():
                hint = "; to run a folder, name it before --lr-grid or write --lr-grid=default"
            raise argparse.ArgumentTypeError(
                f"{item!r} in {text!r} is not a number (nor is {text!r} a preset: {presets}){hint}"
            ) from None
        if not math.isfinite(lr) or lr <= 0:
            raise argparse.ArgumentTypeError(f"lr {item!r} in {text!r} must be a finite number > 0")
        key = baselines.lr_key(lr)
        if key in seen:
            raise argparse.ArgumentTypeError(
                f"duplicate lr {item!r} in {text!r} (same as {seen[key]!r}: both are {key})"
            )
        seen[key] = item
        lrs.append(lr)
    return LrGrid(lrs=tuple(lrs))


def parse_stages(text: str) -> tuple[str, ...]:
    """argparse type for --stage: a comma list of known stages, without repeats."""
    stages = tuple(s.strip() for s in text.split(","))
    for stage in stages:
        if stage not in STAGES:
            raise argparse.ArgumentTypeError(
                f"unknown stage {stage!r} (known: {', '.join(STAGES)})"
            )
    if len(set(stages)) != len(stages):
        raise argparse.ArgumentTypeError(f"a stage is repeated in {text!r}")
    return stages


def _positive(kind: type, what: str):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (isinstance(value, int) or math.isfinite(value)) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    convert.__name__ = what
    return convert


positive_int = _positive(int, "a whole number")
positive_float = _positive(float, "a number")


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name")
    return text.strip()


def pytest_addhooks(pluginmanager):
    from ptibench import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser):
    group = parser.getgroup("ptibench", "ptibench: the PTI lr-grid benchmark")
    group.addoption(
        "--lr-grid",
        type=parse_lr_grid,
        nargs="?",
        const=LrGrid(preset="default"),
        default=None,
        help="run the benchmark cases: no value = each stage's default grid; a preset "
        f"({', '.join(PRESETS)}); or lrs like 1e-4,1e-3,1e-2 (used for every stage)",
    )
    group.addoption(
        "--stage",
        type=parse_stages,
        default=None,
        help=f"comma list of stages ({', '.join(STAGES)}); default inversion,finetune, "
        "or those of them the method has",
    )
    group.addoption(
        "--steps", type=positive_int, default=1000, help="training steps (default 1000)"
    )
    group.addoption(
        "--world",
        "--model",
        dest="world",
        type=_name,
        default=DEFAULT_WORLD,
        help=f"world or model: {DEFAULT_WORLD}, a Stable Diffusion (XL) diffusers folder or hub "
        "id in the local Hugging Face cache, or a world config file (.json/.toml)",
    )
    group.addoption(
        "--concept",
        type=_name,
        default=DEFAULT_CONCEPT,
        help=f"concept name or folder (default {DEFAULT_CONCEPT})",
    )
    group.addoption(
        "--method",
        default=DEFAULT_METHOD,
        help=f"method name from the registry (default {DEFAULT_METHOD})",
    )
    group.addoption(
        "--pivot-lr",
        type=positive_float,
        default=None,
        help="inversion lr of the pivot that fine-tuning starts from",
    )
    group.addoption("--seeds", type=positive_int, default=1, help="seeds per lr (default 1)")
    group.addoption(
        "--samples-per-prompt",
        type=positive_int,
        default=None,
        help="samples per prompt of the evaluation",
    )
    group.addoption(
        "--sample-steps",
        type=positive_int,
        default=None,
        help="sampler steps of the evaluation",
    )
    group.addoption(
        "--eval-every",
        type=positive_int,
        default=None,
        metavar="N",
        help="also evaluate every N training steps (and at step 0): concept-order curves and "
        "the light window (concept_order.md/.png); the final metrics are unchanged",
    )
    group.addoption(
        "--compile",
        action="store_true",
        default=False,
        help="torch.compile the training UNet (sets PTIBENCH_COMPILE=1): 9-14%% faster steps on "
        "CPU once inductor's kernels are cached; the first compile on a machine takes minutes",
    )
    group.addoption(
        "--update-baselines",
        action="store_true",
        default=False,
        help="record the selected cases as baselines (other lrs' entries are kept)",
    )
    group.addoption(
        "--ptibench-out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"report directory (default ./{DEFAULT_OUT})",
    )
    group.addoption(
        "--ptibench-cache",
        default=None,
        metavar="DIR",
        help="case cache (default $PTIBENCH_CACHE or ./.ptibench-cache)",
    )
    group.addoption(
        "--ptibench-baselines",
        default=None,
        metavar="DIR",
        help="baseline directory (default <rootdir>/baselines)",
    )


def visible_gpus(environ: dict[str, str]) -> list[str]:
    """The CUDA devices a process may see, found without initialising CUDA."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    proc = Path("/proc/driver/nvidia/gpus")
    count = len(list(proc.iterdir())) if proc.is_dir() else 0
    return [str(i) for i in range(count)]


def share_cpu_threads(environ: dict[str, str]) -> int | None:
    """Split the cores between CPU xdist workers: N workers each running torch's default thread
    pool oversubscribe the machine, and OpenMP threads then spend their time waiting for each
    other. Respects an explicit OMP_NUM_THREADS."""
    workers = environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not workers.isdigit() or "OMP_NUM_THREADS" in environ:
        return None
    import torch

    threads = max(1, (os.cpu_count() or 1) // int(workers))
    torch.set_num_threads(threads)
    return threads


def assign_worker_gpu(environ: dict[str, str]) -> str | None:
    """Give xdist worker gwN the N-th visible GPU (round robin); nothing when there is no GPU."""
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    gpus = visible_gpus(environ)
    if not gpus:
        return None
    chosen = gpus[int(worker[2:]) % len(gpus)]
    environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen


@dataclass
class State:
    """Everything the plugin keeps for one session (on the controller it also merges cases)."""

    grid: LrGrid | None
    stages: tuple[str, ...]
    out_dir: Path
    baseline_dir: Path
    cache_dir: Path | None
    is_worker: bool
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    deselected: int = 0
    grid_specs: list[Any] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


STATE = pytest.StashKey[State]()


def pytest_configure(config):
    config.addinivalue_line("markers", "ptibench: a ptibench benchmark case (one stage and lr)")
    is_worker = hasattr(config, "workerinput")
    if is_worker and assign_worker_gpu(os.environ) is None:
        share_cpu_threads(os.environ)
    opt = config.option
    if opt.compile:
        os.environ[COMPILE_ENV] = "1"
    invocation_dir = Path(config.invocation_params.dir)
    config.stash[STATE] = State(
        grid=opt.lr_grid,
        stages=opt.stage or DEFAULT_STAGES,
        out_dir=invocation_dir / opt.ptibench_out,
        baseline_dir=(
            invocation_dir / opt.ptibench_baselines
            if opt.ptibench_baselines
            else Path(config.rootpath) / "baselines"
        ),
        cache_dir=invocation_dir / opt.ptibench_cache if opt.ptibench_cache else None,
        is_worker=is_worker,
    )
    if not is_worker:
        config.pluginmanager.register(CaseCollector(config), "ptibench-case-collector")


def _check_method(config) -> None:
    """--method must name a registered method that has every stage asked for; without --stage,
    the default stages are narrowed to those the method has (pti-normreg: inversion only)."""
    from ptibench.methods import get_method

    state = config.stash[STATE]
    try:
        method = get_method(config.option.method)
    except PtibenchError as error:
        raise pytest.UsageError(f"--method: {error}") from None
    if config.option.stage is None:
        state.stages = tuple(s for s in DEFAULT_STAGES if s in method.stages) or method.stages[:1]
    missing = [s for s in state.stages if s not in getattr(method, "stages", STAGES)]
    if missing:
        raise pytest.UsageError(
            f"--method {method.name} has no stage {', '.join(missing)} "
            f"(it has: {', '.join(method.stages)})"
        )


def _check_world_and_concept(config) -> None:
    """An unknown world or concept is a usage error before any case starts."""
    from ptibench.backends import resolve_world
    from ptibench.concept import load_concept

    for option, check in (("--world", resolve_world), ("--concept", load_concept)):
        try:
            check(getattr(config.option, option[2:]))
        except PtibenchError as error:
            raise pytest.UsageError(f"{option}: {error}") from None


def _check_out_dir(config) -> None:
    """A report folder that cannot be written is a usage error now, not after hours of training."""
    out_dir = config.stash[STATE].out_dir
    probe = out_dir / f".ptibench-probe-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise pytest.UsageError(
            f"--ptibench-out: cannot write in {out_dir}: {error.strerror or error}"
        ) from None


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    state = session.config.stash[STATE]
    if state.grid is not None:
        _check_method(session.config)
        _check_world_and_concept(session.config)
        if not state.is_worker:
            _check_out_dir(session.config)


def case_specs(config) -> list:
    """The cases of this session, in the same order on every xdist worker."""
    from ptibench.spec import CaseSpec, EvalConfig

    state = config.stash[STATE]
    opt = config.option
    eval_changes = {
        name: value
        for name, value in (
            ("samples_per_prompt", opt.samples_per_prompt),
            ("sample_steps", opt.sample_steps),
        )
        if value is not None
    }
    eval_config = replace(EvalConfig(), **eval_changes)
    return [
        CaseSpec(
            stage=stage,
            lr=lr,
            world=opt.world,
            concept=opt.concept,
            method=opt.method,
            steps=opt.steps,
            seed=seed,
            pivot_lr=None if stage == "inversion" else opt.pivot_lr,
            eval=eval_config,
            eval_every=opt.eval_every,
        )
        for stage in state.stages
        for lr in state.grid.for_stage(stage)
        for seed in range(opt.seeds)
    ]


def case_id(spec, seeds: int) -> str:
    return f"{spec.stage}-{spec.lr_id}" + (f"-seed={spec.seed}" if seeds > 1 else "")


def pytest_generate_tests(metafunc):
    if SPEC_FIXTURE not in metafunc.fixturenames:
        return
    config = metafunc.config
    if config.stash[STATE].grid is None:
        metafunc.parametrize(SPEC_FIXTURE, [None], ids=["needs-lr-grid"])
        return
    specs = case_specs(config)
    ids = [case_id(spec, config.option.seeds) for spec in specs]
    metafunc.parametrize(SPEC_FIXTURE, specs, ids=ids)


def _is_case(item) -> bool:
    return SPEC_FIXTURE in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    state = config.stash[STATE]
    cases = [item for item in items if _is_case(item)]
    for item in cases:
        item.add_marker(pytest.mark.ptibench)
    if state.grid is None and cases:
        state.deselected = len(cases)
        config.hook.pytest_deselected(items=cases)
        items[:] = [item for item in items if not _is_case(item)]
    elif cases:
        ordered = iter(worker_friendly_order(cases))
        items[:] = [next(ordered) if _is_case(item) else item for item in items]


def worker_friendly_order(cases: list) -> list:
    """Cases in the order that keeps two or more xdist workers busy.

    The first inversion case trains the whole stage-1 grid batched (minutes) and every other
    inversion case waits on that run's lock. xdist's load scheduler starts each worker on two
    consecutive items, so two inversion cases go first (the training worker's share), then the
    cases that do not wait on it (fine-tuning), then the other inversion cases, which by then
    read their embeddings from the cache. Alone, the order changes nothing.
    """

    def is_inversion(item) -> bool:
        return item.callspec.params[SPEC_FIXTURE].stage == "inversion"

    inversion = [c for c in cases if hasattr(c, "callspec") and is_inversion(c)]
    others = [c for c in cases if c not in inversion]
    return inversion[:2] + others + inversion[2:]


def pytest_collection_finish(session):
    """Remember the selected cases (after -k and deselection): the first inversion case of a
    grid trains the whole selected grid batched (see ptibench.stages.batched)."""
    state = session.config.stash.get(STATE, None)
    if state is None or state.grid is None:
        return
    state.grid_specs = [
        item.callspec.params[SPEC_FIXTURE]
        for item in session.items
        if _is_case(item) and hasattr(item, "callspec")
    ]


@pytest.hookimpl(trylast=True)
def pytest_ptibench_run_case(spec, config):
    from ptibench.runner import run_case
    from ptibench.stages.batched import group_key, pretrain

    state = config.stash[STATE]
    progress = False if state.is_worker else None
    if spec.stage == "inversion":
        # under a per-grid file lock: one worker trains the grid, the others then read its
        # trained embeddings from the cache and only evaluate their own case
        group = [s for s in state.grid_specs if s.stage == "inversion"]
        group = [s for s in group if group_key(s) == group_key(spec)]
        show = progress is None and sys.stderr.isatty()
        pretrain(group, cache_dir=state.cache_dir, progress=show)
    return run_case(spec, cache_dir=state.cache_dir, progress=progress)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None so results stay strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


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
        self.state = self.config.stash[STATE]

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
        case = _json_safe(result.to_dict())
        case["nodeid"] = self.request.node.nodeid
        case["baseline"] = {"verdict": verdict, "note": note}
        self.request.node.user_properties.append((PAYLOAD_KEY, json.dumps(case)))

    def _fail_with_error(self, result, problem: str) -> None:
        """Fail the case on a user-facing problem: one line, no traceback, no chained context."""
        self._publish(result, "error", problem)
        failure = pytest.fail.Exception(f"ptibench: error: {problem}", pytrace=False)
        failure.__suppress_context__ = True
        raise failure

    def _hint(self, spec=None) -> str:
        """The command that records baselines: this selection, or only `spec`'s stage and lr."""
        args = list(self.config.invocation_params.args)
        if spec is not None:
            args = [*without_options(args), "--lr-grid", spec.lr_id[3:], "--stage", spec.stage]
        args = [a for a in args if a != "--update-baselines"]
        return "pytest " + shlex.join([*args, "--update-baselines"])

    def check(self, result) -> None:
        """Pass, fail with the comparison table, or (with --update-baselines) record it."""
        spec = result.spec
        label = f"{spec.stage} {spec.lr_id} seed {spec.seed}"
        if self.config.option.update_baselines:
            try:
                path = baselines.update(
                    self.state.baseline_dir, result, recorded_context(self.config, result)
                )
            except (PtibenchError, OSError) as error:
                self._fail_with_error(result, f"cannot update the baseline: {error}")
            self._publish(result, "updated", str(path))
            return
        try:
            found = baselines.lookup(self.state.baseline_dir, spec)
        except PtibenchError as error:
            self._fail_with_error(result, str(error))
        if found.entry is None:
            self._publish(result, "missing", found.reason)
            pytest.fail(
                f"no baseline for {label}: {found.reason}\ncreate it with: {self._hint()}",
                pytrace=False,
            )
        comparison = baselines.compare(found.entry, result)
        note = comparison.status_note
        if comparison.improved:
            note = f"better than the baseline: {', '.join(comparison.improved)}"
        self._publish(result, "passed" if comparison.passed else "failed", note)
        if not comparison.passed:
            table = baselines.format_rows(comparison.rows) if comparison.rows else ""
            changed = baselines.what_changed(
                found.entry.get("recorded", {}), recorded_context(self.config, result)
            )
            pytest.fail(
                f"{label} differs from its baseline {found.path}"
                + (f": {comparison.status_note}" if comparison.status_note else "")
                + (f"\n{table}" if table else "")
                + (f"\nsince the baseline was recorded: {changed}" if changed else "")
                + f"\nif the change is intended, update it: {self._hint(spec)}",
                pytrace=False,
            )


@pytest.fixture
def ptibench(request) -> CaseRunner:
    return CaseRunner(request)


class CaseCollector:
    """Registered on the controller only: merges the cases' payloads as their reports arrive."""

    def __init__(self, config):
        self.config = config

    def pytest_runtest_logreport(self, report):
        payloads = [value for key, value in report.user_properties if key == PAYLOAD_KEY]
        if not payloads or report.when != "call":
            return
        state = self.config.stash[STATE]
        for payload in payloads:
            case = json.loads(payload)
            case["outcome"] = report.outcome
            state.cases[report.nodeid] = case
        try:
            from ptibench.report import write_results

            write_results(state.out_dir, results_document(self.config))
        except Exception as error:  # noqa: BLE001 - a report problem must not stop the benchmark
            message = str(error)  # a PtibenchError already names the file
            if not isinstance(error, PtibenchError):
                message = f"cannot write {state.out_dir / 'results.json'}: {error}"
            if message not in state.errors:
                state.errors.append(message)


def recorded_context(config, result) -> dict[str, Any]:
    """What a baseline entry records besides the numbers: versions, device, commit."""
    from ptibench.report import commit_info, versions

    env = dict(result.environment or {})
    return {
        "device": env.get("device", "cpu"),
        "dtype": env.get("dtype"),
        "threads": env.get("threads"),
        "compiled": bool(env.get("compiled", False)),
        "world_version": env.get("world_version"),
        "method_version": env.get("method_key"),
        "versions": {**versions(), **env.get("versions", {})},
        "commit": commit_info(Path(config.rootpath)),
    }


def results_document(config) -> dict[str, Any]:
    from ptibench.report import commit_info, machine_info, versions

    state = config.stash[STATE]
    if not state.context:
        state.context = {
            "machine": machine_info(),
            "commit": commit_info(Path(config.rootpath)),
            "versions": versions(),
            "invocation": list(config.invocation_params.args),
            "options": {
                "lr_grid": str(state.grid),
                "stages": list(state.stages),
                "steps": config.option.steps,
                "world": config.option.world,
                "concept": config.option.concept,
                "method": config.option.method,
                "seeds": config.option.seeds,
                "pivot_lr": config.option.pivot_lr,
                "eval_every": config.option.eval_every,
            },
        }
    return {
        "format": "ptibench-results",
        "version": 1,
        **state.context,
        "cases": sorted(state.cases.values(), key=_case_order),
        "reference": reference_values(config, list(state.cases.values())),
    }


def _case_order(case: dict[str, Any]) -> tuple:
    spec = case["spec"]
    rank = STAGES.index(spec["stage"]) if spec["stage"] in STAGES else len(STAGES)
    return (spec["world"], spec["concept"], spec["method"], rank, spec["lr"], spec["seed"])


def reference_values(config, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The default method's stored baselines beside each non-default method's cases."""
    from ptibench.spec import CaseSpec

    state = config.stash[STATE]
    reference: dict[str, Any] = {}
    for case in cases:
        spec = CaseSpec.from_dict(case["spec"])
        if spec.method == DEFAULT_METHOD:
            continue
        entry = baselines.stored_entry(state.baseline_dir, spec.with_(method=DEFAULT_METHOD))
        if entry is None:
            continue
        group = "|".join((spec.world, spec.concept, spec.method, spec.stage))
        reference.setdefault(group, {})[baselines.lr_key(spec.lr)] = {
            "status": entry["status"],
            "metrics": {name: m["value"] for name, m in entry["metrics"].items()},
        }
    return reference


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Render the reports and the summary text; a failure here is an error line and exit 1."""
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None or state.is_worker:
        return
    if state.grid is None:
        if state.deselected:
            state.summary.append(
                f"{state.deselected} benchmark test(s) deselected: pass --lr-grid to run the cases"
            )
        return
    if not state.cases:
        return
    try:
        from ptibench.report import render, summary_lines

        document = results_document(config)
        paths = render(state.out_dir, document)
        state.summary.extend(summary_lines(document))
        state.summary.append("reports: " + ", ".join(str(p) for p in paths))
    except Exception as error:  # noqa: BLE001 - reported as one line, the session still ends cleanly
        state.errors.append(f"cannot write the reports in {state.out_dir}: {error}")
    if state.errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash.get(STATE, None)
    if state is None or (not state.summary and not state.errors):
        return
    try:
        terminalreporter.write_sep("=", "ptibench")
        for line in state.summary:
            terminalreporter.write_line(line)
        for error in state.errors:
            terminalreporter.write_line(f"ptibench: error: {error}", red=True)
    except Exception as error:  # noqa: BLE001 - the summary must never turn into a traceback
        terminalreporter.write_line(f"ptibench: cannot print the summary: {error}")
