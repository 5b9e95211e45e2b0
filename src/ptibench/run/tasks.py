"""What one task of a distributed run computes, in plain Python (this module never imports Ray):
a group run (the batched stage-1 grid, the stacked stage-2 LoRAs), a stage-2 pivot, or one case.

A task computes in a scratch cache of its own on the node (a temporary folder), through the same
code as a local run (`pretrain`, `train_pivot`, `run_case`), so its numbers are the numbers a
local run gets. It then ships the files that computation made back as bytes (a `Parcel`). The
controller is the one writer of the real cache (ptibench.run.ray_executor): no file lock has to
work across nodes, and a task that dies leaves nothing half-written anywhere that is read.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ptibench.case_options import DETERMINISTIC_ENV, DEVICE_ENV, SAMPLE_DTYPE_ENV
from ptibench.errors import PtibenchError
from ptibench.io import atomic_write_bytes
from ptibench.models.registry import register_world, resolve_world
from ptibench.run.cache import code_version
from ptibench.run.pretrain import GROUP_SAMPLING_ENV, pretrain
from ptibench.run.runner import run_case, train_pivot
from ptibench.spec import CaseSpec
from ptibench.training.batched import BATCH_GRID_ENV
from ptibench.training.compiling import COMPILE_ENV
from ptibench.training.methods import get_method, register_method

SETTINGS_ENV = (
    COMPILE_ENV,
    BATCH_GRID_ENV,
    GROUP_SAMPLING_ENV,
    DEVICE_ENV,
    DETERMINISTIC_ENV,
    SAMPLE_DTYPE_ENV,
    "PTIBENCH_FIXTURES",
)
"""Environment variables that change what a case computes, how it is grouped or where its
fixtures are: a task sets them as the controller has them, so its cache keys and numbers match
the controller's."""

SCRATCH_ONLY = (".locks", ".staging")
"""Folders of a scratch cache that stay on the node."""


@dataclass
class Parcel:
    """What a task sends back: the files it made, by path relative to its scratch cache (case
    entries, pivots, batched-grid slots), with where and how long it ran."""

    files: dict[str, bytes]
    host: str
    seconds: float
    code_version: str
    node: str = ""


@dataclass
class Setup:
    """What a task needs besides its specs to compute what the controller would: the settings,
    the threads of a CPU task, and the methods and worlds the controller knows by a name that
    the node may not (registered in a conftest or a notebook)."""

    environ: dict[str, str | None] = field(default_factory=dict)
    threads: int | None = None
    methods: tuple[Any, ...] = ()
    worlds: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def here(cls, specs, threads: int | None) -> Setup:
        """This process's settings, methods and worlds for `specs`."""
        methods = {spec.method: get_method(spec.method) for spec in specs}
        worlds = {spec.world: resolve_world(spec.world) for spec in specs}
        return cls(
            environ={name: os.environ.get(name) for name in SETTINGS_ENV},
            threads=threads,
            methods=tuple(methods.values()),
            worlds=worlds,
        )

    def apply(self) -> None:
        for name, value in self.environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self.threads:
            torch.set_num_threads(self.threads)
        for method in self.methods:
            try:
                get_method(method.name)
            except PtibenchError:
                register_method(method)
        for name, config in self.worlds.items():
            try:
                resolve_world(name)
            except PtibenchError:
                register_world(name, lambda config=config: config)


def pack(root: Path, given: frozenset[str] = frozenset()) -> dict[str, bytes]:
    """Every file under `root` but the scratch-only folders, lock files and the `given`
    inputs."""
    files = {}
    for path in sorted(Path(root).rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or relative in given or path.suffix == ".lock":
            continue
        if relative.split("/", 1)[0] not in SCRATCH_ONLY:
            files[relative] = path.read_bytes()
    return files


def unpack(files: dict[str, bytes], root: Path) -> None:
    """Write `files` under `root`, each atomically; a slot's outcome.json last (it marks the
    slot complete, see ptibench.run.pretrain)."""
    for relative in sorted(files, key=lambda name: (name.endswith("outcome.json"), name)):
        atomic_write_bytes(Path(root) / relative, files[relative])


def _in_scratch(setup: Setup, inputs: tuple[Parcel, ...], work) -> Parcel:
    started = time.perf_counter()
    setup.apply()
    with tempfile.TemporaryDirectory(prefix="ptibench-task-") as folder:
        root = Path(folder)
        given: dict[str, bytes] = {}
        for parcel in inputs:
            given.update(parcel.files)
        unpack(given, root)
        work(root)
        files = pack(root, frozenset(given))
    return Parcel(files, socket.gethostname(), time.perf_counter() - started, code_version())


def grid_task(specs: list[CaseSpec], setup: Setup, *inputs: Parcel) -> Parcel:
    """Train the cases of one group in one run (stage 1 batched, stage-2 LoRA stacked around the
    pivot among `inputs`); ships their trained slots."""
    return _in_scratch(setup, inputs, lambda root: pretrain(specs, cache_dir=root, progress=False))


def pivot_task(spec: CaseSpec, setup: Setup) -> Parcel:
    """Train the pivot of stage-2 case `spec`; ships the pivot."""
    return _in_scratch(setup, (), lambda root: train_pivot(spec, cache_dir=root, progress=False))


def case_task(spec: CaseSpec, setup: Setup, *inputs: Parcel) -> Parcel:
    """Run one case, given the parcels of the tasks it depends on (its grid's slots, its
    pivot); ships the case's entry (and the pivot a stage-1 case shares)."""
    return _in_scratch(setup, inputs, lambda root: run_case(spec, cache_dir=root, progress=False))
