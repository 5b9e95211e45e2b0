"""The regression check itself, on the shipped tiny world: the CI grid (two lrs per stage of the
default grid, 1000 steps) against the stored baselines (recorded with three training seeds,
tolerances from their spread):

- it does not cry wolf: a training seed the baselines never saw passes >= 95% of the metric
  checks of the CI grid;
- it catches what matters: each injected regression (lr silently halved, LoRA scale zero at
  inference, the placeholder not spliced, the pivot replaced by the initial embedding, edit
  prompts evaluated without the placeholder) fails at least one metric of at least one case.

Each injection is a monkeypatch of the running code, and every run uses a fresh cache (the
cache key does not see a monkeypatch). The catch table is written to the test's temporary
folder and printed (`pytest -s`).
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import torch

from ptibench.grids import PRESETS
from ptibench.results import baselines
from ptibench.run import runner as runner_module
from ptibench.run.runner import CaseRun, run_case
from ptibench.spec import CaseSpec
from ptibench.training.methods import Method

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "baselines"
NEW_SEED = 3
"""A training seed the stored CI baselines (seeds 0, 1, 2) do not hold."""


def ci_specs(seed: int = 0) -> list[CaseSpec]:
    return [
        CaseSpec(stage=stage, lr=lr, seed=seed)
        for stage in ("inversion", "finetune")
        for lr in PRESETS["ci"][stage]
    ]


def check(spec: CaseSpec, result) -> baselines.Comparison:
    found = baselines.lookup(BASELINES, spec)
    assert found.summary is not None, f"no seed-spread baseline for {spec.key()}: {found.reason}"
    return baselines.compare(found.entry, result, found.summary)


def test_ci_runs_the_ci_grid_against_its_baselines():
    """.ci/run runs this grid, strict (a missing baseline fails)."""
    script = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in script.splitlines() if "--lr-grid ci" in line)
    words = shlex.split(command)
    assert "--steps" not in words and "--samples-per-prompt" not in words
    assert "--ptibench-strict" in words
    assert set(PRESETS["ci"]["inversion"]) <= set(PRESETS["default"]["inversion"])
    assert set(PRESETS["ci"]["finetune"]) <= set(PRESETS["default"]["finetune"])


def test_a_new_training_seed_passes_the_ci_grid(tmp_path):
    checks = failed = 0
    lines = []
    for spec in ci_specs(NEW_SEED):
        result = run_case(spec, cache_dir=tmp_path / "cache", progress=False)
        comparison = check(spec, result)
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


def _wrap_evaluate(monkeypatch, change):
    """Run `change(run, vector, unet)` -> (vector, unet, restore) around each evaluation."""
    original = CaseRun.evaluate

    def evaluate(self, vector, unet, show):
        vector, unet, restore = change(self, vector, unet)
        try:
            return original(self, vector, unet, show)
        finally:
            restore()

    monkeypatch.setattr(CaseRun, "evaluate", evaluate)


def _lora_scale_zero(monkeypatch):
    from peft.tuners.lora import LoraLayer

    def change(run, vector, unet):
        saved = []
        for module in (unet.modules() if unet is not None else ()):
            if isinstance(module, LoraLayer):
                saved.append((module, dict(module.scaling)))
                for name in module.scaling:
                    module.scaling[name] = 0.0

        def restore():
            for module, scaling in saved:
                module.scaling.update(scaling)

        return vector, unet, restore

    _wrap_evaluate(monkeypatch, change)


def _not_spliced(monkeypatch):
    def change(run, vector, unet):
        initial = run.bundle.word_embedding(run.concept.initializer).to(vector.device)
        return initial.reshape(vector.shape), unet, lambda: None

    _wrap_evaluate(monkeypatch, change)


def _pivot_is_initial(monkeypatch):
    def get_pivot(ctx, method, path):
        return ctx.bundle.word_embedding(ctx.concept.initializer).to(ctx.bundle.device), True

    monkeypatch.setattr(runner_module, "get_pivot", get_pivot)


def _edits_without_placeholder(monkeypatch):
    def change(run, vector, unet):
        concept = run.concept
        plain = [
            dataclasses.replace(e, prompt=e.prompt.replace("{}", concept.class_noun))
            for e in concept.edit_prompts
        ]
        run.concept = dataclasses.replace(concept, edit_prompts=plain)

        def restore():
            run.concept = concept

        return vector, unet, restore

    _wrap_evaluate(monkeypatch, change)


# the injection and the CI-grid cases that run under it (stage, index into the stage's lrs)
INJECTIONS = {
    "lr halved": (_halved_lr, [("inversion", -1), ("finetune", -1)]),
    "LoRA scale zero at inference": (_lora_scale_zero, [("finetune", -1)]),
    "placeholder not spliced": (_not_spliced, [("inversion", -1), ("finetune", -1)]),
    "pivot = initial embedding": (_pivot_is_initial, [("finetune", -1)]),
    "edit prompts without placeholder": (
        _edits_without_placeholder,
        [("inversion", -1), ("finetune", -1)],
    ),
}


@pytest.fixture(scope="module")
def catch_table(tmp_path_factory):
    rows: dict[str, str] = {}
    yield rows
    lines = ["| injected regression | caught by |", "|---|---|"]
    lines += [f"| {name} | {caught} |" for name, caught in rows.items()]
    table = "\n".join(lines)
    (tmp_path_factory.getbasetemp() / "catch-table.md").write_text(table + "\n")
    print("\n" + table)


@pytest.mark.parametrize("name", list(INJECTIONS))
def test_an_injected_regression_is_caught(name, monkeypatch, tmp_path, catch_table):
    inject, cases = INJECTIONS[name]
    inject(monkeypatch)
    caught = []
    for stage, index in cases:
        spec = CaseSpec(stage=stage, lr=PRESETS["ci"][stage][index])
        with torch.random.fork_rng(devices=[]):
            result = run_case(spec, cache_dir=tmp_path / "cache", progress=False)
        comparison = check(spec, result)
        failing = [row.metric for row in comparison.rows if row.verdict in ("FAIL", "missing")]
        if comparison.status_note and not comparison.passed:
            failing.append(comparison.status_note)
        if failing:
            caught.append(f"{stage} {spec.lr_id}: {', '.join(failing)}")
    catch_table[name] = "; ".join(caught) or "NOT CAUGHT"
    assert caught, f"{name}: no CI-grid case failed its baseline"
