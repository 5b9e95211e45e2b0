"""A concept: a folder of images plus a concept.json saying how to prompt for it and test it.

Loading validates everything up front, so a bad folder fails before any model loads, with one
line naming the file or field. Odd but usable images (RGBA, greyscale, 16-bit, other sizes) are
converted, with a note, rather than refused.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ptibench.assets import concepts_root
from ptibench.edit_prompts import DEFAULT_EDIT_PROMPTS
from ptibench.errors import PtibenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
REQUIRED_FIELDS = (
    "name",
    "placeholder",
    "class_noun",
    "initializer",
    "reconstruction_prompt",
)


class ConceptWarning(UserWarning):
    """An image was converted or resized on load; the concept is still usable."""


@dataclass(frozen=True)
class EditPrompt:
    """An edit prompt ("{}" = the concept) and, on worlds with an oracle, what it should show."""

    prompt: str
    expect: dict[str, str] | None = None


@dataclass(frozen=True)
class ConceptImage:
    file: Path
    pixels: np.ndarray  # HxWx3 uint8, as read (after mode conversion)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Concept:
    name: str
    placeholder: str
    class_noun: str
    initializer: str
    reconstruction_prompt: str
    edit_prompts: tuple[EditPrompt, ...]
    images: tuple[ConceptImage, ...]
    folder: Path
    appearance: dict[str, str] | None = None
    templates: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()

    def with_placeholder(self, prompt: str) -> str:
        return prompt.replace("{}", self.placeholder)

    def with_class_noun(self, prompt: str) -> str:
        return prompt.replace("{}", self.class_noun)

    def pixels(self, resolution: int) -> tuple[np.ndarray, list[str]]:
        """All images as an NxRxRx3 uint8 array at the model's resolution, plus resize notes.

        Non-square images are centre-cropped first (the usual textual-inversion preprocessing).
        """
        out, notes = [], []
        for image in self.images:
            array = image.pixels
            if array.shape[:2] != (resolution, resolution):
                notes.append(
                    f"{image.file.name}: resized {array.shape[1]}x{array.shape[0]} "
                    f"to {resolution}x{resolution}"
                )
                array = _square_resize(array, resolution)
            out.append(array)
        for note in notes:
            warnings.warn(note, ConceptWarning, stacklevel=2)
        return np.stack(out), notes


def _square_resize(array: np.ndarray, resolution: int) -> np.ndarray:
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = Image.fromarray(array[top : top + side, left : left + side])
    return np.asarray(image.resize((resolution, resolution), Image.Resampling.BICUBIC))


def concept_folder(name_or_folder: str | Path) -> Path:
    """A path to a folder, or the name of a shipped concept under fixtures/concepts."""
    text = str(name_or_folder)
    path = Path(text).expanduser()
    if path.is_dir() or "/" in text or "\\" in text or text.startswith("."):
        if not path.is_dir():
            raise PtibenchError(f"concept folder {path} does not exist")
        return path

    root = concepts_root()
    folder = root / text
    if not folder.is_dir():
        known = sorted(p.name for p in root.iterdir() if (p / "concept.json").is_file())
        raise PtibenchError(
            f"unknown concept {text!r}: no folder {folder} (known: {', '.join(known) or 'none'})"
        )
    return folder


def _read_image(path: Path) -> tuple[np.ndarray, str | None]:
    """Read one image as HxWx3 uint8; returns a note when its mode had to be converted."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                wide = np.asarray(image).astype(np.float64)
                top = 65535.0 if mode.startswith("I;16") or wide.max() > 255 else 255.0
                grey = np.clip(np.round(wide / top * 255), 0, 255).astype(np.uint8)
                array = np.repeat(grey[..., None], 3, axis=-1)
            elif mode == "RGB":
                array = np.asarray(image)
            else:
                rgba = image.convert("RGBA") if mode in ("P", "LA", "PA") else image
                array = np.asarray(rgba.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise PtibenchError(f"cannot read image {path}: {error}") from error
    note = None if mode == "RGB" else f"{path.name}: converted {mode} to RGB"
    return np.ascontiguousarray(array, dtype=np.uint8), note


def _field(data: dict, key: str, kind: type, where: Path) -> Any:
    if key not in data:
        raise PtibenchError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise PtibenchError(f"{where}: field {key!r} must be a non-empty {kind.__name__}")
    return value


def _prompt(value: Any, key: str, where: Path) -> str:
    if not isinstance(value, str) or "{}" not in value:
        raise PtibenchError(f"{where}: {key} must be a string containing '{{}}', got {value!r}")
    return value


def load_concept(name_or_folder: str | Path) -> Concept:
    """Read and validate a concept folder (or shipped concept name)."""
    folder = concept_folder(name_or_folder)
    meta_path = folder / "concept.json"
    data = _read_meta(folder, meta_path)
    recon = _prompt(data["reconstruction_prompt"], "reconstruction_prompt", meta_path)
    edits = _edit_prompts(data.get("edit_prompts"), meta_path)
    templates = data.get("templates")
    if templates is not None:
        if not isinstance(templates, list) or not templates:
            raise PtibenchError(f"{meta_path}: templates must be a non-empty list")
        templates = tuple(_prompt(t, "templates", meta_path) for t in templates)
    appearance = data.get("appearance")
    if appearance is not None and not isinstance(appearance, dict):
        raise PtibenchError(f"{meta_path}: appearance must be an object")
    images, notes = _read_images(folder, meta_path, data.get("images"))
    return Concept(
        name=data["name"],
        placeholder=data["placeholder"],
        class_noun=data["class_noun"],
        initializer=data["initializer"],
        reconstruction_prompt=recon,
        edit_prompts=edits,
        images=images,
        folder=folder,
        appearance=appearance,
        templates=templates,
        notes=notes,
    )


def _read_meta(folder: Path, meta_path: Path) -> dict:
    """concept.json as a dict with every required field of the right type."""
    if not meta_path.is_file():
        raise PtibenchError(f"{folder}: no concept.json")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PtibenchError(f"cannot read {meta_path}: {error}") from error
    if not isinstance(data, dict):
        raise PtibenchError(f"{meta_path}: expected a JSON object")
    for key in REQUIRED_FIELDS:
        _field(data, key, list if key == "edit_prompts" else str, meta_path)
    return data


def _edit_prompts(listed: Any, meta_path: Path) -> tuple[EditPrompt, ...]:
    """The edit prompts (plain strings or {prompt, expect}); none listed = the default set."""
    if listed is None:  # real photos: the DreamBench-style default set
        listed = list(DEFAULT_EDIT_PROMPTS)
    if not isinstance(listed, list):
        raise PtibenchError(f"{meta_path}: field 'edit_prompts' must be a non-empty list")
    edits = []
    for i, item in enumerate(listed):
        where = f"edit_prompts[{i}]"
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict) or "prompt" not in item:
            raise PtibenchError(f"{meta_path}: {where} needs a 'prompt'")
        expect = item.get("expect")
        if expect is not None and not isinstance(expect, dict):
            raise PtibenchError(f"{meta_path}: {where}.expect must be an object")
        edits.append(EditPrompt(_prompt(item["prompt"], where, meta_path), expect))
    if not edits:
        raise PtibenchError(f"{meta_path}: edit_prompts is empty")
    return tuple(edits)


def _read_images(
    folder: Path, meta_path: Path, listed: Any
) -> tuple[tuple[ConceptImage, ...], tuple[str, ...]]:
    """The listed images (none listed = every image file in the folder) and their notes."""
    if listed is None:
        entries = [
            {"file": p.name}
            for p in sorted(folder.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ]
    elif isinstance(listed, list):
        entries = listed
    else:
        raise PtibenchError(f"{meta_path}: images must be a list")
    if not entries:
        raise PtibenchError(f"{folder}: no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
    images, notes = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise PtibenchError(f"{meta_path}: images[{i}] needs a 'file'")
        path = folder / entry["file"]
        if not path.is_file():
            raise PtibenchError(f"{meta_path}: images[{i}] file {path} does not exist")
        pixels, note = _read_image(path)
        if note:
            notes.append(note)
            warnings.warn(note, ConceptWarning, stacklevel=3)
        extra = {k: v for k, v in entry.items() if k != "file"}
        images.append(ConceptImage(path, pixels, extra))
    return tuple(images), tuple(notes)
