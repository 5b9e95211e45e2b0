"""tools/gpu_perf.py, the accelerator figures' script, runs its tiny-world sections at toy sizes
on a CPU: every section completes, and its group runs reproduce the sequential runs there, so a
GPU lease spends its minutes measuring rather than debugging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_stacked_lora import WEIGHT_ATOL_IN_LR

from ptibench.grids import PRESETS

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_perf.py"


def test_toy_run_writes_every_figure_and_group_runs_agree(tmp_path):
    args = ["--out", str(tmp_path), "--toy", "--skip-sd15", "--skip-sampling"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--steps", "2", "--seeds", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (tmp_path / "gpu_perf.jsonl").read_text().splitlines()
    figures = [json.loads(line) for line in lines]
    errors = [f for f in figures if f["figure"] == "error"]
    assert not errors, errors
    kinds = [f["figure"] for f in figures if f["figure"] != "section_done"]
    assert kinds.count("step_alone") == 2
    assert kinds.count("grid") == 2 and kinds.count("grid_without_tf32") == 2
    assert kinds.count("group_memory") == 4
    for grid in (f for f in figures if f["figure"].startswith("grid")):
        assert grid["k"] == (7 if grid["stage"] == "inversion" else 6)
        assert grid["sequential_s"] > 0 and grid["group_s"] > 0
        lrs = PRESETS["default"][grid["stage"]] * grid["seeds"]
        diffs = grid["max_abs_diff_per_lr"]
        assert all(
            d is not None and d <= 1e-4 + WEIGHT_ATOL_IN_LR * lr
            for d, lr in zip(diffs, lrs, strict=True)
        ), grid
