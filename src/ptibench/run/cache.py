"""The result cache: one folder per finished case, `<spec key>-<world version>-<method version>/`,
holding result.json and the case's artifacts.

A case is written into a staging folder and renamed into place when complete, so an entry
either exists whole or not at all; a crash leaves only a staging folder that nothing reads.
Artifact paths are stored relative to the entry and made absolute on load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from ptibench.errors import PtibenchError
from ptibench.io import atomic_write_json, ensure_dir, file_lock, publish_dir, read_json
from ptibench.spec import CaseResult, CaseSpec
from ptibench.training import compiling

CORE_VERSION = "2"
"""Version of the shared training/evaluation code; part of every method version in the key."""

RESULT_FILE = "result.json"


def default_cache_dir() -> Path:
    env = os.environ.get("PTIBENCH_CACHE")
    return Path(env) if env else Path.cwd() / ".ptibench-cache"


def method_version(method) -> str:
    """Short hash of the method's name and version and of the core code's version."""
    blob = f"{method.name}:{method.version}:core{CORE_VERSION}"
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Entry:
    """Where a case's result lives; `spec` is the case it was asked for (None: any)."""

    root: Path
    name: str
    spec: CaseSpec | None = field(default=None, compare=False)

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def lock_path(self) -> Path:
        return self.root / ".locks" / f"{self.name}.lock"


class ResultCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, spec: CaseSpec, world_version: str, method) -> Entry:
        """A compiled run (PTIBENCH_COMPILE) gets entries of its own: its float rounding differs,
        and near divergence a 1000-step run amplifies that into different metrics. (A world
        config's `compile = true` is already part of its world version.)"""
        name = f"{spec.key()}-{world_version}-{method_version(method)}"
        return Entry(self.root, name + ("-compiled" if compiling.enabled() else ""), spec)

    def pivot_path(self, pivot_spec: CaseSpec, world_version: str, method) -> Path:
        """Where the stage-1 embedding of `pivot_spec` is shared as a stage-2 pivot."""
        name = self.entry(pivot_spec, world_version, method).name
        return self.root / "pivots" / name / "learned_embeds.safetensors"

    def lock(self, entry: Entry):
        return file_lock(entry.lock_path)

    def load(self, entry: Entry) -> CaseResult | None:
        """The cached result, or None; an unreadable entry counts as absent (and is recomputed),
        and so does one whose stored spec is not the spec the entry was asked for (a key
        collision, or a key that leaves out a field, must never hand back another case)."""
        path = entry.path / RESULT_FILE
        if not path.is_file():
            return None
        try:
            result = CaseResult.from_dict(read_json(path))
        except (PtibenchError, KeyError, TypeError, ValueError):
            return None
        if entry.spec is not None and result.spec != entry.spec:
            return None
        artifacts = {k: str(entry.path / v) for k, v in result.artifacts.items()}
        metrics = {k: v for k, v in result.metrics.items() if v is not None}
        return replace(result, artifacts=artifacts, metrics=metrics, from_cache=True)

    def staging(self, entry: Entry) -> Path:
        return ensure_dir(self.root / ".staging" / f"{entry.name}.{uuid.uuid4().hex[:8]}")

    def store(self, entry: Entry, result: CaseResult, staging: Path) -> CaseResult:
        """Write result.json into `staging` (artifact paths relative to it) and publish it."""
        relative = {k: str(Path(v).relative_to(staging)) for k, v in result.artifacts.items()}
        atomic_write_json(staging / RESULT_FILE, replace(result, artifacts=relative).to_dict())
        if not publish_dir(staging, entry.path):
            cached = self.load(entry)
            if cached is not None:
                self.discard(staging)
                return replace(cached, from_cache=False)
            self._set_aside(entry)
            publish_dir(staging, entry.path)
        artifacts = {k: str(entry.path / v) for k, v in relative.items()}
        return replace(result, artifacts=artifacts)

    def _set_aside(self, entry: Entry) -> None:
        """Move an unreadable entry out of the way (kept for inspection, never read)."""
        trash = ensure_dir(self.root / ".broken") / f"{entry.name}.{uuid.uuid4().hex[:8]}"
        os.rename(entry.path, trash)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)
