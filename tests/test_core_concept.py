"""Concept folders: what loads, what is converted with a note, what is refused with one line."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from ptibench.assets import concepts_root
from ptibench.concept import ConceptWarning, load_concept
from ptibench.errors import PtibenchError


@pytest.fixture
def concept_dir(tmp_path):
    folder = tmp_path / "yellow-ring"
    shutil.copytree(concepts_root() / "yellow-ring", folder)
    return folder


def _meta(folder):
    return json.loads((folder / "concept.json").read_text())


def _write_meta(folder, data):
    (folder / "concept.json").write_text(json.dumps(data))


def test_shipped_concept_loads():
    concept = load_concept("yellow-ring")
    assert concept.placeholder == "<yellow-ring>"
    assert len(concept.images) == 5 and concept.images[0].pixels.dtype == np.uint8
    assert concept.images[0].meta == {"background": "black", "position": "left"}
    assert concept.with_class_noun(concept.edit_prompts[0].prompt).startswith("a ring ")
    assert concept.notes == ()


def test_folder_path_loads(concept_dir):
    assert load_concept(str(concept_dir)).name == "yellow-ring"


@pytest.mark.parametrize("name", ["no-such-concept", "/no/such/folder"])
def test_missing_concept_is_one_line(name):
    with pytest.raises(PtibenchError) as info:
        load_concept(name)
    message = str(info.value)
    assert "\n" not in message and name.strip("/").split("/")[-1] in message


def test_no_images(concept_dir):
    data = _meta(concept_dir)
    del data["images"]
    _write_meta(concept_dir, data)
    for png in concept_dir.glob("*.png"):
        png.unlink()
    with pytest.raises(PtibenchError, match="no images"):
        load_concept(str(concept_dir))


def test_truncated_image_names_the_file(concept_dir):
    path = concept_dir / "02.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(PtibenchError, match="02.png"):
        load_concept(str(concept_dir))


def test_unreadable_image_names_the_file(concept_dir):
    (concept_dir / "03.png").write_bytes(b"this is not a png")
    with pytest.raises(PtibenchError, match="03.png"):
        load_concept(str(concept_dir))


@pytest.mark.parametrize("field", ["placeholder", "initializer", "class_noun"])
def test_missing_field_names_it(concept_dir, field):
    data = _meta(concept_dir)
    del data[field]
    _write_meta(concept_dir, data)
    with pytest.raises(PtibenchError, match=f"missing field '{field}'"):
        load_concept(str(concept_dir))


def test_corrupt_json(concept_dir):
    (concept_dir / "concept.json").write_text("{not json")
    with pytest.raises(PtibenchError, match="concept.json"):
        load_concept(str(concept_dir))


def test_prompt_without_slot_is_refused(concept_dir):
    data = _meta(concept_dir)
    data["reconstruction_prompt"] = "a ring"
    _write_meta(concept_dir, data)
    with pytest.raises(PtibenchError, match="reconstruction_prompt"):
        load_concept(str(concept_dir))


def test_odd_modes_are_converted_with_a_note(concept_dir):
    rgb = np.asarray(Image.open(concept_dir / "00.png"))
    Image.fromarray(rgb).convert("RGBA").save(concept_dir / "00.png")
    Image.fromarray(rgb).convert("L").save(concept_dir / "01.png")
    grey16 = (rgb[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(concept_dir / "02.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        concept = load_concept(str(concept_dir))
    assert all(img.pixels.shape == (32, 32, 3) for img in concept.images)
    assert np.array_equal(concept.images[0].pixels, rgb)
    assert np.array_equal(concept.images[2].pixels[..., 0], rgb[..., 0])
    assert len(concept.notes) == 3 and any(issubclass(w.category, ConceptWarning) for w in caught)


def test_other_sizes_are_resized_with_a_note(concept_dir):
    image = Image.open(concept_dir / "04.png").resize((48, 40))
    image.save(concept_dir / "04.png")
    concept = load_concept(str(concept_dir))
    with pytest.warns(ConceptWarning, match="04.png"):
        pixels, notes = concept.pixels(32)
    assert pixels.shape == (5, 32, 32, 3) and len(notes) == 1
