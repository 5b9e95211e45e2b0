"""Named worlds: `register_world(name, factory)` and `resolve_world(text)`, which also accepts
a tiny-world folder, a world config file, a diffusers folder or a hub id in the local cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ptibench.assets import tiny_world_path
from ptibench.case_options import DEVICE_ENV
from ptibench.errors import PtibenchError
from ptibench.models.checkpoints import default_device, resolve_model_world
from ptibench.models.config import WorldConfig, is_tiny_world_folder, tiny_world_config

_WORLDS: dict[str, Callable[[], WorldConfig]] = {}


def register_world(name: str, factory: Callable[[], WorldConfig]) -> None:
    """Make `name` usable as CaseSpec.world (e.g. 'sd15' -> a WorldConfig for a checkpoint)."""
    _WORLDS[name] = factory


def _tiny_world() -> WorldConfig:

    return tiny_world_config(tiny_world_path())


register_world("tiny-world", _tiny_world)


def resolve_world(world: str | WorldConfig) -> WorldConfig:
    """A registered world name, a folder with the tiny world's layout, a world config file or
    a checkpoint; on the device DEVICE_ENV names (--device) when it names one."""
    return on_chosen_device(_resolve(world))


def on_chosen_device(config: WorldConfig) -> WorldConfig:
    """`config` moved to the device DEVICE_ENV names; as it is when the variable is unset. The
    dtype stays the world's (the tiny world runs in float32 on a GPU too)."""
    wanted = os.environ.get(DEVICE_ENV, "").strip()
    if not wanted:
        return config
    device = default_device(wanted)
    return config if config.device == device else replace(config, device=device)


def _resolve(world: str | WorldConfig) -> WorldConfig:
    if isinstance(world, WorldConfig):
        return world
    if world in _WORLDS:
        return _WORLDS[world]()
    path = Path(world).expanduser()
    if is_tiny_world_folder(path):
        return tiny_world_config(path, name=str(path))

    model = resolve_model_world(str(world))
    if model is not None:
        return model
    if (path / "model_index.json").is_file():
        raise PtibenchError(
            f"{path} is a bare diffusers pipeline: give it a WorldConfig (metric models, "
            "templates) through ptibench.models.registry.register_world"
        )
    if path.is_dir():
        raise PtibenchError(
            f"world folder {path} is not a diffusers pipeline world (no pipeline/model_index.json)"
        )
    if "/" in str(world) or str(world).startswith("."):
        raise PtibenchError(f"world path {path} does not exist")
    known = ", ".join(sorted(_WORLDS))
    raise PtibenchError(
        f"unknown world {world!r}: not one of ({known}) nor a folder with pipeline/model_index.json"
    )
