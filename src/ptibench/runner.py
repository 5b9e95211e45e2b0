"""Deprecated alias of ptibench.run.runner (run_case, run_cases), kept for existing scripts."""

import warnings

from ptibench.run.runner import run_case, run_cases

warnings.warn(
    "ptibench.runner is deprecated: import run_case / run_cases from ptibench.run.runner",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["run_case", "run_cases"]
