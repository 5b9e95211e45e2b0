"""Test doubles for tests/test_ray_executor.py, imported by Ray's worker processes as well (the
tests put this folder on their PYTHONPATH).

`pti-flaky` computes exactly what `pti` computes, except where the file named by
$RAY_TEST_FAULT_FILE asks for a fault in a stage-2 case at one lr (stage 1, pivots included, is
never touched), while the file exists (its stage-2 cases train alone, each its own task):

- `kill@LR`: the process running the case is SIGKILLed (a worker lost mid-case);
- `raise@LR`: the case raises;
- `stall@LR`: the first attempt writes `stalled <its Ray node>` into the file and waits (up to
  STALL_S) to be killed with its node or its cluster; a retry finds that note and computes
  normally. STALL_S outlasts any test's wait: a stall that ends on its own lands its case in the
  cache while the test still expects it missing (seen on a loaded machine with 120 s).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ptibench.training.methods import PTI

FAULT_FILE = "RAY_TEST_FAULT_FILE"
STALL_S = 900


class Flaky(PTI):
    name = "pti-flaky"
    group_stages = ("inversion",)  # a stage-2 fault hits its own case's task, not a stack

    def optimizer(self, stage, params, lr):
        if stage != "inversion":
            inject(lr)
        return super().optimizer(stage, params, lr)


def inject(lr: float) -> None:
    path = Path(os.environ.get(FAULT_FILE) or "/nonexistent")
    if not path.is_file():
        return
    kind, _, at = path.read_text().strip().partition("@")
    if not at or lr != float(at):
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "raise":
        raise RuntimeError(f"injected failure at lr {at}")
    if kind == "stall":
        import ray

        note = path.with_name(path.name + ".tmp")
        note.write_text(f"stalled {ray.get_runtime_context().get_node_id()}")
        os.replace(note, path)
        time.sleep(STALL_S)
