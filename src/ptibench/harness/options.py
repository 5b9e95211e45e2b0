"""The plugin's command-line options (group `ptibench`).

The case-selecting options come from ptibench.case_options (shared with the command-line
studies); this module adds what only a pytest session has: seeds as parametrized cases, compile,
baselines and where reports, cache and baselines live. Every option is validated by its argparse
type, so a bad value is one usage-error line.
"""

from __future__ import annotations

from ptibench.case_options import add_case_options, add_grid_options
from ptibench.grids import positive_int
from ptibench.results.export import TRACKERS

DEFAULT_OUT = "ptibench-out"


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
        "method version, device, dtype or compiled training",
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


def add_options(parser) -> None:
    group = parser.getgroup("ptibench", "ptibench: the PTI lr-grid benchmark")
    add_grid_options(group.addoption, lr_grid=None, stage=None)
    add_case_options(group.addoption)
    add_session_options(group.addoption)
    add_location_options(group.addoption)
