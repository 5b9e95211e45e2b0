"""Installable as a dependency: the wheel carries the tiny world, its concepts, the concept schema
and the lr-grid cases, so a project outside this repository runs
`pytest --pyargs ptibench.benchmark --lr-grid ...` with nothing else than `pip install ptibench`.

The test builds the wheel from a copy of the sources (pip wheel --no-deps, no network, about 42
MB), installs it into a fresh venv outside the repository whose only link to this environment
is a .pth line to its site-packages (torch and the other dependencies, not ptibench), and runs a
2-step case from an empty project folder: about 30 s on two cores, most of it importing torch.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of this checkout, built offline from a copy (the checkout stays clean)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail("setuptools is needed to build the wheel offline (the dev extra installs it)")
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "src" / "ptibench",
        source / "src" / "ptibench",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--quiet",
        "-w",
        dist,
        source,
    )
    shutil.rmtree(source)
    (wheel,) = dist.glob("ptibench-*.whl")
    return wheel


def fresh_venv(tmp_path: Path) -> Path:
    """A venv that sees this environment's dependencies (a .pth line to its site-packages; the
    .pth files there, such as an editable ptibench, are not read) but no ptibench."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    asked = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    purelib = Path(asked.stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "ptibench-test-dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


def test_the_wheel_carries_the_world_and_runs_a_case_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "ptibench/fixtures/tiny-world/pipeline/unet/diffusion_pytorch_model.safetensors",
        "ptibench/fixtures/tiny-world/clip/open_clip_model.pt",
        "ptibench/fixtures/concepts/yellow-ring/concept.json",
        "ptibench/concept.schema.json",
        "ptibench/benchmark/test_lr_grid.py",
    ):
        assert needed in names, needed

    python = fresh_venv(tmp_path)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--quiet",
        wheel,
    )
    project = tmp_path / "my-project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PTIBENCH_FIXTURES")}
    env["OMP_NUM_THREADS"] = "1"
    where = _run(
        python,
        "-c",
        "import ptibench.assets as a; print(a.__file__); print(a.tiny_world_path())",
        cwd=project,
        env=env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where), where

    ran = _run(
        python,
        "-m",
        "pytest",
        "--pyargs",
        "ptibench.benchmark",
        "-p",
        "no:cacheprovider",
        "--lr-grid",
        "1e-2",
        "--stage",
        "inversion",
        "--steps",
        "2",
        "--samples-per-prompt",
        "1",
        "--sample-steps",
        "1",
        "--update-baselines",
        cwd=project,
        env=env,
    )
    assert "1 passed" in ran.stdout
    assert (project / "ptibench-out" / "report.html").is_file()
    recorded = project / "baselines" / "tiny-world" / "yellow-ring" / "pti" / "inversion.json"
    assert recorded.is_file()
    shutil.rmtree(tmp_path / "venv")
    wheel.unlink()
