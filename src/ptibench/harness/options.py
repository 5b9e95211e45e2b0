"""The plugin's command-line options (group `ptibench`).

The case-selecting options come from ptibench.case_options (shared with the command-line
studies); this module adds what only a pytest session has: seeds as parametrized cases, compile,
baselines, where reports, cache and baselines live, and where the cases run (here or on a Ray
cluster). Every option is validated by its argparse type, so a bad value is one usage-error line.
"""

from __future__ import annotations

import argparse

from ptibench.case_options import add_case_options, add_grid_options
from ptibench.grids import positive_int
from ptibench.results.export import TRACKERS
from ptibench.run.ray_executor import DEFAULT_RETRIES

DEFAULT_OUT = "ptibench-out"
EXECUTORS = ("local", "ray")


def add_session_options(add) -> None:
    """Seeds, compile and the baseline switch."""
    add("--seeds", type=positive_int, default=1, help="seeds per lr (default 1)")
    add(
        "--compile",
        action="store_true",
        default=False,
        help="torch.compile the training UNet (sets PTIBENCH_COMPILE=1): faster steps once "
        "inductor's kernels are cached; the first compile on a machine takes minutes "
        "(see the README's performance section)",
    )
    add(
        "--update-baselines",
        action="store_true",
        default=False,
        help="record the selected cases as baselines (entries of other lrs, seeds and settings "
        "are kept)",
    )
    add(
        "--force",
        dest="force_baselines",
        action="store_true",
        default=False,
        help="with --update-baselines: also replace entries recorded under another world or "
        "method version, device, dtype, compiled training or sampler precision",
    )
    add(
        "--ptibench-no-confirm",
        dest="ptibench_confirm",
        action="store_false",
        default=True,
        help="report a case outside its seed spread at once; by default it is trained again "
        "with a fresh seed and fails only if that seed fails one of the same metrics",
    )
    add(
        "--ptibench-strict",
        action="store_true",
        default=False,
        help="a case without a baseline of its own fails (for CI); without it, such a case "
        "passes and is reported beside the reference method's baseline",
    )


def add_location_options(add) -> None:
    """Where the reports, the case cache and the baselines are."""
    add(
        "--ptibench-out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"report directory (default ./{DEFAULT_OUT})",
    )
    add(
        "--ptibench-cache",
        default=None,
        metavar="DIR",
        help="case cache (default $PTIBENCH_CACHE or ./.ptibench-cache)",
    )
    add(
        "--no-cache",
        action="store_true",
        default=False,
        help="read no earlier result: every selected case (and its pivot) is computed afresh "
        "in a new cache folder of its own, under the case cache's fresh/ (kept for the "
        "reports; `ptibench cache prune` removes it later)",
    )
    add(
        "--ptibench-autosave",
        action="store_true",
        default=False,
        help="also keep this run's reports under DIR/runs/NNNN_<commit>/ (see `ptibench compare`)",
    )
    add(
        "--report-to",
        choices=TRACKERS,
        default=None,
        help="also export the run to a tracker: tensorboard (logs under DIR/tensorboard/)",
    )
    add(
        "--ptibench-baselines",
        default=None,
        metavar="DIR",
        help="baseline directory (default <rootdir>/baselines)",
    )


def add_executor_options(add) -> None:
    """Where the cases run: here (with pytest-xdist's -n) or on a Ray cluster."""
    add(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: in this pytest process (and its xdist workers, -n); ray: as tasks on a Ray "
        "cluster, this pytest run the controller that writes the cache and the reports "
        "(needs the ray extra: pip install 'ptibench[ray]')",
    )
    add(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: auto (default: the cluster this machine belongs to, or "
        "$RAY_ADDRESS), local (a private cluster on this machine, for this pytest run), or the "
        "head's HOST:PORT",
    )
    add(
        "--ray-retries",
        type=non_negative_int,
        default=None,
        metavar="N",
        help=f"with --executor ray: how often Ray reruns a task whose worker or node died "
        f"(default {DEFAULT_RETRIES}; 0: never)",
    )


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_options(parser) -> None:
    group = parser.getgroup("ptibench", "ptibench: the PTI lr-grid benchmark")
    add_grid_options(group.addoption, lr_grid=None, stage=None)
    add_case_options(group.addoption)
    add_session_options(group.addoption)
    add_location_options(group.addoption)
    add_executor_options(group.addoption)
