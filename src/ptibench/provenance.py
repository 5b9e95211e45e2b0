"""Where a result came from: installed package versions, the machine, the git commit.

Read from package metadata and git, nothing imported: safe to call anywhere, cheap to repeat.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "ptibench",
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "open_clip_torch",
    "lpips",
    "numpy",
    "pytest",
)


def versions() -> dict[str, str | None]:
    """Installed versions of what changes the numbers (read from metadata, nothing imported)."""
    return {"python": platform.python_version(), **{name: version_of(name) for name in PACKAGES}}


def machine_info() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


@functools.cache
def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name with its family/model numbers where Linux tells them (two CPUs of
    one marketing name can differ), else platform.processor(): a CPU float32 run reproduces a
    chaotic lr's numbers only on the CPU kind that recorded them."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if not line.strip():
                break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def commit_info(root: Path) -> dict[str, Any]:
    """{id, dirty, branch} of the git checkout at `root`; None values outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "id": commit,
        "dirty": None if status is None else bool(status),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def version_of(package: str) -> str | None:
    """The installed version of `package`, None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def package_commit() -> str | None:
    """The git commit of the checkout ptibench itself runs from (None when installed from a
    wheel): what a result's environment records."""
    return commit_info(Path(__file__).resolve().parent)["id"]


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> str:
    """sha256 over the files under `root` (relative path and content; compiled bytecode left
    out), less the top-level folders named in `skip`: the identity of a folder's content."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (
            not path.is_file()
            or relative.parts[0] in skip
            or "__pycache__" in relative.parts
            or path.suffix in (".pyc", ".pyo")
        ):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def source_digest(root: Path, skip: tuple[str, ...] = ()) -> str:
    """tree_digest of a source tree, computed once per process (code does not change under a
    running process, and the cache key asks for it often)."""
    return tree_digest(root, skip)
