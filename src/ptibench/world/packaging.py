"""The world's pipeline folder as a plain diffusers pipeline.

A user loads it with `StableDiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` and
nothing of ptibench installed: the layout UNet's code travels in the folder (`unet/layout_unet.py`,
a diffusers custom component) and every component loads in float32 by default (weights stay
fp16 on disk; the text encoder's config says float32, which transformers' automatic dtype
honours). ptibench itself never runs the folder's code: it hands diffusers its own class.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from . import layout_unet
from .layout_unet import LayoutUNet2DConditionModel

FOLDER_MODULE = "layout_unet"
"""Module name of the UNet's code inside the folder (`unet/layout_unet.py`)."""

UNET_CLASS = LayoutUNet2DConditionModel.__name__


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def package_pipeline(folder: Path) -> None:
    """Make a saved pipeline folder load in plain diffusers: float32 text encoder, and the layout
    UNet's code beside its weights when the UNet has a layout path."""
    folder = Path(folder)
    config_path = folder / "text_encoder" / "config.json"
    _write(config_path, {**_read(config_path), "dtype": "float32"})
    index_path = folder / "model_index.json"
    index = _read(index_path)
    if index["unet"][1] != UNET_CLASS:
        return
    shutil.copyfile(layout_unet.__file__, folder / "unet" / f"{FOLDER_MODULE}.py")
    _write(index_path, {**index, "unet": [FOLDER_MODULE, UNET_CLASS]})


def own_components(folder: Path, dtype: torch.dtype) -> dict:
    """Components of `folder` that ptibench loads with its own classes, to pass to
    `from_pretrained` (empty for a stock pipeline).

    diffusers checks a passed component against the module its model_index names; ptibench's
    module stands in for the folder's copy (diffusers' documented route for code the caller has
    imported), so the folder's code is never executed."""
    index = _read(Path(folder) / "model_index.json")
    if index.get("unet", [None, None])[1] != UNET_CLASS:
        return {}
    sys.modules.setdefault(index["unet"][0], layout_unet)
    unet = LayoutUNet2DConditionModel.from_pretrained(Path(folder) / "unet", dtype=dtype)
    return {"unet": unet}


def load_pipeline(folder: Path, dtype: torch.dtype = torch.float32):
    """The tiny world's StableDiffusionPipeline, loaded by ptibench (no folder code run)."""
    return StableDiffusionPipeline.from_pretrained(
        folder, dtype=dtype, **own_components(folder, dtype)
    )
