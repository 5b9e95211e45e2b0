"""Where the shipped world lives: `fixtures/` of the repository, or $PTIBENCH_FIXTURES."""

from __future__ import annotations

import os
from pathlib import Path

from ptibench.errors import PtibenchError


def fixtures_root() -> Path:
    """$PTIBENCH_FIXTURES, else the nearest `fixtures/` above the cwd or the package."""
    env = os.environ.get("PTIBENCH_FIXTURES")
    if env:
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve()):
        for folder in (start, *start.parents):
            candidate = folder / "fixtures" / "tiny-world"
            if candidate.is_dir():
                return candidate.parent
    raise PtibenchError(
        "cannot find the fixtures folder with tiny-world/: set PTIBENCH_FIXTURES to it"
    )


def tiny_world_path() -> Path:
    return fixtures_root() / "tiny-world"


def concepts_root() -> Path:
    return fixtures_root() / "concepts"
