"""A concept: a folder of images plus a concept.json saying how to prompt for it and test it.

Loading validates everything up front, so a bad folder fails before any model loads, with one
line naming the file or field. concept.json is checked against the published JSON Schema
(`ptibench/concept.schema.json`, both kinds: real photos and tiny-world concepts); the images
against the folder. Odd but usable images (RGBA, greyscale, 16-bit, other sizes) are converted,
with a note, rather than refused.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from jsonschema.exceptions import ValidationError, best_match
from PIL import Image, UnidentifiedImageError

from ptibench.assets import concepts_root
from ptibench.edit_prompts import DEFAULT_EDIT_PROMPTS
from ptibench.errors import PtibenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SCHEMA_PATH = Path(__file__).with_name("concept.schema.json")


class ConceptWarning(UserWarning):
    """An image was converted or resized on load; the concept is still usable."""


@dataclass(frozen=True)
class EditPrompt:
    """An edit prompt ("{}" = the concept) and, on worlds with an oracle, what it should show."""

    prompt: str
    expect: dict[str, str] | None = None

    def __post_init__(self) -> None:
        # An edit prompt without the concept measures the base model's editability: every
        # editability metric would look fine, and the seed-spread check cannot tell.
        if "{}" not in self.prompt:
            raise ValueError(f"edit prompt {self.prompt!r} does not name the concept ('{{}}')")


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
    """A path to a folder, or the name of a shipped concept (ptibench.assets.concepts_root())."""
    text = str(name_or_folder)
    path = Path(text).expanduser()
    if path.is_dir() or "/" in text or "\\" in text or text.startswith("."):
        if not path.is_dir():
            raise PtibenchError(f"concept folder {path} does not exist")
        return path

    folder = concepts_root() / text
    if not folder.is_dir():
        known = ", ".join(shipped_concepts()) or "none"
        raise PtibenchError(f"unknown concept {text!r}: no folder {folder} (known: {known})")
    return folder


def shipped_concepts() -> tuple[str, ...]:
    """The names of the concepts in the fixtures (folders with a concept.json), sorted."""
    root = concepts_root()
    if not root.is_dir():
        return ()
    return tuple(sorted(p.name for p in root.iterdir() if (p / "concept.json").is_file()))


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


@functools.cache
def concept_schema() -> dict[str, Any]:
    """The JSON Schema of concept.json (shipped beside this module)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = concept_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def _where(path) -> str:
    """A JSON path as concept.json's fields are named: images[0].file."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


TYPE_WORDS = {"array": "a non-empty list", "object": "an object", "string": "a string"}


def describe(error: ValidationError) -> str:
    """One schema violation as a phrase naming the field: "missing field 'initializer'",
    "field 'edit_prompts[2]' must be a string containing '{}', got 'a ring'"."""
    where = _where(error.absolute_path)
    kind, value = error.validator, error.validator_value
    if kind == "required":
        missing = next(name for name in value if name not in error.instance)
        return f"{where} needs a {missing!r}" if where else f"missing field {missing!r}"
    if kind == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        name = f"{where}.{extra[0]}" if where else extra[0]
        return f"unknown field {name!r} (known: {', '.join(known)})"
    if not where:
        return "expected a JSON object"
    if kind == "enum":
        message = f"must be one of {', '.join(map(str, value))}"
    elif "x-message" in error.schema:
        message = error.schema["x-message"]
    elif kind == "type":
        message = f"must be {TYPE_WORDS.get(value, value)}"
    elif kind in ("minItems", "minProperties"):
        message = "must not be empty"
    else:
        message = error.message
    shown = error.instance
    short = isinstance(shown, str | int | float) and len(repr(shown)) < 60
    got = f", got {shown!r}" if short else ""
    return f"field {where!r} {message}{got}"


def schema_problem(data: Any) -> str | None:
    """The most relevant way `data` breaks the concept.json schema, or None."""
    error = best_match(_validator().iter_errors(data))
    return None if error is None else describe(error)


def load_concept(name_or_folder: str | Path) -> Concept:
    """Read and validate a concept folder (or shipped concept name)."""
    folder = concept_folder(name_or_folder)
    meta_path = folder / "concept.json"
    data = _read_meta(folder, meta_path)
    templates = data.get("templates")
    images, notes = _read_images(folder, meta_path, data.get("images"))
    return Concept(
        name=data["name"],
        placeholder=data["placeholder"],
        class_noun=data["class_noun"],
        initializer=data["initializer"],
        reconstruction_prompt=data["reconstruction_prompt"],
        edit_prompts=_edit_prompts(data.get("edit_prompts")),
        images=images,
        folder=folder,
        appearance=data.get("appearance"),
        templates=tuple(templates) if templates is not None else None,
        notes=notes,
    )


def _read_meta(folder: Path, meta_path: Path) -> dict:
    """concept.json as a dict that the schema accepts."""
    if not meta_path.is_file():
        raise PtibenchError(f"{folder}: no concept.json")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PtibenchError(f"cannot read {meta_path}: {error}") from error
    problem = schema_problem(data)
    if problem:
        raise PtibenchError(f"{meta_path}: {problem}")
    return data


def _edit_prompts(listed: list | None) -> tuple[EditPrompt, ...]:
    """The edit prompts (plain strings or {prompt, expect}); none listed = the default set."""
    if listed is None:  # real photos: the DreamBench-style default set
        listed = list(DEFAULT_EDIT_PROMPTS)
    items = [{"prompt": item} if isinstance(item, str) else item for item in listed]
    return tuple(EditPrompt(item["prompt"], item.get("expect")) for item in items)


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
    else:
        entries = listed
    if not entries:
        raise PtibenchError(f"{folder}: no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
    images, notes = [], []
    for i, entry in enumerate(entries):
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
