"""Bad input through the real command line: one clear line naming the file or value, a non-zero
exit, no traceback. Odd but usable concept images are converted or resized with a note.

The plugin's own option tests (test_plugin_options) cover the lr grid, --steps, --stage,
--method, unknown world/concept names; test_core_concept covers load_concept directly and
test_plugin_baselines the bad baseline files. Here, one run per kind of problem shows it reaches
the command line as one line: model paths, concept folders, values; and `ptibench report` on
bad results files. (Each pytester run costs seconds: the variants live in the unit tests.)
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from test_plugin_support import make_project, run

from ptibench.assets import concepts_root
from ptibench.harness.cli import main

pytest_plugins = ["pytester"]


def _one_error_line(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    everything = result.stdout.str() + result.stderr.str()
    assert len(errors) == 1, everything
    assert "Traceback" not in everything and "During handling" not in everything
    return errors[0]


def _bare_pipeline(path):
    (path / "model_index.json").parent.mkdir(parents=True)
    (path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')


@pytest.mark.parametrize(
    ("make", "value", "named"),
    [
        (None, "/no/such/model", "--world: world path /no/such/model does not exist"),
        (lambda p: (p / "empty").mkdir(), "empty", "is not a diffusers pipeline world"),
        (lambda p: _bare_pipeline(p / "bare"), "bare", "is a bare diffusers pipeline"),
    ],
)
def test_bad_model_paths_are_usage_errors(pytester, make, value, named):
    make_project(pytester)
    if make:
        make(pytester.path)
    line = _one_error_line(run(pytester, "--lr-grid", "1e-2", "--world", value))
    assert named in line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--pivot-lr", "nan"], "'nan' must be > 0"),
        (["--lr-grid", "1e-3,,1e-2"], "'' in '1e-3,,1e-2' is not a number"),
    ],
)
def test_more_bad_values_are_usage_errors(pytester, args, named):
    make_project(pytester)
    result = run(pytester, "--lr-grid", "1e-2", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "error:" in line]
    assert len(errors) == 1 and named in errors[0], result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def _concept(pytester) -> tuple:
    folder = pytester.path / "my-concept"
    shutil.copytree(concepts_root() / "yellow-ring", folder)
    meta = json.loads((folder / "concept.json").read_text())
    return folder, meta


def _no_images(folder, meta):
    for image in folder.glob("*.png"):
        image.unlink()
    meta.pop("images", None)


def _truncated(folder, meta):
    path = folder / meta["images"][1]["file"]
    path.write_bytes(path.read_bytes()[:60])
    return meta["images"][1]["file"]


def _missing_field(folder, meta):
    del meta["initializer"]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (_no_images, "no images"),
        (_truncated, "cannot read image"),
        (_missing_field, "concept.json: missing field 'initializer'"),
    ],
)
def test_bad_concept_folders_are_usage_errors(pytester, damage, named):
    make_project(pytester)
    folder, meta = _concept(pytester)
    file_name = damage(folder, meta)
    if (folder / "concept.json").exists():
        (folder / "concept.json").write_text(json.dumps(meta))
    line = _one_error_line(run(pytester, "--lr-grid", "1e-2", "--concept", str(folder)))
    assert line.startswith("ERROR: --concept:") and named in line
    assert str(folder) in line and (file_name is None or file_name in line)


def odd_images(folder, meta) -> list[str]:
    """Re-save the concept's images as RGBA, L, 16-bit grey and a larger size; the notes that
    loading them must give."""
    files = [entry["file"] for entry in meta["images"]]
    pixels = [np.asarray(Image.open(folder / name).convert("RGB")) for name in files]
    Image.fromarray(pixels[0]).convert("RGBA").save(folder / files[0])
    Image.fromarray(pixels[1]).convert("L").save(folder / files[1])
    grey = np.asarray(Image.fromarray(pixels[2]).convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey).save(folder / files[2])
    Image.fromarray(pixels[3]).resize((48, 40)).save(folder / files[3])
    return [
        f"{files[0]}: converted RGBA to RGB",
        f"{files[1]}: converted L to RGB",
        f"{files[2]}: converted I",  # I;16 or I, as PIL reads it back
        f"{files[3]}: resized 48x40 to 32x32",
    ]


def test_odd_images_are_converted_with_a_note_not_refused(pytester):
    make_project(pytester)
    folder, meta = _concept(pytester)
    notes = odd_images(folder, meta)
    result = run(
        pytester,
        "--lr-grid",
        "1e-2",
        "--stage",
        "inversion",
        "--update-baselines",
        "--concept",
        str(folder),
    )
    result.assert_outcomes(passed=1)
    shown = result.stdout.str()
    for note in notes[:3]:  # conversions show when the concept loads; resizing needs the model
        assert note in shown, shown


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "results.json: no such file"),
        ("", "not readable results JSON"),
        ('{"format": "ptibench-results", "cases": [', "not readable results JSON"),
        ("[1, 2]", "not a ptibench results file"),
        ('{"format": "ptibench-results", "cases": {}}', '"cases" must be a list'),
        ('{"format": "ptibench-results", "cases": [7]}', "cases[0] must be an object"),
        ('{"format": "ptibench-results", "cases": [{"status": "ok"}]}', 'needs a "spec"'),
        (
            '{"format": "ptibench-results", "cases": [{"spec": {"stage": "inversion"}}]}',
            "spec lacks world, concept, method, lr, seed",
        ),
    ],
)
def test_report_on_bad_results_is_one_line(tmp_path, capsys, content, named):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and str(tmp_path) in lines[0], captured.err
    assert captured.out == ""
