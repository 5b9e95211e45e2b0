"""The result cache: one folder per finished case,
`<case key>-<world version>-<method version>-<code version>/`, holding result.json and the
case's artifacts.

The key covers what produces the numbers, so a warm cache cannot replay numbers that today's
code would not compute: the spec (every setting) with the content of the concept folder it
names (`case_key`), the world's settings and files (its device and dtype among them), the
method's name and version, and the code version: a hash of ptibench's own computing code and of
the versions of the libraries that compute (`code_version`). An entry made by other code is
never read again; `ptibench cache prune` removes it.

A case is written into a staging folder and renamed into place when complete, so an entry
either exists whole or not at all; a crash leaves only a staging folder that nothing reads.
Artifact paths are stored relative to the entry and made absolute on load.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from ptibench.case_options import sample_dtype
from ptibench.concept import concept_folder
from ptibench.errors import PtibenchError
from ptibench.io import atomic_write_json, ensure_dir, file_lock, publish_dir, read_json
from ptibench.provenance import source_digest, tree_digest, version_of
from ptibench.spec import CaseResult, CaseSpec
from ptibench.training import compiling

CORE_VERSION = "2"
"""Hand-bumped version of the shared training/evaluation code, part of every method version.
Baselines record the method version; the cache's key covers the code itself (code_version)."""

NUMBER_LIBRARIES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "peft",
    "open_clip_torch",
    "lpips",
    "numpy",
    "safetensors",
    "pillow",
)
"""The libraries whose versions are part of the cache key: they compute or load the numbers."""

REPORTING_LAYERS = ("harness", "results", "studies")
"""Package folders left out of the code version: tests/test_layers.py keeps the run layer (and
everything below it) from importing them, so they cannot change what a case computes."""

RESULT_FILE = "result.json"
FRESH_DIR = "fresh"
"""Where runs that must not read earlier results (--no-cache) keep a cache of their own."""

PIVOTS_DIR = "pivots"
TRAINED_DIR = "trained"
"""Stage-1 grid outcomes a batched run left for the runner (ptibench.run.pretrain)."""
BASE_DIR = "base"
"""The base model's context copies per world, concept and sampling settings (the `leakage`
metric's reference), computed once and read by every case that shares them."""


def default_cache_dir() -> Path:
    env = os.environ.get("PTIBENCH_CACHE")
    return Path(env) if env else Path.cwd() / ".ptibench-cache"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """8 hex digits over ptibench's computing code (every file of the package but the reporting
    layers), the versions of NUMBER_LIBRARIES and the Python version; computed once per process.
    A changed line of training or evaluation code gives every case a new cache entry."""
    package = Path(__file__).resolve().parents[1]
    blob = "|".join(
        [
            source_digest(package, REPORTING_LAYERS),
            platform.python_version(),
            *(f"{name}={version_of(name)}" for name in NUMBER_LIBRARIES),
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def case_key(spec: CaseSpec) -> str:
    """16 hex digits over the spec's key and the content of its concept folder (images and
    concept.json): an edited concept is a new case, though its name is the same."""
    blob = spec.key() + tree_digest(concept_folder(spec.concept))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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


SAMPLED_BF16 = "-bf16sampled"
"""The name suffix of a case entry whose evaluation sampled in bfloat16."""


def _training_name(spec: CaseSpec, world_version: str, method) -> str:
    name = f"{case_key(spec)}-{world_version}-{method_version(method)}-{code_version()}"
    return name + ("-compiled" if compiling.enabled() else "")


class ResultCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, spec: CaseSpec, world_version: str, method) -> Entry:
        """A compiled run (PTIBENCH_COMPILE) gets entries of its own: its float rounding differs,
        and near divergence a 1000-step run amplifies that into different metrics. (A world
        config's `compile = true` is already part of its world version.) So does a run that
        samples in bfloat16 (SAMPLE_DTYPE_ENV): some of its images differ."""
        name = _training_name(spec, world_version, method)
        return Entry(self.root, name + (SAMPLED_BF16 if sample_dtype() == "bfloat16" else ""), spec)

    def pivot_path(self, pivot_spec: CaseSpec, world_version: str, method) -> Path:
        """Where the stage-1 embedding of `pivot_spec` is shared as a stage-2 pivot (training
        only: runs that sample in other precisions share it)."""
        name = _training_name(pivot_spec, world_version, method)
        return self.root / PIVOTS_DIR / name / "learned_embeds.safetensors"

    def lock(self, entry: Entry):
        return file_lock(entry.lock_path)

    def base_path(self, spec: CaseSpec, world_version: str) -> Path:
        """Where the base model's context copies for `spec`'s world, concept and evaluation
        settings are kept: the name covers them, the concept folder's content, the code and a
        sampler precision other than float32."""
        precision = sample_dtype()
        blob = "|".join(
            (
                spec.world,
                world_version,
                tree_digest(concept_folder(spec.concept)),
                repr(spec.eval),
                *(() if precision == "float32" else (precision,)),
                code_version(),
            )
        )
        key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self.root / BASE_DIR / f"{key}-{world_version}-{code_version()}.json"

    def base_lock(self, path: Path):
        return file_lock(self.root / ".locks" / f"base-{path.stem}.lock")

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


ENTRY_NAME = re.compile(
    r"(?P<case>[0-9a-f]{16})-(?P<world>[0-9a-f]{8})-(?P<method>[0-9a-f]{8})"
    r"(?:-(?P<code>[0-9a-f]{8}))?(?P<compiled>-compiled)?"
    rf"(?P<sampled>{re.escape(SAMPLED_BF16)})?"
)
BASE_NAME = re.compile(r"(?P<key>[0-9a-f]{16})-(?P<world>[0-9a-f]{8})-(?P<code>[0-9a-f]{8})\.json")


def fresh_cache_dir(root: Path | None = None) -> Path:
    """A new, empty cache for one run that must read nothing computed before it (--no-cache).
    It lies under the cache's fresh/ folder, so its results stay on disk for the run's reports
    and `ptibench cache prune` finds it later."""
    root = Path(root) if root is not None else default_cache_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return ensure_dir(root / FRESH_DIR / f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}")


@dataclass
class CacheItem:
    """One thing a cache folder holds, as `ptibench cache list` shows it."""

    kind: str  # entry, pivot, trained, base, fresh, staging, broken
    path: Path
    current: bool  # made by this code and these libraries (or, for a fresh run, still recent)
    size: int
    modified: float
    spec: dict = field(default_factory=dict)
    status: str = ""


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _code_is_current(name: str) -> bool:
    match = ENTRY_NAME.fullmatch(name)
    return bool(match and match["code"] == code_version())


def inventory(root: Path, recent_s: float = 3600.0) -> list[CacheItem]:
    """What the cache at `root` holds. Only folders named as ptibench names them are listed,
    so a mistyped path lists (and prunes) nothing of anyone else's."""
    root = Path(root)
    now = time.time()
    items: list[CacheItem] = []

    def add(kind: str, path: Path, current: bool) -> CacheItem:
        item = CacheItem(kind, path, current, _size(path), path.stat().st_mtime)
        items.append(item)
        return item

    if not root.is_dir():
        return items
    for path in sorted(root.iterdir()):
        if path.is_dir() and ENTRY_NAME.fullmatch(path.name):
            item = add("entry", path, _code_is_current(path.name))
            try:
                record = read_json(path / RESULT_FILE)
                item.spec, item.status = dict(record["spec"]), str(record["status"])
            except (PtibenchError, KeyError, TypeError):
                item.status = "unreadable"
    for kind, folder in (("pivot", PIVOTS_DIR), ("trained", TRAINED_DIR)):
        for path in sorted((root / folder).glob("*")):
            if path.is_dir() and ENTRY_NAME.fullmatch(path.name):
                add(kind, path, _code_is_current(path.name))
    for path in sorted((root / BASE_DIR).glob("*.json")):
        match = BASE_NAME.fullmatch(path.name)
        if match:
            add("base", path, match["code"] == code_version())
    for kind, folder in (("fresh", FRESH_DIR), ("staging", ".staging")):
        for path in sorted((root / folder).glob("*")):
            add(kind, path, now - path.stat().st_mtime < recent_s)
    for path in sorted((root / ".broken").glob("*")):
        add("broken", path, False)
    return items


def prune(
    root: Path, *, everything: bool = False, recent_s: float = 3600.0, dry_run: bool = False
) -> list[CacheItem]:
    """Remove what no run of this code will read: entries, pivots and batched-grid slots made by
    other code or library versions, fresh-run caches and staging folders untouched for
    `recent_s`, and set-aside broken entries (with `everything`: all of it). Returns what was
    (or, with `dry_run`, would be) removed. Lock files are left: a running case may hold one."""
    doomed = [item for item in inventory(root, recent_s) if everything or not item.current]
    if not dry_run:
        for item in doomed:
            if item.path.is_dir():
                shutil.rmtree(item.path, ignore_errors=True)
            else:
                item.path.unlink(missing_ok=True)
    return doomed
