"""Faults: training that explodes, a worker killed mid-case, Ctrl-C, a kill in the middle of a
write, no network. The real core on a random-weight world of the tiny world's shape, tiny
settings (5 steps, 1 sample per prompt, 2 sampler steps), so it is the mechanics that are tested.

Fault injection: the test project's conftest implements `pytest_ptibench_run_case`, returns None
(so the plugin's own implementation runs the real `run_case`) and, for the lr named in
RELIABILITY_FAULT, swaps `ResultCache.store` for a function that sends the process SIGKILL or
SIGINT (Ctrl-C): the case has trained and written its staging folder but not published it, the
worst moment to die. The Ctrl-C run is inline (a pytest session inside this one, which ends it
with exit 2 on the KeyboardInterrupt), so it costs no process start.

A sitecustomize on the subprocesses' PYTHONPATH refuses and logs every internet socket
connection and name lookup, with the Hugging Face offline switches unset, so the `-n 2` run
proves that ptibench itself keeps off the network. With RELIABILITY_NET_LOOPBACK=1 it lets
through connections to 127.0.0.0/8 (and lookups of such addresses) and nothing else: a local
Ray cluster talks to itself over loopback (tests/test_ray_executor.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_plugin_support import (
    BENCHMARK_TEST,
    make_project,
    plugin_args,
    run,
    subprocess_pythonpath,
)
from test_reliability_inputs import odd_images

from ptibench.assets import concepts_root
from ptibench.results.tradeoff import build_tables

pytest_plugins = ["pytester"]

SRC = Path(__file__).resolve().parents[1] / "src"
HUB_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

FAULT_CONFTEST = """
import os
import signal
import time

import pytest

from ptibench.run import cache


@pytest.hookimpl(tryfirst=True)
def pytest_ptibench_run_case(spec, config):
    fault = os.environ.get("RELIABILITY_FAULT", "")
    if not fault or spec.lr != float(fault.split("@")[1]):
        return None
    store = cache.ResultCache.store

    def die_before_publishing(self, entry, result, staging):
        cache.ResultCache.store = store
        if fault.startswith("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
            time.sleep(5)  # (its handler raises KeyboardInterrupt here, in the main thread)
        raise KeyboardInterrupt  # what that handler does, where a runner ignores SIGINT

    cache.ResultCache.store = die_before_publishing
    return None
"""

NO_NETWORK = """
import ipaddress
import os
import socket

_LOG = os.environ.get("RELIABILITY_NET_LOG")
_LOOPBACK = os.environ.get(LOOPBACK_SWITCH) == "1"
if _LOG:
    def _refuse(what, detail):
        with open(_LOG, "a") as log:
            log.write(f"{os.getpid()} {what} {detail!r}\\n")
        raise OSError(101, "Network is unreachable (refused by the reliability test)")

    def _allowed(host):
        if not _LOOPBACK:
            return False
        try:
            ip = ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            return False
        return (getattr(ip, "ipv4_mapped", None) or ip) in ipaddress.ip_network("127.0.0.0/8")

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _allowed(address[0]):
            _refuse("connect", address)
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _allowed(address[0]):
            _refuse("connect_ex", address)
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _allowed(host):
            _refuse("getaddrinfo", host)
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo
""".replace("LOOPBACK_SWITCH", repr("RELIABILITY_NET_LOOPBACK"))


@pytest.fixture
def offline(pytester, monkeypatch, tmp_path):
    """Subprocesses import ptibench from src/, cannot reach the network and log any attempt."""
    subprocess_pythonpath(monkeypatch)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ["PYTHONPATH"]]))
    log = tmp_path / "network-attempts.log"
    monkeypatch.setenv("RELIABILITY_NET_LOG", str(log))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in HUB_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)
    return log


@pytest.fixture
def one_thread():
    """Inline runs use this process's torch: one thread, like the subprocesses' workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_network_guard_works(offline):
    probe = "import socket\ntry:\n    socket.create_connection(('huggingface.co', 443), 1)\n"
    probe += "except OSError as error:\n    print(error)\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "refused by the reliability test" in done.stdout, done.stderr
    assert "getaddrinfo 'huggingface.co'" in offline.read_text()


def _cases(folder: Path) -> dict[str, dict]:
    document = json.loads((folder / "results.json").read_text())
    return {case["spec"]["lr"]: case for case in document["cases"]}


GRID = "1e-3,1e-2,1e2,1e4"


def test_divergence_killed_worker_and_serial_vs_parallel(pytester, world, offline, one_thread):
    """One grid, three runs: serial (fresh cache) records baselines; `-n 2` (fresh cache, no
    network) loses a worker to SIGKILL mid-case; a serial rerun on that cache finishes only the
    missing case. Diverged lrs are results at their step, shown, and left out of the knee."""
    concept = pytester.path / "odd-concept"
    shutil.copytree(concepts_root() / "yellow-ring", concept)
    notes = odd_images(concept, json.loads((concept / "concept.json").read_text()))
    common = [
        *("--world", world.name, "--concept", str(concept), "--lr-grid", GRID),
        *("--stage", "inversion", "--steps", "5", "--samples-per-prompt", "1"),
        *("--sample-steps", "2", "--ptibench-baselines", "baselines"),
    ]

    serial = run(
        pytester, *common, "--ptibench-cache", "c1", "--ptibench-out", "serial",
        "--update-baselines",
    )  # fmt: skip
    serial.assert_outcomes(passed=4)
    cases = _cases(pytester.path / "serial")
    assert {lr: c["status"] for lr, c in cases.items()} == {
        1e-3: "ok",
        1e-2: "ok",
        1e2: "diverged",
        1e4: "diverged",
    }
    for lr in (1e2, 1e4):
        assert 1 <= cases[lr]["diverged_at"] <= 5, "the explosion rule fires within 5 steps"
    text = serial.stdout.str()
    serial.stdout.fnmatch_lines(
        [
            f"*1e+02 * diverged@{cases[1e2]['diverged_at']} *",
            f"*1e+04 * diverged@{cases[1e4]['diverged_at']} *",
            "*knee: no knee (2 usable lr(s)*",
        ]
    )
    # two usable lrs are too few for a knee (as printed above); the diverged rows are in the
    # table but off the curve. With a knee to find, test_diverged_rows_never_reach_the_knee.
    (table,) = build_tables(cases.values())
    assert table.knee_lr() is None
    off_curve = {row.lr: row.gain is None for row in table.rows}
    assert off_curve == {1e-3: False, 1e-2: False, 1e2: True, 1e4: True}
    environment = cases[1e-3]["environment"]
    assert environment["seed"] == 0 and environment["device"] == "cpu"
    assert environment["dtype"] == "float32" and environment["threads"] == 1
    assert environment["git_commit"] and environment["versions"]["torch"]
    assert all(any(n in note for note in environment["notes"]) for n in notes), environment
    document = json.loads((pytester.path / "serial" / "results.json").read_text())
    assert {"id", "dirty"} <= set(document["commit"]) and document["versions"]["torch"]
    stored = next((pytester.path / "baselines").rglob("inversion.json")).read_text()
    (entry,) = json.loads(stored)["entries"]["1e-03"]["0"].values()
    recorded = entry["recorded"]
    assert {"seed", "versions", "device", "dtype", "commit"} <= set(recorded)
    assert "Traceback" not in text

    os.environ["RELIABILITY_FAULT"] = "kill@1e-2"
    try:
        parallel = run(
            pytester, *common, "--ptibench-cache", "c2", "--ptibench-out", "parallel",
            "-p", "xdist", "-n", "2", subprocess=True,
        )  # fmt: skip
    finally:
        del os.environ["RELIABILITY_FAULT"]
    parallel.assert_outcomes(passed=3, failed=1)
    parallel.stdout.fnmatch_lines(["*crashed*inversion-lr=1e-02*"])
    survived = _cases(pytester.path / "parallel")
    assert sorted(survived) == [1e-3, 1e2, 1e4], "every finished case is on disk"
    for lr, case in survived.items():
        assert case["metrics"] == cases[lr]["metrics"], f"lr {lr}: -n 2 differs from serial"
        assert case["diverged_at"] == cases[lr]["diverged_at"]
    cache = pytester.path / "c2"
    assert list((cache / ".staging").iterdir()), "the killed case left a staging folder"
    assert len([p for p in cache.iterdir() if (p / "result.json").is_file()]) == 3

    rerun = run(pytester, *common, "--ptibench-cache", "c2", "--ptibench-out", "rerun")
    rerun.assert_outcomes(passed=4)
    finished = _cases(pytester.path / "rerun")
    assert {lr: c["from_cache"] for lr, c in finished.items()} == {
        1e-3: True,
        1e-2: False,
        1e2: True,
        1e4: True,
    }, "the rerun trains only the case the kill interrupted"
    assert finished[1e-2]["metrics"] == cases[1e-2]["metrics"]
    assert not offline.exists(), offline.read_text()


def test_ctrl_c_keeps_finished_cases_and_the_rerun_finishes_the_rest(pytester, world, offline):
    common = [
        *("--world", world.name, "--lr-grid", "1e-3,1e-2", "--stage", "inversion"),
        *("--steps", "3", "--samples-per-prompt", "1", "--sample-steps", "2"),
        *("--ptibench-cache", "cache", "--update-baselines"),
    ]
    os.environ["RELIABILITY_FAULT"] = "int@1e-2"
    try:
        interrupted = pytester.runpytest(
            *plugin_args(), "-p", "no:cacheprovider", *common, "--ptibench-out", "first",
            no_reraise_ctrlc=True,  # the inner session's Ctrl-C must not end this one
        )  # fmt: skip
    finally:
        del os.environ["RELIABILITY_FAULT"]
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED
    output = interrupted.stdout.str() + interrupted.stderr.str()
    assert "KeyboardInterrupt" in output and "Traceback" not in output
    assert [c["status"] for c in _cases(pytester.path / "first").values()] == ["ok"]
    assert not list((pytester.path / "cache" / ".staging").iterdir()), "Ctrl-C cleans staging"

    rerun = run(pytester, *common, "--ptibench-out", "second")
    rerun.assert_outcomes(passed=2)
    assert {lr: c["from_cache"] for lr, c in _cases(pytester.path / "second").items()} == {
        1e-3: True,
        1e-2: False,
    }


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from ptibench.results import baselines
    from ptibench.spec import CaseResult, CaseSpec

    def stall(fd):
        open(sys.argv[2], "w").close()
        time.sleep(120)

    result = CaseResult(spec=CaseSpec(stage="inversion", lr=1e-2), status="ok",
                        metrics={"lpips": 0.25, **{f"m{i}": float(i) for i in range(20000)}})
    os.fsync = stall
    baselines.update(sys.argv[1], result, {"device": "cpu"})
    """
)


def test_a_kill_mid_write_leaves_the_previous_baseline_readable(tmp_path):
    """SIGKILL while a baseline file is being replaced (its new text written, not yet renamed):
    the old file is what is read back, and the leftover temp file is never read."""
    from ptibench.results import baselines
    from ptibench.spec import CaseResult, CaseSpec

    root = tmp_path / "baselines"
    spec = CaseSpec(stage="inversion", lr=1e-2)
    path = baselines.update(root, CaseResult(spec, "ok", {"lpips": 0.5}), {"device": "cpu"})
    before = path.read_text()
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(root), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    leftovers = [p for p in path.parent.iterdir() if p != path]
    assert leftovers and all(p.name.endswith(".tmp") for p in leftovers)
    assert leftovers[0].stat().st_size > len(before), "the new text was written, not renamed"
    assert path.read_text() == before
    assert baselines.lookup(root, spec).entry["metrics"]["lpips"]["value"] == 0.5


def test_diverged_rows_never_reach_the_knee(pytester):
    """With enough lrs for a knee (synthetic cases), adding diverged lrs changes nothing."""
    make_project(pytester)
    run(pytester, "--lr-grid", "1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1,1e2,1e4", "--stage", "inversion")
    cases = list(_cases(pytester.path / "ptibench-out").values())
    ok = [c for c in cases if c["status"] == "ok"]
    assert len(ok) == 7 and len(cases) == 9
    (with_diverged,), (without,) = build_tables(cases), build_tables(ok)
    assert with_diverged.knee_lr() == without.knee_lr() == 3e-2
