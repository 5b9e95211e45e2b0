"""Trace how busy a pytest-xdist run's workers are: every 5 seconds, each child process of the
pytest controller and the CPU seconds it has used so far, until a stop file appears.

    (date +%s > START; pytest benchmark/ --lr-grid -n 2 --seeds 3; touch STOP) &
    python docs/results/worker-busy/cpu_trace.py --pid PID --since "$(cat START)" \
        --out trace.txt --stop STOP                   # PID: the pytest controller's
    python docs/results/worker-busy/cpu_trace.py --summarise trace.txt

Each line: seconds since the run started, worker pid, CPU seconds the worker has used (user +
system), so a worker's last line says how busy it was over the run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trace(pid: int, since: float, out: Path, stop: Path) -> None:
    with out.open("a") as handle:
        while not stop.exists():
            for child in children(pid):
                used = cpu_seconds(child)
                if used is not None:
                    handle.write(f"{time.time() - since:.0f} {child} {used:.1f}\n")
            handle.flush()
            time.sleep(5)


def summarise(path: Path) -> None:
    """Each worker's last CPU reading over the last time stamp."""
    last: dict[str, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        when, pid, used = line.split()
        last[pid] = (float(when), float(used))
    for pid, (when, used) in sorted(last.items()):
        print(f"worker {pid}: {used:.0f} CPU s in {when:.0f} s = {used / when:.1%} busy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, help="the pytest controller's pid")
    parser.add_argument("--since", type=float, help="the run's start, seconds since the epoch")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stop", type=Path, help="the trace ends when this file exists")
    parser.add_argument("--summarise", type=Path, help="a trace file to summarise instead")
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise)
    else:
        trace(args.pid, args.since or time.time(), args.out, args.stop)


if __name__ == "__main__":
    main()
