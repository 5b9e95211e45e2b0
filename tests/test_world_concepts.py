"""Concepts without code: `python -m ptibench.world concept ...` writes a tiny-world concept folder
that loads and runs, and concept.json (both kinds) is checked against the published JSON Schema
with one line naming the field."""

from __future__ import annotations

import copy
import json

import jsonschema
import numpy as np
import pytest
from PIL import Image

from ptibench.assets import concepts_root
from ptibench.concept import SCHEMA_PATH, concept_schema, load_concept, schema_problem
from ptibench.errors import PtibenchError
from ptibench.run.runner import run_case
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.world.__main__ import main
from ptibench.world.concepts import CONCEPTS, write_concept
from ptibench.world.oracle import read
from ptibench.world.render import COLOURS, NOVEL_SHAPES, POSITIONS, SHAPES, SIZES


def test_the_command_writes_a_concept_the_oracle_reads_back(tmp_path, capsys):
    folder = tmp_path / "red-star"
    contexts = "black:left,blue:top,white:bottom"
    args = ["concept", "--shape", "star", "--colour", "red", "--initializer", "cross"]
    assert main([*args, "--contexts", contexts, "--out", str(folder)]) == 0
    assert f"wrote {folder}" in capsys.readouterr().out
    concept = load_concept(str(folder))
    assert (concept.name, concept.placeholder, concept.initializer) == (
        "red-star",
        "<red-star>",
        "cross",
    )
    assert concept.appearance == {"shape": "star", "colour": "red", "size": "large"}
    assert not any(e.expect.get("background") == "red" for e in concept.edit_prompts)
    for image, (background, position) in zip(
        concept.images, [c.split(":") for c in contexts.split(",")], strict=True
    ):
        assert image.meta == {"background": background, "position": position}
        seen = read(np.asarray(Image.open(image.file)))
        assert (seen.colour, seen.background, seen.position) == ("red", background, position)


def test_a_concept_from_the_command_runs_a_case(tmp_path):
    folder = tmp_path / "blue-ring"
    args = ["concept", "--shape", "ring", "--colour", "blue", "--contexts", "white:left"]
    assert main([*args, "--out", str(folder)]) == 0
    spec = CaseSpec(
        stage="inversion",
        lr=1e-2,
        concept=str(folder),
        steps=2,
        eval=EvalConfig(samples_per_prompt=1, sample_steps=1),
    )
    result = run_case(spec, cache_dir=tmp_path / "cache", progress=False)
    assert result.status == "ok" and 0.0 <= result.metrics["appearance"] <= 1.0


def test_the_shipped_concepts_are_what_the_command_writes(tmp_path):
    for name in CONCEPTS:
        written = write_concept(tmp_path, name)
        shipped = concepts_root() / name
        assert sorted(p.name for p in written.iterdir()) == sorted(
            p.name for p in shipped.iterdir()
        )
        for path in written.iterdir():
            assert path.read_bytes() == (shipped / path.name).read_bytes(), path.name


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--shape", "ring", "--colour", "purple"], "unknown colour 'purple'"),
        (["--shape", "ring", "--colour", "red", "--contexts", "red:left"], "invisible on red"),
        (["--shape", "ring", "--colour", "red", "--contexts", "blue:middle"], "position 'middle'"),
        (["--shape", "star", "--colour", "red"], "--initializer is needed"),
    ],
)
def test_bad_attributes_are_one_line(tmp_path, capsys, args, named):
    assert main(["concept", *args, "--out", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and named in error[0]
    assert not (tmp_path / "c").exists()


def test_an_existing_concept_is_kept_without_force(tmp_path, capsys):
    args = ["concept", "--shape", "ring", "--colour", "red", "--out", str(tmp_path / "c")]
    assert main(args) == 0
    before = (tmp_path / "c" / "concept.json").read_text()
    assert main([*args, "--class-noun", "hoop"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "c" / "concept.json").read_text() == before
    assert main([*args, "--class-noun", "hoop", "--force"]) == 0
    assert load_concept(str(tmp_path / "c")).class_noun == "hoop"


# --- the schema


def test_the_schema_is_valid_and_accepts_both_kinds():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)
    for name in CONCEPTS:
        shipped = json.loads((concepts_root() / name / "concept.json").read_text())
        jsonschema.validate(shipped, schema)
    photos = {
        "name": "my-mug",
        "placeholder": "<my-mug>",
        "class_noun": "mug",
        "initializer": "mug",
        "reconstruction_prompt": "a photo of a {}",
        "edit_prompts": ["a {} in the snow", {"prompt": "a red {}"}],
    }
    jsonschema.validate(photos, schema)


def test_the_schema_speaks_the_worlds_vocabulary():
    defs = concept_schema()["$defs"]
    assert defs["colour"]["enum"] == list(COLOURS)
    assert defs["shape"]["enum"] == [*SHAPES, *NOVEL_SHAPES]
    assert defs["position"]["enum"] == list(POSITIONS)
    assert defs["size"]["enum"] == list(SIZES)


def _shipped():
    return json.loads((concepts_root() / "yellow-ring" / "concept.json").read_text())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.pop("class_noun"), "missing field 'class_noun'"),
        (lambda d: d.update(placeholder=" "), "field 'placeholder' must be a non-empty string"),
        (lambda d: d["edit_prompts"].append("a ring"), "'edit_prompts[9]' must be a string "),
        (lambda d: d["edit_prompts"].append({}), "edit_prompts[9] needs a 'prompt'"),
        (
            lambda d: d["edit_prompts"][0]["expect"].update(background="pink"),
            "'edit_prompts[0].expect.background' must be one of red, yellow",
        ),
        (lambda d: d["images"][1].update(position="middle"), "'images[1].position' must be one"),
        (lambda d: d["images"][2].pop("file"), "images[2] needs a 'file'"),
        (lambda d: d.update(appearance=[]), "'appearance' must be an object of tiny-world"),
        (lambda d: d.update(edit_prompts=[]), "field 'edit_prompts' must not be empty"),
        (lambda d: d.update(edit_prompt=[]), "unknown field 'edit_prompt' (known: "),
        (lambda d: d.clear() or d.update(x=1), "missing field 'name'"),
    ],
)
def test_schema_problems_name_the_field(damage, message):
    data = _shipped()
    damage(data)
    assert message in schema_problem(data)
    assert schema_problem(copy.deepcopy(_shipped())) is None


def test_load_concept_reports_the_schema_problem_with_the_file(tmp_path):
    folder = tmp_path / "c"
    write_concept(tmp_path, "yellow-ring").rename(folder)
    data = json.loads((folder / "concept.json").read_text())
    data["appearance"]["colour"] = "gold"
    (folder / "concept.json").write_text(json.dumps(data))
    with pytest.raises(PtibenchError) as info:
        load_concept(str(folder))
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{folder / 'concept.json'}: ")
    assert "field 'appearance.colour' must be one of red" in line and "got 'gold'" in line
