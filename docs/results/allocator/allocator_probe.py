"""Probe: does keeping freed memory in the process (glibc's mmap and trim thresholds raised with
`mallopt`) speed up a training step? It takes page faults away and changes no arithmetic.

    python docs/results/allocator/allocator_probe.py --steps 30 --rounds 3 --threads 1 --out F

Each round trains the default stage-1 group (7 lrs, one batch, `train_batched`) for `--steps`
steps in two fresh processes, one with glibc's defaults and one with the thresholds raised,
alternating which goes first; it reports wall and CPU time, minor page faults and a digest of
the trained vectors (equal on both sides when the arithmetic is unchanged).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
"""glibc's `mallopt` parameter numbers (malloc.h)."""


def keep_freed_memory() -> None:
    """Large blocks from the heap instead of fresh mmaps, and freed memory kept for reuse."""
    libc = ctypes.CDLL("libc.so.6")
    for option, value in ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 1 << 30)):
        if libc.mallopt(option, value) != 1:
            raise RuntimeError(f"mallopt({option}) refused")
    libc.mallopt(M_TOP_PAD, 1 << 28)


def one_run(steps: int, threads: int, keep: bool) -> dict:
    """Train the group once in this process; its figures."""
    import torch

    torch.set_num_threads(threads)
    if keep:
        keep_freed_memory()
    from ptibench.concept import load_concept
    from ptibench.grids import PRESETS
    from ptibench.models.loading import load_bundle
    from ptibench.models.registry import resolve_world
    from ptibench.spec import CaseSpec
    from ptibench.training.batched import train_batched
    from ptibench.training.loop import TrainingData
    from ptibench.training.methods import get_method

    world = resolve_world("tiny-world")
    bundle = load_bundle(world)
    concept = load_concept("yellow-ring")
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    specs = [
        CaseSpec(stage="inversion", lr=lr, world=world.name, steps=steps, seed=0)
        for lr in PRESETS["default"]["inversion"]
    ]
    before, clock = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    trained = train_batched(bundle, concept, data, specs, get_method("pti"))
    wall, after = time.perf_counter() - clock, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "keep_freed_memory": keep,
        "wall_s": round(wall, 3),
        "user_s": round(after.ru_utime - before.ru_utime, 3),
        "sys_s": round(after.ru_stime - before.ru_stime, 3),
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "vector_digest": repr(sum(float(t.vector.double().sum()) for t in trained)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", choices=("default", "keep"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.steps, args.threads, args.one == "keep")))
        return
    runs = []
    for round_ in range(args.rounds):
        order = ("default", "keep") if round_ % 2 == 0 else ("keep", "default")
        for side in order:
            command = [sys.executable, __file__, "--one", side, "--steps", str(args.steps)]
            command += ["--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            runs.append({"round": round_, **json.loads(out.stdout.splitlines()[-1])})
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for keep in (False, True):
        mine = [r for r in runs if r["keep_freed_memory"] is keep]
        summary["keep" if keep else "default"] = {
            key: round(sum(r[key] for r in mine) / len(mine), 3)
            for key in ("wall_s", "user_s", "sys_s", "minor_faults")
        }
    summary["wall_ratio_default_over_keep"] = round(
        summary["default"]["wall_s"] / summary["keep"]["wall_s"], 3
    )
    summary["same_vectors"] = len({r["vector_digest"] for r in runs}) == 1
    report = {"steps": args.steps, "threads": args.threads, "runs": runs, "summary": summary}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
