"""The Ray executor (`--executor ray`, `RayExecutor`) on clusters of this machine: a local
cluster matches a serial run bitwise, a second run submits nothing, a killed task fails its case
with one line and a rerun finishes only that case, a node lost mid-case costs nothing but time,
the batched stage-1 grid and the stacked stage-2 grid are one task each and match a serial run,
and bad input is one line.

The real core on the random-weight world of the tiny world's shape, tiny settings (3 steps, 1
sample per prompt, 2 sampler steps). Faults come from `pti-flaky` (tests/ray_doubles.py), which
Ray's workers import from this folder. The clusters listen on loopback only (LOOPBACK_ENV, set
before Ray is imported here) and the network guard of test_reliability_faults runs in their
processes, letting through nothing outside 127.0.0.0/8.

The tests that start a cluster are skipped where Ray is not installed (CI installs it: the ray
extra); the others run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from ray_doubles import FAULT_FILE, Flaky
from test_plugin_support import BENCHMARK_TEST, make_project, run, subprocess_pythonpath
from test_reliability_faults import (
    HUB_SWITCHES,
    NO_NETWORK,
    one_thread,  # noqa: F401 - a fixture, used by name
)

from ptibench.errors import PtibenchError
from ptibench.run.cache import ResultCache
from ptibench.run.ray_executor import LOOPBACK_ENV, RayExecutor, import_ray, plan_work, task_request
from ptibench.run.runner import run_cases
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.batched import BATCH_GRID_ENV
from ptibench.training.methods import register_method

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
QUICK = EvalConfig(samples_per_prompt=1, sample_steps=2)
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (ptibench[ray])"
)

# Ray reads these when it is imported: its clusters in this process listen on 127.0.0.1 only
os.environ.setdefault(LOOPBACK_ENV, "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if importlib.util.find_spec("ray") is not None:
    # imported before pytester snapshots sys.modules: a test's inline session would otherwise
    # import Ray's C extensions anew, which crashes the process (see test_plugin_support)
    import ray.cluster_utils  # noqa: F401

register_method(Flaky)


@pytest.fixture
def guarded(monkeypatch, tmp_path):
    """Ray's processes (and pytest subprocesses) import ptibench from src/ and the doubles from
    tests/, and may connect to 127.0.0.0/8 and nowhere else: every other attempt is refused
    and logged (the log's path is returned). Ray's dashboard probes cloud metadata addresses
    when it starts; a dead proxy on loopback keeps those requests on 127.0.0.1 too."""
    subprocess_pythonpath(monkeypatch)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    paths = [str(site), str(TESTS), os.environ["PYTHONPATH"]]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    log = tmp_path / "network-attempts.log"
    monkeypatch.setenv("RELIABILITY_NET_LOG", str(log))
    monkeypatch.setenv("RELIABILITY_NET_LOOPBACK", "1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in (*HUB_SWITCHES, "NO_PROXY", "no_proxy", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(FAULT_FILE, str(tmp_path / "fault"))
    return log


@pytest.fixture
def loopback_only(pytester, guarded):
    """`guarded`, and a benchmark project that knows `pti-flaky`."""
    pytester.makeconftest(
        "from ray_doubles import Flaky\n"
        "from ptibench.training.methods import register_method\n"
        "register_method(Flaky)\n"
    )
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)
    return guarded


def cases(folder: Path) -> dict[tuple, dict]:
    document = json.loads((folder / "results.json").read_text())
    return {(c["spec"]["stage"], c["spec"]["lr"]): c for c in document["cases"]}


def same_numbers(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key, case in left.items():
        other = right[key]
        assert (case["status"], case["diverged_at"]) == (other["status"], other["diverged_at"])
        assert case["metrics"] == other["metrics"], f"{key}: metrics differ"
        assert case["records"] == other["records"], f"{key}: per-sample readings differ"


def grid_args(world, *stages: str, method: str = "pti-flaky") -> list[str]:
    return [
        *("--world", world.name, "--method", method, "--lr-grid", "1e-3,1e-2"),
        *("--stage", ",".join(stages), "--steps", "3"),
        *("--samples-per-prompt", "1", "--sample-steps", "2"),
    ]


@needs_ray
@pytest.mark.usefixtures("one_thread")
def test_a_local_cluster_matches_a_serial_run_and_a_rerun_submits_nothing(
    pytester, world, loopback_only
):
    common = grid_args(world, "inversion", "finetune", method="pti")
    serial = run(pytester, *common, "--ptibench-cache", "serial-cache", "--ptibench-out", "serial")
    serial.assert_outcomes(passed=4)

    on_ray = [*common, "--ptibench-cache", "ray-cache", "--executor", "ray", "--ray-address"]
    started = time.monotonic()
    first = run(pytester, *on_ray, "local", "--ptibench-out", "ray", subprocess=True)
    first_s = time.monotonic() - started
    first.assert_outcomes(passed=4)
    for line in (
        "*ray: 7 tasks submitted to a local cluster (2 group runs, 1 pivot, 4 cases), "
        "0 cases from the cache*",
        "*[[]ray] done  stage-1 grid of 2 lrs on *",
        "*[[]ray] done  stage-2 stack of 2 lrs on *",
        "*[[]ray] done  finetune lr=1e-02 seed 0 on * (* cases done, *",
    ):
        first.stdout.fnmatch_lines([line])  # each on its own: tasks finish in any order
    same_numbers(cases(pytester.path / "serial"), cases(pytester.path / "ray"))
    table = (pytester.path / "serial" / "tradeoff.md").read_text()
    assert (pytester.path / "ray" / "tradeoff.md").read_text() == table
    ray_cache = pytester.path / "ray-cache"
    assert not list((ray_cache / "trained").glob("*")), "the grid's slots went with their cases"
    assert all(c["environment"]["ray"]["node"] for c in cases(pytester.path / "ray").values())

    started = time.monotonic()
    again = run(pytester, *on_ray, "local", "--ptibench-out", "again", subprocess=True)
    again_s = time.monotonic() - started
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines(["*ray: 0 tasks submitted, 4 cases from the cache, 0 failed*"])
    assert all(c["from_cache"] for c in cases(pytester.path / "again").values())
    assert (pytester.path / "again" / "tradeoff.md").read_text() == table
    assert not loopback_only.exists(), loopback_only.read_text()
    print(f"local cluster: first run {first_s:.0f}s, rerun {again_s:.0f}s")


@needs_ray
def test_a_killed_task_fails_its_case_in_one_line_and_a_rerun_finishes_only_it(
    pytester, world, loopback_only
):
    common = [
        *grid_args(world, "finetune"),
        *("--ptibench-cache", "cache", "--executor", "ray", "--ray-address", "local"),
    ]
    fault = Path(os.environ[FAULT_FILE])
    fault.write_text("kill@1e-2")
    killed = run(
        pytester, *common, "--ray-retries", "0", "--ptibench-out", "first", subprocess=True
    )
    killed.assert_outcomes(passed=1, failed=1)
    output = killed.stdout.str() + killed.stderr.str()
    lines = [line for line in output.splitlines() if line.startswith("ptibench: error:")]
    assert lines == [
        "ptibench: error: finetune lr=1e-02 seed 0 (pti-flaky) failed on the Ray cluster: "
        "its worker process died (killed, or out of memory), and retries are off "
        "(WorkerCrashedError; retries: 0)"
    ], output
    assert "Traceback" not in output
    assert [key for key in cases(pytester.path / "first")] == [("finetune", 1e-3)]

    fault.unlink()
    rerun = run(pytester, *common, "--ptibench-out", "second", subprocess=True)
    rerun.assert_outcomes(passed=2)
    rerun.stdout.fnmatch_lines(
        ["*ray: 1 task submitted to a local cluster (1 case), 1 case from the cache*"]
    )
    finished = cases(pytester.path / "second")
    assert {key: c["from_cache"] for key, c in finished.items()} == {
        ("finetune", 1e-3): True,
        ("finetune", 1e-2): False,
    }, "the rerun trains only the killed case (its pivot came from the cache)"
    assert not loopback_only.exists(), loopback_only.read_text()


def _entries(cache: Path) -> dict[float, Path]:
    found = {}
    for path in cache.glob("*/result.json") if cache.is_dir() else ():
        found[json.loads(path.read_text())["spec"]["lr"]] = path.parent
    return found


PYTEST_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'pytest'; runpy.run_module('pytest', run_name='__main__', alter_sys=True)"
)
"""pytest, with Python's Ctrl-C handler whatever the test runner left: a process started as a
background job of a non-interactive shell (a CI script's `&`) inherits SIGINT ignored, and a
Python started so never raises KeyboardInterrupt."""


def _stop_mid_grid(pytester, common: list[str], how: signal.Signals) -> tuple[int, str]:
    """Start a session whose first case stalls; once the second case is in the cache (before
    its test item runs: results are imported as they arrive), send `how`."""
    fault = Path(os.environ[FAULT_FILE])
    fault.write_text("stall@1e-3")
    args = [sys.executable, "-c", PYTEST_WITH_CTRL_C, "-p", "no:cacheprovider", *common]
    session = pytester.popen([*args, "--ptibench-out", "first"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        cache = pytester.path / "cache"
        while not (1e-2 in _entries(cache) and fault.read_text().startswith("stalled")):
            assert session.poll() is None and time.monotonic() < deadline, "no case arrived"
            time.sleep(0.2)
        assert list(_entries(cache)) == [1e-2], "the second case is in, the first still runs"
        session.send_signal(how)
        try:
            out, err = session.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            session.kill()
            out, err = session.communicate()
            raise AssertionError(
                f"the session did not stop within 120 s of {how.name}:\n"
                + (out.decode() + err.decode())[-3000:]
            ) from None
    finally:
        if session.poll() is None:
            session.kill()
    output = out.decode() + err.decode()
    assert list(_entries(cache)) == [1e-2], output[-3000:]
    return session.returncode, output


@needs_ray
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the stalled case holds one CPU")
def test_ctrl_c_keeps_what_arrived_and_a_rerun_computes_only_the_rest(
    pytester, world, loopback_only
):
    """Ctrl-C stops the session and its local cluster; the case that had arrived stays in the
    cache and the rerun computes only the stalled one."""
    common = [
        *grid_args(world, "finetune"),
        *("--ptibench-cache", "cache", "--executor", "ray", "--ray-address", "local"),
    ]
    status, output = _stop_mid_grid(pytester, common, signal.SIGINT)
    assert status == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output and "Traceback" not in output

    rerun = run(pytester, *common, "--ptibench-out", "second", subprocess=True)
    rerun.assert_outcomes(passed=2)
    rerun.stdout.fnmatch_lines(["*ray: 1 task submitted to a local cluster (1 case), 1 case*"])
    finished = cases(pytester.path / "second")
    assert {key: c["from_cache"] for key, c in finished.items()} == {
        ("finetune", 1e-3): False,
        ("finetune", 1e-2): True,
    }
    assert not loopback_only.exists(), loopback_only.read_text()


@needs_ray
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the stalled case holds one CPU")
def test_sigterm_ends_the_session_with_its_reports_and_one_line_per_missing_case(
    pytester, world, loopback_only
):
    """SIGTERM (what Slurm sends at a time limit): the stalled case fails with one line, the
    one that arrived passes, the reports are written and the exit status is 1, not an abort."""
    common = [
        *grid_args(world, "finetune"),
        *("--ptibench-cache", "cache", "--executor", "ray", "--ray-address", "local"),
    ]
    status, output = _stop_mid_grid(pytester, common, signal.SIGTERM)
    assert status == pytest.ExitCode.TESTS_FAILED, output
    lines = [line for line in output.splitlines() if line.startswith("ptibench: error:")]
    assert lines == [
        "ptibench: error: finetune lr=1e-03 seed 0 (pti-flaky): the controller was terminated "
        "before it arrived; rerun to resume from the cache"
    ], output
    assert "Traceback" not in output
    assert list(cases(pytester.path / "first")) == [("finetune", 1e-2)]
    assert (pytester.path / "first" / "tradeoff.md").is_file()


def _remove_the_stalled_node(cluster, fault: Path, removed: list[str]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not removed:
        text = fault.read_text() if fault.is_file() else ""
        if text.startswith("stalled "):
            node_id = text.split()[1]
            for node in list(cluster.worker_nodes):
                if node.node_id == node_id:
                    cluster.remove_node(node, allow_graceful=False)
                    removed.append(node_id)
        time.sleep(0.2)


@needs_ray
@pytest.mark.usefixtures("one_thread")
def test_a_node_lost_mid_case_is_retried_elsewhere_with_one_cache_entry(
    pytester, world, loopback_only
):
    """A head and two one-CPU nodes (ray.cluster_utils, in this process); the controller, a
    pytest subprocess, joins it by HOST:PORT. The node running finetune lr=1e-2 is removed
    while the case trains: Ray reruns the task on the other node and the session passes with
    the serial run's table and one cache entry for the case."""
    from ray.cluster_utils import Cluster

    common = grid_args(world, "finetune")
    serial = run(pytester, *common, "--ptibench-cache", "serial-cache", "--ptibench-out", "serial")
    serial.assert_outcomes(passed=2)

    fault = Path(os.environ[FAULT_FILE])
    fault.write_text("stall@1e-2")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    removed: list[str] = []
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        assert cluster.address.startswith("127.0.0.1:"), cluster.address
        remover = threading.Thread(
            target=_remove_the_stalled_node, args=(cluster, fault, removed), daemon=True
        )
        remover.start()
        started = time.monotonic()
        result = run(
            pytester, *common, "--ptibench-cache", "ray-cache", "--ptibench-out", "ray",
            "--executor", "ray", "--ray-address", cluster.address, subprocess=True,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        remover.join(timeout=5)
    finally:
        cluster.shutdown()
    assert removed, "the stalled case's node was never removed"
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ray: 3 tasks submitted to the cluster at 127.0.0.1:*0 failed*"])
    same_numbers(cases(pytester.path / "serial"), cases(pytester.path / "ray"))
    table = (pytester.path / "serial" / "tradeoff.md").read_text()
    assert (pytester.path / "ray" / "tradeoff.md").read_text() == table
    retried = cases(pytester.path / "ray")[("finetune", 1e-2)]
    assert retried["environment"]["ray"]["node"] != removed[0], "it finished on the other node"
    cache = pytester.path / "ray-cache"
    entries = [
        path
        for path in cache.iterdir()
        if (path / "result.json").is_file()
        and json.loads((path / "result.json").read_text())["spec"]["lr"] == 1e-2
    ]
    assert len(entries) == 1
    assert not list((cache / ".staging").glob("*")), "nothing staged by the lost attempt"
    assert not loopback_only.exists(), loopback_only.read_text()
    print(f"three-node cluster with a node lost: {elapsed:.0f}s")


@pytest.fixture
def local_ray(guarded):
    """A local cluster of 2 CPUs in this process (the executors find it connected and leave it
    running); its workers import the doubles and see the fault file."""
    ray = import_ray(loopback=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield Path(os.environ[FAULT_FILE])
    finally:
        ray.shutdown()
    assert not guarded.exists(), guarded.read_text()


@needs_ray
@pytest.mark.usefixtures("one_thread")
def test_python_api_the_batched_grid_is_one_task_and_a_raising_case_fails_alone(
    world, local_ray, tmp_path, monkeypatch
):
    first = CaseSpec(stage="inversion", lr=1e-2, world=world.name, method="pti-flaky", steps=4)
    inversion = [first.with_(lr=lr, eval=QUICK) for lr in (1e-2, 1e-1, 1e3)]  # 1e3 diverges
    finetune = inversion[0].with_(stage="finetune", lr=1e-3, steps=3)
    specs = [*inversion, finetune]
    local_ray.write_text("raise@1e-3")
    executor = RayExecutor()
    with pytest.raises(PtibenchError) as failed:
        run_cases(specs, cache_dir=tmp_path / "cache", executor=executor)
    assert str(failed.value) == (
        "finetune lr=1e-03 seed 0 (pti-flaky) failed on the Ray cluster: "
        "RuntimeError: injected failure at lr 1e-3"
    )
    assert executor.submitted == {"grid": 1, "pivot": 1, "case": 4}
    (grid,) = [unit for unit in executor.plan.units if unit.kind == "grid"]
    assert grid.specs == tuple(inversion), "the three stage-1 lrs train as one task"

    local_ray.unlink()
    rerun = RayExecutor()
    results = run_cases(specs, cache_dir=tmp_path / "cache", executor=rerun)
    assert rerun.submitted == {"case": 1}
    assert [r.from_cache for r in results] == [True, True, True, False]

    monkeypatch.setenv(BATCH_GRID_ENV, "0")
    alone = run_cases(inversion, cache_dir=tmp_path / "unbatched", progress=False)
    for together, single in zip(results[:3], alone, strict=True):
        assert (together.status, together.diverged_at) == (single.status, single.diverged_at)
        assert together.metrics.keys() == single.metrics.keys()
        for name, value in single.metrics.items():
            assert together.metrics[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name


@pytest.mark.usefixtures("one_thread")
def test_the_plan_submits_only_what_the_cache_lacks(world, tmp_path):
    """No Ray needed: cached cases are not planned, the uncached stage-1 lrs of a grid are one
    task, a stage-2 case depends on its pivot's task or is handed the cached pivot."""
    spec = CaseSpec(stage="inversion", lr=1e-2, world=world.name, steps=3, eval=QUICK)
    tuned = spec.with_(stage="finetune", lr=1e-3)
    cache = ResultCache(tmp_path)
    run_cases([spec, tuned], cache_dir=tmp_path, progress=False)
    assert plan_work([spec, tuned], cache).units == []

    more = [spec.with_(lr=1e-1), spec.with_(lr=1.0), tuned.with_(lr=1e-2)]
    other_pivot = tuned.with_(pivot_lr=1e-1)
    plan = plan_work([spec, tuned, *more, other_pivot, spec.with_(steps=0)], cache)
    assert set(plan.cached) == {spec, tuned}
    assert list(plan.failed.values()) == ["steps must be a positive integer, got 0"]
    kinds = [(unit.kind, unit.specs) for unit in plan.units]
    assert kinds[:2] == [("pivot", (other_pivot,)), ("grid", (more[0], more[1]))]
    by_spec = {unit.specs[0]: unit for unit in plan.units if unit.kind == "case"}
    assert set(by_spec) == {*more, other_pivot}
    assert by_spec[more[0]].needs == by_spec[more[1]].needs == (plan.units[1].key,)
    assert by_spec[other_pivot].needs == (plan.units[0].key,)
    handed = by_spec[more[2]]
    assert not handed.needs and handed.given
    assert all(name.startswith("pivots/") for name in handed.given), "the cached pivot"


def test_tasks_ask_for_a_gpu_only_where_there_is_one_to_use(world):
    cpu_box, gpu_box = [{"CPU": 8.0}], [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 4.0}]
    auto = replace(world, device=None)
    assert task_request(auto, gpu_box, 1, "here") == {"num_cpus": 1, "num_gpus": 1}
    assert task_request(auto, cpu_box, 2, "here") == {"num_cpus": 2}
    assert task_request(world, gpu_box, 1, "here") == {"num_cpus": 1}, "a CPU world stays on CPU"
    cuda = replace(world, device="cuda:0")
    with pytest.raises(PtibenchError, match="runs on CUDA but here has no GPU"):
        task_request(cuda, cpu_box, 1, "here")
    with pytest.raises(PtibenchError, match="no node of here has 16 CPU"):
        task_request(auto, cpu_box, 16, "here")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--executor", "ray", "-n", "2"], "ERROR: --executor ray runs the cases as tasks"),
        (["--ray-address", "local"], "ERROR: --ray-address needs --executor ray"),
        (["--ray-retries", "1"], "ERROR: --ray-retries needs --executor ray"),
        (["--executor", "ray", "--ray-retries", "-1"], "error: argument --ray-retries: expected"),
        (["--executor", "dask"], "error: argument --executor: invalid choice: 'dask'"),
    ],
)
def test_executor_usage_errors_are_one_line(pytester, args, named):
    make_project(pytester)
    result = run(pytester, "--lr-grid", "quick", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "error:" in line or "ERROR: --" in line]
    assert len(errors) == 1 and named in errors[0], result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_without_ray_one_line_says_how_to_install_it(pytester, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    make_project(pytester)
    result = run(pytester, "--lr-grid", "quick", "--executor", "ray")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        "ERROR: the Ray executor needs Ray, which is not installed here: "
        "pip install 'ptibench[ray]'"
    )
    with pytest.raises(PtibenchError, match=r"pip install 'ptibench\[ray\]'"):
        run_cases([CaseSpec(stage="inversion", lr=1e-3)], executor=RayExecutor(address="local"))
    plain = run(pytester, "--executor", "ray")  # no --lr-grid: nothing to run, Ray not needed
    assert plain.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@needs_ray
def test_an_address_that_does_not_answer_is_one_line(pytester, monkeypatch):
    make_project(pytester)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = run(
        pytester, "--lr-grid", "quick", "--executor", "ray", "--ray-address", "127.0.0.1:1"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0].startswith(
        "ERROR: cannot reach the Ray cluster at 127.0.0.1:1: "
    ), result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    with pytest.raises(PtibenchError, match="Ray retries must be an integer >= 0"):
        RayExecutor(retries=-1)


def test_ray_is_imported_only_when_asked_for():
    probe = (
        "import sys, ptibench.harness.plugin, ptibench.run.ray_executor\n"
        "print('ray' in sys.modules)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "False", done.stderr
