"""Concept-order curves: checkpointed evaluation leaves training bitwise untouched, the oracle
metrics count what they say, and the window / lead analysis and its report read the curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_plugin_support import BENCHMARK_TEST, run

from ptibench.concept import load_concept
from ptibench.evaluation import leakage
from ptibench.run.runner import run_case
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.studies.concept_order import analysis
from ptibench.studies.concept_order import report as concept_report
from ptibench.world.render import Attributes, render

pytest_plugins = ["pytester"]

QUICK = EvalConfig(samples_per_prompt=1, sample_steps=2)


@pytest.mark.parametrize("stage", ["inversion", "finetune"])
def test_checkpointed_run_ends_bitwise_identical(world, tmp_path, stage):
    spec = CaseSpec(
        stage=stage,
        lr=1e-2 if stage == "inversion" else 1e-3,
        world=world.name,
        steps=6,
        eval=QUICK,
    )
    plain = run_case(spec, cache_dir=tmp_path, progress=False)
    curved = run_case(spec.with_(eval_every=3), cache_dir=tmp_path, progress=False)
    assert not curved.from_cache and plain.status == curved.status == "ok"
    assert curved.metrics == plain.metrics  # exact float equality, every metric
    artifact = "learned_embeds" if stage == "inversion" else "lora"
    assert (
        Path(curved.artifacts[artifact]).read_bytes()
        == Path(plain.artifacts[artifact]).read_bytes()
    )
    assert not plain.curves
    assert [point["step"] for point in curved.curves] == [0, 3, 6]
    start, middle, end = curved.curves
    assert start["distance"] == 0.0 and middle["distance"] > 0
    for name in ("appearance_all", "appearance_recon", "context_copy", "leakage", "leakage_edit"):
        assert all(np.isfinite(point[name]) for point in curved.curves), name
    assert {k: end[k] for k in plain.metrics if k != "final_loss"} == {
        k: v for k, v in plain.metrics.items() if k != "final_loss"
    }


def _image(shape, colour, background, position, size="large"):
    return render(Attributes(shape, colour, background, position, size), np.random.default_rng(0))


def test_study_metrics_count_appearance_copies_and_wins():
    concept = load_concept("yellow-ring")
    probe = leakage.make_probe(concept)
    assert probe.appearance == {"shape": "ring", "colour": "yellow"}
    assert ("black", "left") in probe.contexts and len(probe.contexts) == 5
    prompts = [concept.reconstruction_prompt] + [e.prompt for e in concept.edit_prompts]
    free = [i for i in range(len(prompts)) if i not in probe.asking_rows]
    assert [prompts[i] for i in free] == ["a {}", "a small {}"]
    green = prompts.index("a {} on a green background")
    # every row: a yellow ring copying training context (black, left), except the green-background
    # row which obeys its prompt, and the recon row whose second sample is a red circle elsewhere
    rows = []
    for i in range(len(prompts)):
        if i == green:
            rows.append([_image("ring", "yellow", "green", "left")] * 2)
        elif i == 0:
            rows.append(
                [_image("ring", "yellow", "black", "left"), _image("circle", "red", "green", "top")]
            )
        else:
            rows.append([_image("ring", "yellow", "black", "left")] * 2)
    images = np.stack([np.stack(r) for r in rows])
    metrics = leakage.study_metrics(probe, images, base_wins=0.0)
    assert metrics["appearance_recon"] == 0.5
    assert metrics["appearance_all"] == pytest.approx(1 - 1 / (2 * len(prompts)))
    copies = [probe.copies(row) for row in leakage.read_rows(images[free])]
    assert copies == [[True, False], [True, True]]
    # asking rows: "green background" and "at the left" are obeyed by (green|black, left); every
    # other one (the "black background at the center" too) is missed for a training context
    asking = len(probe.asking_rows)
    assert asking == 8
    assert metrics["context_wins"] == pytest.approx((asking - 2) / asking)
    assert metrics["leakage_edit"] == metrics["context_wins"]
    assert "leakage" not in metrics  # the case metric's, not the study's own


def _case(stage, lr, appearance, leakage, distance, status="ok"):
    steps = [0, 100, 200, 300, 400]
    return {
        "spec": {"stage": stage, "lr": lr, "seed": 0},
        "status": status,
        "curves": [
            {
                "step": s,
                "appearance_all": a,
                "leakage": leak,
                "leakage_edit": leak / 2,
                "distance": d,
            }
            for s, a, leak, d in zip(steps, appearance, leakage, distance, strict=True)
        ],
    }


CASES = [
    _case("finetune", 1e-4, [0.2, 0.22, 0.22, 0.23, 0.24], [0, 0, 0, 0, 0], [0, 1, 2, 3, 4]),
    _case("finetune", 1e-3, [0.2, 0.5, 0.9, 1.0, 1.0], [0, 0, 0.05, 0.3, 0.5], [0, 2, 4, 6, 8]),
    _case("finetune", 1e-2, [0.2, 1.0, 1.0, 0.9, 0.8], [0, 0.3, 0.6, 0.6, 0.7], [0, 9, 18, 27, 36]),
    _case("inversion", 1e-1, [0.0, 0.3, 0.5, 0.6, 0.6], [0, 0, 0, 0, 0.05], [0, 1, 2, 3, 4]),
]


def test_window_and_lead_from_curves():
    stages = analysis.analyse(CASES)
    assert list(stages) == ["inversion", "finetune"]
    low, mid, high = stages["finetune"]
    assert low.appearance_step is None and low.verdict == "no appearance gain"
    assert mid.appearance_step == 200 and mid.leakage_step == 300
    assert (mid.lead_steps, mid.lead_distance) == (100, 2)
    assert mid.window == [200] and mid.verdict == "appearance first"
    assert high.appearance_step == 100 == high.leakage_step and high.window == []
    (inversion,) = stages["inversion"]
    assert inversion.appearance_step == 200 and inversion.leakage_step is None
    assert inversion.window == [200, 300, 400]
    line = concept_report.summary_lines({"cases": CASES})[1]
    assert line.startswith("concept order finetune: appearance first at 1/2 lrs")
    assert "light window: 1e-03@200" in line


def test_appearance_can_be_read_from_the_reconstruction_prompt():
    """--appearance recon reads the curve from `appearance_recon`; curves without it yield none."""
    case = _case("finetune", 1e-3, [0.3] * 5, [0, 0, 0.5, 0.5, 0.5], [0, 1, 2, 3, 4])
    for point, recon in zip(case["curves"], [0.25, 1.0, 1.0, 1.0, 1.0], strict=True):
        point["appearance_recon"] = recon
    everything = analysis.summarise(case)
    recon = analysis.summarise(case, appearance="recon")
    assert everything.verdict == "no appearance gain"
    assert recon.appearance_step == 100 and recon.leakage_step == 200 and recon.lead_steps == 100
    assert analysis.summarise(CASES[0], appearance="recon") is None
    assert "the reconstruction prompt" in concept_report.markdown(
        {"cases": [case]}, appearance="recon"
    )


def test_render_writes_table_and_plot(tmp_path):
    paths = concept_report.render(tmp_path, {"cases": CASES})
    assert [p.name for p in paths] == ["concept_order.md", "concept_order.png"]
    text = (tmp_path / "concept_order.md").read_text()
    assert "## finetune" in text and "| 1e-03 | 0 | 0.20->1.00 | 200 (4) |" in text
    assert (tmp_path / "concept_order.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        concept_report.render(
            tmp_path / "none",
            {"cases": [{"spec": {"stage": "finetune", "lr": 1}, "status": "ok", "curves": []}]},
        )
        == []
    )


CURVED_CONFTEST = """
import pytest
from ptibench.spec import CaseResult

@pytest.hookimpl(tryfirst=True)
def pytest_ptibench_run_case(spec, config):
    every = spec.eval_every
    steps = list(range(0, spec.steps + 1, every)) if every else []
    curves = [{"step": s, "appearance_all": min(1.0, s * spec.lr), "leakage": s * spec.lr / 4,
               "distance": s * spec.lr} for s in steps]
    metrics = {"clip_i": 0.5 + spec.lr, "clip_t": 0.3 - spec.lr / 10, "distance": spec.lr}
    return CaseResult(spec=spec, status="ok", metrics=metrics, curves=curves,
                      environment={"device": "cpu"})
"""


def test_plugin_eval_every_option_reaches_the_specs_and_the_report(pytester):
    pytester.makeconftest(CURVED_CONFTEST)
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)
    args = ("--lr-grid", "1e-3,3e-3,1e-2", "--stage", "finetune", "--steps", "400")
    result = run(
        pytester, *args, "--eval-every", "100", "--update-baselines", "--ptibench-out", "out"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["concept order finetune: *light window*"])
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    assert {case["spec"]["eval_every"] for case in document["cases"]} == {100}
    assert (pytester.path / "out" / "concept_order.png").is_file()
    # the baselines recorded with --eval-every apply to a plain run (eval_every has no effect)
    plain = run(pytester, *args, "--ptibench-out", "out-2")
    assert plain.ret == 0
    assert not (pytester.path / "out-2" / "concept_order.md").exists()
    bad = run(pytester, *args, "--eval-every", "0")
    assert bad.ret != 0
