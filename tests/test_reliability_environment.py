"""A read-only or full disk under the output, baseline and cache folders: one clear line per
problem, a non-zero exit, no traceback.

The faults are real, not mocked: each run happens in a private mount namespace (`unshare -r -m`,
unprivileged) where a small tmpfs is mounted read-only, or filled to the last byte, over the
folder. Mocking `open`/`os.write` would miss the writers that bypass Python's file objects (the
safetensors writer is Rust, PIL streams through its own buffer); a kernel ENOSPC/EROFS reaches
all of them. Where mount namespaces are not allowed (some CI sandboxes) the tests are skipped;
the refusal paths below them are also covered by test_core_cache (read-only folder, a file in
the way) and test_plugin_options (--ptibench-out under a file).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_plugin_support import BENCHMARK_TEST, make_project, plugin_args, subprocess_pythonpath

from ptibench.models.random_weights import write_random_world

pytest_plugins = ["pytester"]


@functools.cache
def can_mount() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && touch $d/x"
    done = subprocess.run(["unshare", "-r", "-m", "sh", "-c", probe], capture_output=True)
    return done.returncode == 0


needs_mounts = pytest.mark.skipif(
    not can_mount(), reason="no unprivileged mount namespaces here (unshare -r -m)"
)


def run_with_mounts(
    pytester: pytest.Pytester, read_only: list[str], full: list[str], *args: str
) -> subprocess.CompletedProcess:
    """`pytest *args` in the pytester folder, with tmpfs mounted read-only over `read_only`
    and full over `full` (folders relative to it), in a private mount namespace."""
    lines = ["set -e"]
    for folder in read_only:
        lines.append(f"mkdir -p {folder} && mount -t tmpfs -o ro,size=64k tmpfs {folder}")
    for folder in full:
        lines += [
            f"mkdir -p {folder} && mount -t tmpfs -o size=64k tmpfs {folder}",
            f"dd if=/dev/zero of={folder}/.filler bs=4k 2>/dev/null || true",
            f"touch {folder}/.probe 2>/dev/null && rm -f {folder}/.probe",
        ]
    command = [sys.executable, "-m", "pytest", *plugin_args(), "-p", "no:cacheprovider", *args]
    lines.append("exec " + shlex.join(command))
    return subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", "\n".join(lines)],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _check_one_line_each(done: subprocess.CompletedProcess) -> str:
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "During handling" not in output, output
    return output


@needs_mounts
def test_read_only_output_folder_is_a_usage_error(pytester, monkeypatch):
    subprocess_pythonpath(monkeypatch)
    make_project(pytester)
    done = run_with_mounts(pytester, ["out"], [], "--lr-grid", "1e-2", "--ptibench-out", "out")
    output = _check_one_line_each(done)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR: --ptibench-out: cannot write in {pytester.path / 'out'}: Read-only file system"
    ]


@needs_mounts
def test_full_output_disk_and_read_only_baselines_are_one_line_each(pytester, monkeypatch):
    subprocess_pythonpath(monkeypatch)
    make_project(pytester)
    done = run_with_mounts(
        pytester,
        ["baselines"],
        ["out"],
        *("--lr-grid", "1e-2", "--stage", "inversion", "--update-baselines"),
        *("--ptibench-out", "out", "--ptibench-baselines", "baselines"),
    )
    output = _check_one_line_each(done)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, output
    folder = str(pytester.path / "baselines")
    refused = [
        line
        for line in output.splitlines()
        if line.startswith("ptibench: error: cannot update the baseline: ")
    ]
    assert refused, output
    assert all(folder in line and "Read-only file system" in line for line in refused), output
    results = pytester.path / "out" / "results.json"
    assert f"ptibench: error: cannot write {results}: No space left on device" in output


@needs_mounts
def test_full_cache_disk_fails_the_case_with_one_line(pytester, monkeypatch, tmp_path_factory):
    """The real core writing its cache entry (embedding via safetensors, sample grid via PIL,
    result.json) onto a full disk."""
    world = write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")
    subprocess_pythonpath(monkeypatch)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)
    done = run_with_mounts(
        pytester,
        [],
        ["cache"],
        *("--world", world.name, "--lr-grid", "1e-2", "--stage", "inversion"),
        *("--steps", "2", "--samples-per-prompt", "1", "--sample-steps", "2"),
        *("--ptibench-cache", "cache", "--update-baselines"),
    )
    output = _check_one_line_each(done)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, output
    failures = [line for line in output.splitlines() if "ptibench: error:" in line]
    assert failures and all("No space left on device" in line for line in failures), output
    assert str(pytester.path / "cache") in failures[0]
    assert os.path.isdir(Path(pytester.path / "cache")) and not list(
        (pytester.path / "cache").glob("*/result.json")
    )
