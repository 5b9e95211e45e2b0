"""Pipeline kinds: Stable Diffusion 1.x/2.x ("sd") or SDXL ("sdxl"), told apart by a diffusers
folder's model_index.json, and the pipeline class and loading arguments of each.
"""

from __future__ import annotations

import json
from pathlib import Path

from ptibench.errors import PtibenchError

KINDS = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
}


def detect_kind(folder: Path) -> str:
    """'sd' or 'sdxl' from a diffusers folder's model_index.json (its `_class_name`)."""
    index = Path(folder) / "model_index.json"
    try:
        name = json.loads(index.read_text()).get("_class_name", "")
    except (OSError, json.JSONDecodeError) as error:
        raise PtibenchError(f"cannot read {index}: {error}") from error
    if name in KINDS:
        return KINDS[name]
    if "XL" in name:
        return "sdxl"
    if name.startswith("StableDiffusion"):
        return "sd"
    raise PtibenchError(
        f"{index}: pipeline class {name!r} is not supported "
        "(StableDiffusionPipeline or StableDiffusionXLPipeline)"
    )


def pipeline_class(kind: str):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if kind == "sd":
        return StableDiffusionPipeline
    if kind == "sdxl":
        return StableDiffusionXLPipeline
    raise PtibenchError(f"unknown pipeline kind {kind!r} (sd or sdxl)")


def pipeline_kwargs(kind: str) -> dict:
    """Loading arguments that switch off what a benchmark never uses."""
    if kind == "sd":
        return {"safety_checker": None, "requires_safety_checker": False}
    return {"add_watermarker": False}
