"""The regression check itself, on the shipped tiny world: cases of the CI grid (1000 steps)
against the stored baselines (recorded with three training seeds, tolerances from their
spread):

- it does not cry wolf: a training seed the baselines never saw passes >= 95% of the metric
  checks of two lrs per stage of the CI grid;
- it catches what matters: each injected regression (lr silently halved, LoRA scale zero at
  inference, the placeholder not spliced, the pivot replaced by the initial embedding) fails at
  least one metric of at least one case;
- edit prompts without the placeholder, which the check cannot see on the tiny world (the base
  model follows the edits as well as the concept does, and `edit_identity` varies over the
  three recorded seeds by more than its value), cannot be built: `EditPrompt` refuses them.

A training injection is a monkeypatch of the running code under which the case is trained
again in a fresh cache (the cache key does not see a monkeypatch); an evaluation injection
evaluates the case trained once with the changed inputs (the control: unchanged, it passes).
The catch table is written to the test's temporary folder and printed (`pytest -s`).
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import torch

from ptibench.concept import load_concept
from ptibench.grids import PRESETS
from ptibench.models.loading import world_version
from ptibench.models.registry import resolve_world
from ptibench.results import baselines
from ptibench.run import runner as runner_module
from ptibench.run.cache import ResultCache
from ptibench.run.runner import CaseRun, case_metrics, run_case
from ptibench.spec import CaseResult, CaseSpec
from ptibench.training.methods import Method, get_method

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "baselines"
NEW_SEED = 6
"""A training seed the stored CI baselines do not hold (stage 1: seeds 0-2; stage 2: 0-5),
asserted before any training."""


SEED_CHECK_LRS = {"inversion": (3e-2, 1.0), "finetune": (3e-4, 3e-3)}
"""Per stage, the CI-grid lrs a new seed is trained at (each alone): a chaotic one and a high one
for stage 1, the low and the high one of stage 2."""


def seed_check_specs(seed: int) -> list[CaseSpec]:
    return [
        CaseSpec(stage=stage, lr=lr, seed=seed)
        for stage, lrs in SEED_CHECK_LRS.items()
        for lr in lrs
    ]


def stored(spec: CaseSpec) -> baselines.Lookup:
    """The seed-spread baseline of `spec`; asserted before any training, so a missing one fails
    at once."""
    found = baselines.lookup(BASELINES, spec)
    assert found.summary is not None, f"no seed-spread baseline for {spec.key()}: {found.reason}"
    return found


def check(found: baselines.Lookup, result) -> baselines.Comparison:
    return baselines.compare(found.entry, result, found.summary)


def test_ci_runs_the_ci_grid_against_its_baselines():
    """.ci/run runs this grid, strict (a missing baseline fails)."""
    script = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in script.splitlines() if "--lr-grid ci" in line)
    words = shlex.split(command)
    assert "--steps" not in words and "--samples-per-prompt" not in words
    assert "--ptibench-strict" in words
    assert PRESETS["ci"]["inversion"] == PRESETS["default"]["inversion"]
    assert set(PRESETS["ci"]["finetune"]) <= set(PRESETS["default"]["finetune"])
    for stage, lrs in SEED_CHECK_LRS.items():
        assert set(lrs) <= set(PRESETS["ci"][stage])


def test_a_new_training_seed_passes_the_ci_grid(tmp_path):
    checks = failed = 0
    lines = []
    found = {spec: stored(spec) for spec in seed_check_specs(NEW_SEED)}
    for spec, lookup in found.items():
        assert NEW_SEED not in lookup.summary["seeds"], f"{spec.key()}: not a new seed"
    for spec in seed_check_specs(NEW_SEED):
        result = run_case(spec, cache_dir=tmp_path / "cache", progress=False)
        comparison = check(found[spec], result)
        for row in comparison.rows:
            checks += 1
            failed += row.verdict == "FAIL"
        if not comparison.passed:
            lines.append(f"{spec.key()}\n{baselines.format_rows(comparison.rows)}")
    rate = 1 - failed / checks
    print(f"\nseed {NEW_SEED}: {checks - failed}/{checks} metric checks pass ({rate:.1%})")
    assert checks >= 20
    assert rate >= 0.95, "\n".join(lines)


def _halved_lr(monkeypatch):
    original = Method.optimizer

    def optimizer(self, stage, params, lr):
        return original(self, stage, params, lr / 2)

    monkeypatch.setattr(Method, "optimizer", optimizer)


def _pivot_is_initial(monkeypatch):
    def get_pivot(ctx, method, path):
        return ctx.bundle.word_embedding(ctx.concept.initializer).to(ctx.bundle.device), True

    monkeypatch.setattr(runner_module, "get_pivot", get_pivot)


def _lora_scale_zero(run, vector, unet):
    from peft.tuners.lora import LoraLayer

    saved = []
    for module in unet.modules() if unet is not None else ():
        if isinstance(module, LoraLayer):
            saved.append((module, dict(module.scaling)))
            for name in module.scaling:
                module.scaling[name] = 0.0

    def restore():
        for module, scaling in saved:
            module.scaling.update(scaling)

    return vector, unet, restore


def _not_spliced(run, vector, unet):
    initial = run.bundle.word_embedding(run.concept.initializer).to(vector.device)
    return initial.reshape(vector.shape), unet, lambda: None


# Training injections rerun the case under a monkeypatch; evaluation injections evaluate the
# case trained once (per stage, its high CI lr) with the changed inputs.
TRAINING_INJECTIONS = {
    "lr halved": (_halved_lr, ["inversion"]),
    "pivot = initial embedding": (_pivot_is_initial, ["finetune"]),
}
EVALUATION_INJECTIONS = {
    "LoRA scale zero at inference": (_lora_scale_zero, ["finetune"]),
    "placeholder not spliced": (_not_spliced, ["inversion", "finetune"]),
}


def high_lr(stage: str) -> CaseSpec:
    return CaseSpec(stage=stage, lr=PRESETS["ci"][stage][-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """stage -> (CaseRun, its outcome): each stage's high-lr CI case trained once."""
    made: dict[str, tuple] = {}

    def get(stage: str):
        if stage not in made:
            spec = high_lr(stage)
            world = resolve_world(spec.world)
            cache = ResultCache(tmp_path_factory.mktemp(f"cache-{stage}"))
            method = get_method(spec.method)
            run = CaseRun(
                spec,
                world,
                world_version(world),
                load_concept(spec.concept),
                method,
                cache,
                tmp_path_factory.mktemp(f"staging-{stage}"),
                False,
            )
            run.load()
            with torch.random.fork_rng(devices=[]):
                made[stage] = (run, run.train(None))
        return made[stage]

    return get


def measured(run: CaseRun, outcome, change=None) -> CaseResult:
    """The case's metrics as run_case reports them, evaluated through `change` if given."""
    vector, unet, restore = (outcome.vector, outcome.unet, lambda: None)
    if change is not None:
        vector, unet, restore = change(run, vector, unet)
    try:
        evaluation = run.evaluate(vector, unet, False)
    finally:
        restore()
    return CaseResult(
        spec=run.spec, status=outcome.status, metrics=case_metrics(outcome, evaluation)
    )


def failing_metrics(comparison: baselines.Comparison) -> list[str]:
    failing = [row.metric for row in comparison.rows if row.verdict in ("FAIL", "missing")]
    if comparison.status_note and not comparison.passed:
        failing.append(comparison.status_note)
    return failing


@pytest.fixture(scope="module")
def catch_table(tmp_path_factory):
    rows: dict[str, str] = {}
    yield rows
    lines = ["| injected regression | caught by |", "|---|---|"]
    lines += [f"| {name} | {caught} |" for name, caught in rows.items()]
    table = "\n".join(lines)
    (tmp_path_factory.getbasetemp() / "catch-table.md").write_text(table + "\n")
    print("\n" + table)


@pytest.mark.parametrize("stage", ["inversion", "finetune"])
def test_the_shared_training_passes_its_baseline_unchanged(stage, trained):
    """The control: the trained cases the evaluation injections reuse pass, so a failure
    under an injection is the injection's."""
    found = stored(high_lr(stage))
    comparison = check(found, measured(*trained(stage)))
    assert comparison.passed, baselines.format_rows(comparison.rows)


@pytest.mark.parametrize("name", list(EVALUATION_INJECTIONS))
def test_an_injected_evaluation_regression_is_caught(name, trained, catch_table):
    change, stages = EVALUATION_INJECTIONS[name]
    found = {stage: stored(high_lr(stage)) for stage in stages}
    caught = []
    for stage in stages:
        failing = failing_metrics(check(found[stage], measured(*trained(stage), change)))
        if failing:
            caught.append(f"{stage} {high_lr(stage).lr_id}: {', '.join(failing)}")
    catch_table[name] = "; ".join(caught) or "NOT CAUGHT"
    assert caught, f"{name}: no CI-grid case failed its baseline"


@pytest.mark.parametrize("name", list(TRAINING_INJECTIONS))
def test_an_injected_training_regression_is_caught(name, monkeypatch, tmp_path, catch_table):
    inject, stages = TRAINING_INJECTIONS[name]
    found = {stage: stored(high_lr(stage)) for stage in stages}
    inject(monkeypatch)
    caught = []
    for stage in stages:
        with torch.random.fork_rng(devices=[]):
            result = run_case(high_lr(stage), cache_dir=tmp_path / "cache", progress=False)
        failing = failing_metrics(check(found[stage], result))
        if failing:
            caught.append(f"{stage} {high_lr(stage).lr_id}: {', '.join(failing)}")
    catch_table[name] = "; ".join(caught) or "NOT CAUGHT"
    assert caught, f"{name}: no CI-grid case failed its baseline"


def test_edit_prompts_without_the_placeholder_cannot_be_built():
    concept = load_concept(CaseSpec(stage="inversion", lr=1e-3).concept)
    edit = concept.edit_prompts[0]
    with pytest.raises(ValueError, match="does not name the concept"):
        dataclasses.replace(edit, prompt=edit.prompt.replace("{}", concept.class_noun))
