"""Where the shipped world lives: the package's own `fixtures/` folder (the tiny world and its
concepts travel in the wheel), or $PTIBENCH_FIXTURES, a folder with the same layout."""

from __future__ import annotations

import os
from pathlib import Path

from ptibench.errors import PtibenchError

PACKAGED = Path(__file__).resolve().parent / "fixtures"


def fixtures_root() -> Path:
    """$PTIBENCH_FIXTURES, else the fixtures installed with the package."""
    env = os.environ.get("PTIBENCH_FIXTURES")
    if env:
        return Path(env)
    if (PACKAGED / "tiny-world").is_dir():
        return PACKAGED
    raise PtibenchError(
        f"no tiny world at {PACKAGED / 'tiny-world'} (an install without its data?): "
        "set PTIBENCH_FIXTURES to a folder with tiny-world/ and concepts/"
    )


def tiny_world_path() -> Path:
    return fixtures_root() / "tiny-world"


def concepts_root() -> Path:
    return fixtures_root() / "concepts"
