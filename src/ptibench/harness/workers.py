"""Placing xdist workers: one GPU each on CUDA, a share of the cores each on CPU."""

from __future__ import annotations

import os
from pathlib import Path

from ptibench.models.config import is_tiny_world_folder
from ptibench.spec import DEFAULT_WORLD


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


def world_on_cpu(world: str, device: str | None) -> bool:
    """Whether the session's world runs on the CPU, as far as that can be told without
    initialising CUDA (which reads CUDA_VISIBLE_DEVICES once, so a worker's GPU is chosen before):
    --device when given, else whether it is the tiny world (its own device is the CPU); other
    worlds take a GPU where there is one."""
    if device:
        return device == "cpu"
    return world == DEFAULT_WORLD or is_tiny_world_folder(world)


def place_worker(environ: dict[str, str], on_cpu: bool) -> str | None:
    """An xdist worker whose world runs on CUDA gets one GPU; one whose world runs on the CPU, or
    on a machine without a GPU, gets its share of the cores. The GPU chosen, if any."""
    gpu = None if on_cpu else assign_worker_gpu(environ)
    if gpu is None:
        share_cpu_threads(environ)
    return gpu
