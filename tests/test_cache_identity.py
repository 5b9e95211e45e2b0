"""A cache that cannot replay stale numbers: the key covers ptibench's own computing code and the
versions of the libraries that compute, --no-cache reads nothing computed before, and
`ptibench cache list|prune` shows and removes what this code will never read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_plugin_support import BENCHMARK_TEST, run

from ptibench.concept import concept_folder
from ptibench.harness.cli import main
from ptibench.models.random_weights import write_random_world
from ptibench.provenance import source_digest
from ptibench.run.cache import (
    ENTRY_NAME,
    NUMBER_LIBRARIES,
    REPORTING_LAYERS,
    ResultCache,
    case_key,
    code_version,
    inventory,
)
from ptibench.spec import CaseResult, CaseSpec
from ptibench.training.methods import get_method

pytest_plugins = ["pytester"]

SRC = Path(__file__).resolve().parents[1] / "src"

RUN_TWICE = textwrap.dedent(
    """
    import json, sys
    import ptibench
    from ptibench.run.runner import run_case
    from ptibench.spec import CaseSpec, EvalConfig

    spec = CaseSpec(stage="inversion", lr=1e-3, world=sys.argv[1], steps=3,
                    eval=EvalConfig(samples_per_prompt=1, sample_steps=2))
    runs = [run_case(spec, cache_dir=sys.argv[2], progress=False)
            for _ in range(int(sys.argv[3]))]
    print(json.dumps({"package": ptibench.__file__,
                      "runs": [{"from_cache": r.from_cache, "metrics": r.metrics} for r in runs]}))
    """
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")


def test_the_source_digest_covers_computing_code_not_reports(tmp_path):
    for folder in ("evaluation", "results"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "metrics.py").write_text("SCALE = 1.0\n")
    (tmp_path / "evaluation" / "__pycache__").mkdir()
    skip = ("results",)
    before = source_digest(tmp_path, skip)
    source_digest.cache_clear()
    (tmp_path / "results" / "metrics.py").write_text("SCALE = 2.0\n")
    (tmp_path / "evaluation" / "__pycache__" / "metrics.cpython-311.pyc").write_bytes(b"x")
    assert source_digest(tmp_path, skip) == before
    source_digest.cache_clear()
    (tmp_path / "evaluation" / "metrics.py").write_text("SCALE = 0.5\n")
    assert source_digest(tmp_path, skip) != before
    assert set(REPORTING_LAYERS) == {"harness", "results", "studies"}
    assert {"torch", "diffusers", "transformers", "peft", "open_clip_torch", "lpips"} <= set(
        NUMBER_LIBRARIES
    )


def test_an_entry_name_carries_the_code_version(tmp_path):
    spec = CaseSpec(stage="inversion", lr=1e-3)
    entry = ResultCache(tmp_path).entry(spec, "0123abcd", get_method("pti"))
    match = ENTRY_NAME.fullmatch(entry.name)
    assert match and match["code"] == code_version() and match["world"] == "0123abcd"
    assert match["case"] == case_key(spec)


def test_an_edited_concept_is_a_new_case(tmp_path):
    concept = tmp_path / "ring"
    shutil.copytree(concept_folder("yellow-ring"), concept)
    spec = CaseSpec(stage="inversion", lr=1e-3, concept=str(concept))
    before = case_key(spec)
    assert case_key(spec.with_(lr=2e-3)) != before
    image = sorted(p for p in concept.iterdir() if p.suffix == ".png")[0]
    image.write_bytes(image.read_bytes() + b"\0")
    assert case_key(spec) != before


def _run_copy(src: Path, world, cache: Path, times: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", RUN_TWICE, world.name, str(cache), str(times)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(src), "the copy is what runs"
    return report


def test_a_changed_line_of_evaluation_code_reruns_the_case(world, tmp_path):
    """The issue's deliberate regression: clip_i lowered by 0.5 in a copy of the sources. With
    the same cache, the case is computed again and shows the regression; a change in the
    reporting layers keeps the entry."""
    copy = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(SRC / "ptibench", copy / "ptibench", ignore=ignore)
    cache = tmp_path / "cache"

    first = _run_copy(copy, world, cache, 2)["runs"]
    assert [r["from_cache"] for r in first] == [False, True]

    report_code = copy / "ptibench" / "results" / "report.py"
    report_code.write_text(report_code.read_text() + "\n# a comment in the reporting layer\n")
    assert _run_copy(copy, world, cache, 1)["runs"][0]["from_cache"] is True

    evaluation = copy / "ptibench" / "evaluation" / "evaluate.py"
    text = evaluation.read_text()
    line = '"clip_i": float(clip_matrix.mean()),'
    assert text.count(line) == 1
    evaluation.write_text(text.replace(line, '"clip_i": float(clip_matrix.mean()) - 0.5,'))
    (changed,) = _run_copy(copy, world, cache, 1)["runs"]
    assert changed["from_cache"] is False
    assert changed["metrics"]["clip_i"] == pytest.approx(first[0]["metrics"]["clip_i"] - 0.5)
    assert changed["metrics"]["lpips"] == first[0]["metrics"]["lpips"]
    entries = [item for item in inventory(cache) if item.kind == "entry"]
    assert len(entries) == 2, "the old entry stays until pruned"


def test_no_cache_reads_nothing_computed_before(pytester, world):
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)
    tiny = [
        *("--world", world.name, "--lr-grid", "1e-3", "--stage", "inversion,finetune"),
        *("--steps", "3", "--samples-per-prompt", "1", "--sample-steps", "2"),
        *("--ptibench-cache", "cache", "--ptibench-baselines", "baselines"),
    ]

    def cases(out: str) -> dict[str, dict]:
        document = json.loads((pytester.path / out / "results.json").read_text())
        return {case["spec"]["stage"]: case for case in document["cases"]}

    run(pytester, *tiny, "--ptibench-out", "first").assert_outcomes(passed=2)
    run(pytester, *tiny, "--ptibench-out", "again").assert_outcomes(passed=2)
    assert all(case["from_cache"] for case in cases("again").values())
    fresh = run(pytester, *tiny, "--ptibench-out", "fresh", "--no-cache")
    fresh.assert_outcomes(passed=2)
    computed = cases("fresh")
    assert not any(case["from_cache"] for case in computed.values())
    folders = list((pytester.path / "cache" / "fresh").iterdir())
    assert len(folders) == 1
    assert list((folders[0] / "pivots").iterdir()), "the pivot was trained again, in there"
    entries = [p for p in folders[0].iterdir() if (p / "result.json").is_file()]
    assert len(entries) == 2, "both cases were computed into the session's fresh folder"
    for case in computed.values():
        assert case["metrics"] == cases("first")[case["spec"]["stage"]]["metrics"]


def _fake_entry(root: Path, name: str, lr: float) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    result = CaseResult(CaseSpec(stage="inversion", lr=lr), "ok", {"lpips": 0.5})
    (folder / "result.json").write_text(json.dumps(result.to_dict()))
    return folder


def test_cache_list_and_prune(tmp_path, capsys):
    cache = tmp_path / "cache"
    method = get_method("pti")
    current = ResultCache(cache).entry(CaseSpec(stage="inversion", lr=1e-3), "0123abcd", method)
    _fake_entry(cache, current.name, 1e-3)
    other_code = "ffffffff" if code_version() != "ffffffff" else "00000000"
    stale = current.name.removesuffix(code_version()) + other_code
    _fake_entry(cache, stale, 1e-2)
    before_code_versions = "0" * 16 + "-0123abcd-" + current.name.split("-")[2]
    _fake_entry(cache, before_code_versions, 1e-1)
    for name in (current.name, stale):
        (cache / "pivots" / name).mkdir(parents=True)
        (cache / "pivots" / name / "learned_embeds.safetensors").write_bytes(b"x")
    old_run = cache / "fresh" / "20260101-000000-1-abcdef"
    old_run.mkdir(parents=True)
    long_ago = time.time() - 7200
    os.utime(old_run, (long_ago, long_ago))
    recent_run = cache / "fresh" / "20260101-000001-2-abcdef"
    recent_run.mkdir()
    (cache / "notes").mkdir()  # not ptibench's: never listed, never removed

    assert main(["cache", "list", "--cache", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert "3 entries, 2 pivots, 2 --no-cache runs;" in listing
    assert "4 item(s) this code will not read" in listing
    assert "notes" not in listing

    assert main(["cache", "prune", "--cache", str(cache), "--dry-run"]) == 0
    assert "would remove 2 entries, 1 pivot, 1 --no-cache run" in capsys.readouterr().out
    assert (cache / stale).is_dir()

    assert main(["cache", "prune", "--cache", str(cache)]) == 0
    assert "removed 2 entries, 1 pivot, 1 --no-cache run" in capsys.readouterr().out
    left = sorted(p.relative_to(cache).as_posix() for p in cache.glob("*/*")) + sorted(
        p.name for p in cache.iterdir()
    )
    assert f"pivots/{current.name}" in left and current.name in left
    assert stale not in left and before_code_versions not in left
    assert "fresh/20260101-000001-2-abcdef" in left and "notes" in left

    assert main(["cache", "prune", "--cache", str(cache), "--all"]) == 0
    assert [p.name for p in cache.iterdir() if p.name not in ("pivots", "fresh")] == ["notes"]
    assert not list((cache / "pivots").iterdir()) and not list((cache / "fresh").iterdir())


def test_cache_commands_on_a_missing_folder(tmp_path, capsys):
    assert main(["cache", "list", "--cache", str(tmp_path / "nowhere")]) == 0
    assert "empty" in capsys.readouterr().out
    assert main(["cache", "prune", "--cache", str(tmp_path / "nowhere")]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_xdist_workers_share_the_controllers_fresh_cache(tmp_path, monkeypatch):
    from argparse import Namespace

    from ptibench.grids import LrGrid
    from ptibench.harness.session import FRESH_CACHE_ENV, session_cache_dir

    monkeypatch.delenv(FRESH_CACHE_ENV, raising=False)
    opt = Namespace(ptibench_cache="cache", no_cache=False, lr_grid=LrGrid(preset="quick"))
    assert session_cache_dir(opt, tmp_path, is_worker=False) == tmp_path / "cache"
    opt.no_cache = True
    controller = session_cache_dir(opt, tmp_path, is_worker=False)
    assert controller.parent == tmp_path / "cache" / "fresh" and controller.is_dir()
    assert session_cache_dir(opt, tmp_path, is_worker=True) == controller
    assert session_cache_dir(opt, tmp_path, is_worker=False) != controller, "a new session"


def test_device_and_dtype_are_part_of_the_key(world, tmp_path):
    """They enter through the world version (the world's settings, its device type among
    them), which is part of every entry name."""
    from dataclasses import replace

    from ptibench.models.loading import world_version

    cache, method = ResultCache(tmp_path), get_method("pti")
    spec = CaseSpec(stage="inversion", lr=1e-3, world=world.name)
    names = {
        cache.entry(spec, world_version(config), method).name
        for config in (world, replace(world, dtype="bfloat16"), replace(world, device="meta"))
    }
    assert len(names) == 3
