"""Export a run to the trackers diffusers' own training scripts report to (`--report-to`).

TensorBoard: one TensorBoard run per case, `<out>/tensorboard/<stage>-<method>/lr=<lr>[-seed=N]`,
so the dashboard's run selector is the lr grid: each case's final metrics as scalars at its
last training step (its curve points too, with --eval-every), its lr and settings as hparams,
and its sample grid as an image; plus, at the top, the trade-off figure and the knee lines.
Needs the `tensorboard` package (`pip install 'ptibench[tensorboard]'`).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptibench.errors import PtibenchError
from ptibench.results.tradeoff import build_tables, knee_line
from ptibench.spec import lr_key

TRACKERS = ("tensorboard",)
TENSORBOARD_DIR = "tensorboard"


def check_tracker(name: str) -> None:
    """PtibenchError (one line) if `name` is unknown or its package is not installed."""
    if name not in TRACKERS:
        raise PtibenchError(f"unknown tracker {name!r} (choose from {', '.join(TRACKERS)})")
    if importlib.util.find_spec("tensorboard") is None:
        raise PtibenchError(
            "--report-to tensorboard needs the tensorboard package: "
            "pip install 'ptibench[tensorboard]'"
        )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _image(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _run_name(spec: Mapping[str, Any], seeds: int) -> str:
    name = f"{spec['stage']}-{spec['method']}/lr={lr_key(spec['lr'])}"
    return name + (f"-seed={spec['seed']}" if seeds > 1 else "")


def to_tensorboard(out_dir: Path, document: Mapping[str, Any]) -> Path:
    """Write the run's TensorBoard logs under `out_dir`/tensorboard/; returns that folder."""
    check_tracker("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    root = Path(out_dir) / TENSORBOARD_DIR
    cases = [case for case in document["cases"] if case.get("status") in ("ok", "diverged")]
    seeds = len({case["spec"]["seed"] for case in cases})
    for case in cases:
        spec = case["spec"]
        with SummaryWriter(log_dir=str(root / _run_name(spec, seeds))) as writer:
            for point in case.get("curves") or []:
                for name, value in point.items():
                    if name != "step" and _number(value) and _number(point.get("step")):
                        writer.add_scalar(f"curve/{name}", value, int(point["step"]))
            metrics = {k: v for k, v in (case.get("metrics") or {}).items() if _number(v)}
            for name, value in metrics.items():
                writer.add_scalar(f"metrics/{name}", value, int(spec["steps"]))
            hparams = {
                "lr": float(spec["lr"]),
                "stage": spec["stage"],
                "method": spec["method"],
                "concept": spec["concept"],
                "seed": int(spec["seed"]),
                "steps": int(spec["steps"]),
                "status": case["status"],
            }
            writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in metrics.items()}, None, ".")
            for sample in case.get("samples") or []:
                path = Path(out_dir) / "samples" / sample
                if path.is_file():
                    writer.add_image(f"samples/{path.stem}", _image(path), dataformats="HWC")
    with SummaryWriter(log_dir=str(root)) as writer:
        figure = Path(out_dir) / "tradeoff.png"
        if figure.is_file():
            writer.add_image("tradeoff", _image(figure), dataformats="HWC")
        knees = [f"{table.title}: {knee_line(table)}" for table in build_tables(cases)]
        if knees:
            writer.add_text("knee", "\n\n".join(knees))
    return root
