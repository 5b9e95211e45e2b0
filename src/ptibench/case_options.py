"""The options that select benchmark cases, declared once for pytest and for argparse.

`add_case_options(add)` takes an `addoption`-like callable (a pytest option group's `addoption`
or an argparse parser's `add_argument`: both take argparse's keywords), so the plugin and the
command-line studies accept the same names with the same validation. `case_specs` turns the
parsed values into CaseSpecs in one fixed order (every xdist worker must collect the same).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ptibench.errors import PtibenchError
from ptibench.grids import (
    LrGrid,
    name_text,
    parse_concepts,
    parse_lr_grid,
    parse_stages,
    positive_float,
    positive_int,
)
from ptibench.spec import (
    DEFAULT_CONCEPT,
    DEFAULT_METHOD,
    DEFAULT_WORLD,
    STAGES,
    CaseSpec,
    EvalConfig,
)

DEFAULT_STAGES = ("inversion", "finetune")

DEVICE_ENV = "PTIBENCH_DEVICE"
"""The device every world runs on when set (--device sets it): an environment variable, so
xdist workers and Ray tasks run their worlds where the controller asked."""


def parse_device(text: str) -> str:
    """argparse type for --device: cpu, cuda, cuda:N or auto (CUDA when there is one)."""
    value = text.strip().lower()
    if value in ("cpu", "cuda", "auto") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise argparse.ArgumentTypeError(f"device {text!r} is not one of cpu, cuda, cuda:N, auto")


DETERMINISTIC_ENV = "PTIBENCH_DETERMINISTIC"
"""Set (--deterministic sets it): CUDA runs use deterministic kernels, so a GPU run reproduces
its own GPU baselines in another process. Without it cuDNN chooses its convolution algorithms by
timing them in each process and some backward kernels add with atomics, so two runs of a case
differ in rounding, and near divergence in their metrics (models.loading.enable_cuda_speedups)."""


def env_switch(name: str) -> bool:
    """Whether the on/off environment variable `name` is on (1, true, yes or on; unset is off)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def deterministic() -> bool:
    """Whether CUDA runs use deterministic kernels (DETERMINISTIC_ENV)."""
    return env_switch(DETERMINISTIC_ENV)


SAMPLE_DTYPE_ENV = "PTIBENCH_SAMPLE_DTYPE"
"""The evaluation sampler's precision for a float32 world (--sample-dtype sets it): float32
(unset, the default) or bfloat16, which samples under bfloat16 autocast: about 1.7x faster on
a CPU with bfloat16 instructions, and a few images of a case come out different, so its cases
get cache entries of their own and its baselines record it (a half-precision world samples in
its own dtype either way)."""

SAMPLE_DTYPES = ("float32", "bfloat16")


def parse_sample_dtype(text: str) -> str:
    """argparse type for --sample-dtype."""
    value = text.strip().lower()
    if value in SAMPLE_DTYPES:
        return value
    raise argparse.ArgumentTypeError(
        f"sample dtype {text!r} is not one of {', '.join(SAMPLE_DTYPES)}"
    )


def sample_dtype(world_dtype: str = "float32") -> str:
    """The precision a world of `world_dtype` samples its evaluation images in: its own for a
    half-precision world, else SAMPLE_DTYPE_ENV's (float32 when unset)."""
    if world_dtype != "float32":
        return world_dtype
    value = os.environ.get(SAMPLE_DTYPE_ENV, "").strip().lower() or "float32"
    if value not in SAMPLE_DTYPES:
        raise PtibenchError(
            f"{SAMPLE_DTYPE_ENV}={value!r} is not one of {', '.join(SAMPLE_DTYPES)}"
        )
    return value


def apply_device(options: Any) -> dict[str, str | None]:
    """Set DEVICE_ENV from --device, DETERMINISTIC_ENV from --deterministic and
    SAMPLE_DTYPE_ENV from --sample-dtype; nothing changes without them. Returns each variable's
    previous value (None: unset), to restore them."""
    names = (DEVICE_ENV, DETERMINISTIC_ENV, SAMPLE_DTYPE_ENV)
    previous = {name: os.environ.get(name) for name in names}
    device = getattr(options, "device", None)
    if device:
        os.environ[DEVICE_ENV] = device
    if getattr(options, "deterministic", False):
        os.environ[DETERMINISTIC_ENV] = "1"
    precision = getattr(options, "sample_dtype", None)
    if precision:
        os.environ[SAMPLE_DTYPE_ENV] = precision
    return previous


def add_grid_options(add: Callable[..., Any], *, lr_grid: str | None, stage: str | None) -> None:
    """--lr-grid and --stage, with the caller's defaults (None: the plugin's)."""
    add(
        "--lr-grid",
        type=parse_lr_grid,
        nargs="?",
        const=LrGrid(preset="default"),
        default=lr_grid,
        help="the lr grid: no value = each stage's default grid; a preset (default, quick, "
        "wide); or lrs like 1e-4,1e-3,1e-2 (used for every stage)",
    )
    add(
        "--stage",
        type=parse_stages,
        default=stage,
        help=f"comma list of stages ({', '.join(STAGES)}); default "
        f"{stage or ','.join(DEFAULT_STAGES) + ', or those of them the method has'}",
    )


def add_case_options(add: Callable[..., Any], *, eval_every: int | None = None) -> None:
    """What a case is trained and evaluated with (world, concept, method, steps, sampling)."""
    add("--steps", type=positive_int, default=1000, help="training steps (default 1000)")
    add(
        "--world",
        "--model",
        dest="world",
        type=name_text,
        default=DEFAULT_WORLD,
        help=f"world or model: {DEFAULT_WORLD}, a Stable Diffusion (XL) diffusers folder or hub "
        "id in the local Hugging Face cache, or a world config file (.json/.toml)",
    )
    add(
        "--device",
        type=parse_device,
        default=None,
        help="run the world on this device: cpu, cuda, cuda:N or auto (default: the world's "
        "own; the tiny world's is cpu). Baselines record their device: check a GPU run against "
        "baselines recorded on that GPU (--ptibench-baselines DIR --update-baselines)",
    )
    add(
        "--deterministic",
        action="store_true",
        default=False,
        help="CUDA runs use deterministic kernels (no cuDNN algorithm search), so a GPU run "
        "reproduces baselines recorded on that GPU with --deterministic; no effect on the CPU",
    )
    add(
        "--sample-dtype",
        type=parse_sample_dtype,
        default=None,
        help="precision of the evaluation sampler for a float32 world: float32 (default) or "
        "bfloat16 (autocast; about 1.7x faster evaluation on a CPU with bfloat16 instructions, "
        "a few samples differ: cache entries of their own, recorded with baselines)",
    )
    add(
        "--concept",
        type=parse_concepts,
        default=DEFAULT_CONCEPT,
        help="concept name or folder, a comma list of them, or `all` (every shipped concept); "
        f"default {DEFAULT_CONCEPT}",
    )
    add(
        "--method",
        default=DEFAULT_METHOD,
        help=f"method name from the registry (default {DEFAULT_METHOD})",
    )
    add(
        "--pivot-lr",
        type=positive_float,
        default=None,
        help="inversion lr of the pivot that fine-tuning starts from",
    )
    add(
        "--samples-per-prompt",
        type=positive_int,
        default=None,
        help="samples per prompt of the evaluation",
    )
    add("--sample-steps", type=positive_int, default=None, help="sampler steps of the evaluation")
    add(
        "--eval-every",
        type=positive_int,
        default=eval_every,
        metavar="N",
        help="also evaluate every N training steps (and at step 0): concept-order curves and "
        "the light window (concept_order.md/.png); the final metrics are unchanged",
    )


def eval_config(options: Any) -> EvalConfig:
    """The evaluation settings: EvalConfig's defaults, less what the options override."""
    changes = {
        name: getattr(options, name)
        for name in ("samples_per_prompt", "sample_steps")
        if getattr(options, name, None) is not None
    }
    return replace(EvalConfig(), **changes)


def concepts(options: Any) -> tuple[str, ...]:
    """The selected concepts (--concept: one name, or the list parse_concepts made of it)."""
    value = options.concept
    return (value,) if isinstance(value, str) else tuple(value)


def case_specs(
    options: Any, grid: LrGrid, stages: Iterable[str], seeds: Iterable[int]
) -> list[CaseSpec]:
    """One spec per (concept, stage, lr, seed), in that order; `options` holds
    add_case_options' values. Each spec names its own concept."""
    evaluation = eval_config(options)
    seeds = list(seeds)
    return [
        CaseSpec(
            stage=stage,
            lr=lr,
            world=options.world,
            concept=concept,
            method=options.method,
            steps=options.steps,
            seed=seed,
            pivot_lr=None if stage == "inversion" else options.pivot_lr,
            eval=evaluation,
            eval_every=options.eval_every,
        )
        for concept in concepts(options)
        for stage in stages
        for lr in grid.for_stage(stage)
        for seed in seeds
    ]
