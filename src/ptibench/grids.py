"""The lr grids (presets per stage) and the parsers of the options that select cases.

The parsers are argparse `type=` converters, shared by the pytest plugin and the command-line
tools, so a bad value is one usage-error line everywhere.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from ptibench.concept import shipped_concepts
from ptibench.errors import PtibenchError
from ptibench.spec import STAGES, lr_key

ALL_CONCEPTS = "all"

# Per stage, sized to the tiny world: inversion distance grows ~ c*lr*steps (c ~ 0.1-0.4) and its
# reconstruction keeps rising up to lr ~ 1, so the grid spans 1e-3..1; LoRA and full fine-tuning
# move weights directly and need far smaller lrs.
PRESETS: dict[str, dict[str, tuple[float, ...]]] = {
    "default": {
        "inversion": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
        "finetune": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        "finetune-full": (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4),
    },
    "quick": {
        "inversion": (1e-3, 3e-2, 1.0),
        "finetune": (1e-4, 1e-3, 1e-2),
        "finetune-full": (1e-6, 1e-5, 1e-4),
    },
    # .ci/run's grid, checked against the default grid's baselines: stage 1 whole (its lrs train
    # in one batch, the same computation as seed 0 of the recording, so they reproduce it), and a
    # low and a high lr of each stage-2 grid
    "ci": {
        "inversion": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
        "finetune": (3e-4, 3e-3),
        "finetune-full": (1e-5, 1e-4),
    },
    "wide": {
        "inversion": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0),
        "finetune": (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
        "finetune-full": (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
    },
}


@dataclass(frozen=True)
class LrGrid:
    """What `--lr-grid` asked for: a preset (one grid per stage) or one explicit list for all."""

    preset: str | None = None
    lrs: tuple[float, ...] = ()

    def for_stage(self, stage: str) -> tuple[float, ...]:
        return PRESETS[self.preset][stage] if self.preset else self.lrs

    def __str__(self) -> str:
        return self.preset or ",".join(lr_key(lr) for lr in self.lrs)


def parse_lr_grid(text: str) -> LrGrid:
    """argparse type for --lr-grid: a preset name or a comma list of distinct lrs > 0."""
    value = text.strip()
    if value in PRESETS:
        return LrGrid(preset=value)
    presets = ", ".join(PRESETS)
    if not value:
        raise argparse.ArgumentTypeError(f"empty grid (give a preset: {presets}, or 1e-4,1e-3)")
    lrs: list[float] = []
    seen: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        try:
            lr = float(item)
        except ValueError:
            hint = ""
            if Path(value).exists():
                hint = "; to run a folder, name it before --lr-grid or write --lr-grid=default"
            raise argparse.ArgumentTypeError(
                f"{item!r} in {text!r} is not a number (nor is {text!r} a preset: {presets}){hint}"
            ) from None
        if not math.isfinite(lr) or lr <= 0:
            raise argparse.ArgumentTypeError(f"lr {item!r} in {text!r} must be a finite number > 0")
        key = lr_key(lr)
        if key in seen:
            raise argparse.ArgumentTypeError(
                f"duplicate lr {item!r} in {text!r} (same as {seen[key]!r}: both are {key})"
            )
        seen[key] = item
        lrs.append(lr)
    return LrGrid(lrs=tuple(lrs))


def parse_stages(text: str) -> tuple[str, ...]:
    """argparse type for --stage: a comma list of known stages, without repeats."""
    stages = tuple(s.strip() for s in text.split(","))
    for stage in stages:
        if stage not in STAGES:
            raise argparse.ArgumentTypeError(
                f"unknown stage {stage!r} (known: {', '.join(STAGES)})"
            )
    if len(set(stages)) != len(stages):
        raise argparse.ArgumentTypeError(f"a stage is repeated in {text!r}")
    return stages


def _positive(kind: type, what: str):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (isinstance(value, int) or math.isfinite(value)) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    convert.__name__ = what
    return convert


positive_int = _positive(int, "a whole number")


positive_float = _positive(float, "a number")


def name_text(text: str) -> str:
    """argparse type for a world, concept or method name: any non-empty text."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name")
    return text.strip()


def parse_concepts(text: str) -> tuple[str, ...]:
    """argparse type for --concept: a concept name or folder, a comma list of them, or `all`
    (every concept shipped in the fixtures, by name). Whether each exists is checked later,
    with the other names (one usage error naming it)."""
    value = text.strip()
    if value == ALL_CONCEPTS:
        try:
            names = shipped_concepts()
        except PtibenchError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not names:
            raise argparse.ArgumentTypeError("'all': no concepts are shipped in the fixtures")
        return names
    items = tuple(item.strip() for item in value.split(","))
    if not all(items):
        raise argparse.ArgumentTypeError(f"an empty concept name in {text!r}")
    if ALL_CONCEPTS in items:
        raise argparse.ArgumentTypeError(f"'all' stands alone, not in a list ({text!r})")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"concept {repeated[0]!r} is repeated in {text!r}")
    return items
