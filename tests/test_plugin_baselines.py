"""The plugin against stored baselines: pass, fail with a table, missing, update, selection."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from test_plugin_support import make_project, run

from ptibench.results import baselines
from ptibench.results.baselines import what_changed
from ptibench.spec import CaseResult, CaseSpec, lr_key

pytest_plugins = ["pytester"]

GRID = "1e-3,1e-2,3e-2,1e-1,3e-1,1"


def baseline_file(pytester: pytest.Pytester, stage: str = "inversion", method: str = "pti"):
    return pytester.path / "baselines" / "tiny-world" / "yellow-ring" / method / f"{stage}.json"


def entry_of(stored: dict, lr: str, seed: str = "0") -> dict:
    """The one entry stored for `lr` and `seed` (recorded under one set of settings)."""
    (entry,) = stored["entries"][lr][seed].values()
    return entry


def record(pytester: pytest.Pytester, grid: str = GRID, *extra: str) -> None:
    result = run(pytester, "--lr-grid", grid, "--stage", "inversion", "--update-baselines", *extra)
    assert result.ret == 0, result.stdout.str()


def test_update_then_pass(pytester):
    make_project(pytester)
    record(pytester)
    stored = json.loads(baseline_file(pytester).read_text())
    assert list(stored["entries"]) == sorted(["1e-03", "1e-02", "3e-02", "1e-01", "3e-01", "1e+00"])
    entry = entry_of(stored, "1e-02")
    assert stored["version"] == 3
    assert stored["summaries"]["1e-02"]
    assert list(stored["entries"]["1e-02"]["0"]) == [
        "batch_size=4,eval.guidance_scale=4.0,eval.reconstruction_factor=4,eval.sample_steps=20,"
        "eval.samples_per_prompt=8,eval.seed=1234,pivot_lr=None,steps=1000"
    ]
    assert entry["metrics"]["lpips"]["direction"] == "lower"
    assert {"versions", "device", "commit", "seed"} <= set(entry["recorded"])
    result = run(pytester, "--lr-grid", GRID, "--stage", "inversion")
    result.assert_outcomes(passed=6)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*trade-off: inversion / pti*", "*knee: lr=3e-02*"])


def test_regression_fails_with_table(pytester):
    make_project(pytester)
    record(pytester)
    make_project(pytester, shift=0.2)
    result = run(pytester, "--lr-grid", "1e-2", "--stage", "inversion")
    result.assert_outcomes(failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*inversion lr=1e-02 seed 0 differs from its baseline*",
            "*metric*|*baseline*|*obtained*|*diff*|*allowed*",
            "*lpips*|*0.2724*|*0.4724*|*+0.2*|*0.03 (lower)*|*FAIL*",
            "*update it: pytest *--lr-grid 1e-02 --stage inversion --update-baselines",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_improvement_passes_with_a_note(pytester):
    make_project(pytester)
    record(pytester)
    make_project(pytester, shift=-0.2)
    result = run(pytester, "--lr-grid", "1e-2", "--stage", "inversion")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*better than the baseline: lpips*"])


def test_missing_baseline_passes_with_a_note_and_fails_when_strict(pytester):
    make_project(pytester)
    result = run(pytester, "--lr-grid", "5e-3", "--stage", "inversion")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*5e-03*missing",
            "*1 case(s) had no baseline of their own and were not checked*--ptibench-strict*",
            "*record them with: pytest*--lr-grid 5e-3*--update-baselines",
        ]
    )
    strict = run(pytester, "--lr-grid", "5e-3", "--stage", "inversion", "--ptibench-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(
        [
            "*no baseline for inversion lr=5e-03 seed 0*",
            "*create it with: pytest*--lr-grid 5e-3*--update-baselines*",
        ]
    )


def test_other_settings_count_as_missing(pytester):
    make_project(pytester)
    record(pytester, "1e-2")
    args = ("--lr-grid", "1e-2", "--stage", "inversion", "--steps", "10")
    result = run(pytester, *args, "--ptibench-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*recorded with other settings: steps=1000 (now 10)*"])
    run(pytester, *args).assert_outcomes(passed=1)


def test_a_smoke_run_records_entries_beside_the_full_ones(pytester):
    """--update-baselines after a 10-step run adds entries of its own settings; the 1000-step
    entries stay as they were and both runs pass against their own."""
    make_project(pytester)
    record(pytester, "1e-2,1e-1")
    before = json.loads(baseline_file(pytester).read_text())
    make_project(pytester, shift=0.05)
    record(pytester, "1e-2,1e-1", "--steps", "10")
    after = json.loads(baseline_file(pytester).read_text())
    for lr in ("1e-02", "1e-01"):
        variants = after["entries"][lr]["0"]
        assert len(variants) == 2
        full = [v for v in variants.values() if v["spec"]["steps"] == 1000]
        assert full == list(before["entries"][lr]["0"].values())
    result = run(pytester, "--lr-grid", "1e-2,1e-1", "--stage", "inversion", "--steps", "10")
    result.assert_outcomes(passed=2)
    make_project(pytester)
    result = run(pytester, "--lr-grid", "1e-2,1e-1", "--stage", "inversion", "--ptibench-strict")
    result.assert_outcomes(passed=2)


def with_world_version(pytester: pytest.Pytester, version: str) -> None:
    """The synthetic cases, recorded as made on world version `version`."""
    conftest = pytester.path / "conftest.py"
    text = conftest.read_text().replace(
        'environment={"device": "cpu"}',
        f'environment={{"device": "cpu", "world_version": "{version}"}}',
    )
    assert text.count(version) == 2
    pytester.makeconftest(text)


def test_update_refuses_an_entry_of_another_world_version_without_force(pytester):
    make_project(pytester)
    with_world_version(pytester, "w1")
    record(pytester, "1e-2")
    before = baseline_file(pytester).read_text()
    make_project(pytester, shift=0.2)
    with_world_version(pytester, "w2")
    checked = run(pytester, "--lr-grid", "1e-2", "--stage", "inversion")
    checked.assert_outcomes(failed=1)
    checked.stdout.fnmatch_lines(
        [
            "*since the baseline was recorded: world_version w1 -> w2*",
            "*update it: pytest *--lr-grid 1e-02 --stage inversion --update-baselines --force",
        ]
    )
    refused = run(pytester, "--lr-grid", "1e-2", "--stage", "inversion", "--update-baselines")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(
        [
            "*cannot update the baseline: the entry for lr=1e-02 seed=0 in *inversion.json was "
            "recorded under other settings (world_version w1 -> w2); pass --force to replace it"
        ]
    )
    assert "Traceback" not in refused.stdout.str()
    assert baseline_file(pytester).read_text() == before
    forced = run(
        pytester, "--lr-grid", "1e-2", "--stage", "inversion", "--update-baselines", "--force"
    )
    forced.assert_outcomes(passed=1)
    entry = entry_of(json.loads(baseline_file(pytester).read_text()), "1e-02")
    assert entry["recorded"]["world_version"] == "w2"
    run(pytester, "--lr-grid", "1e-2", "--stage", "inversion").assert_outcomes(passed=1)


def test_unused_entries_are_reported_and_kept(pytester):
    """Like an unused-snapshot report: after the whole default grid, entries of an lr outside
    it and of other settings at its lrs are listed; nothing is deleted."""
    make_project(pytester)
    record(pytester, "1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1,5e-1")
    record(pytester, "1e-2", "--steps", "10")
    before = baseline_file(pytester).read_text()
    result = run(pytester, "--lr-grid", "default", "--stage", "inversion")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*2 stored baseline entries not used by this run's cases (kept*",
            "*inversion.json: lr=1e-02 seed 0 (recorded with steps=10)",
            "*inversion.json: lr=5e-01 seed 0",
        ]
    )
    assert baseline_file(pytester).read_text() == before
    subset = run(pytester, "--lr-grid", "1e-3,3e-2", "--stage", "inversion")
    assert "not used" not in subset.stdout.str()
    smoke = run(pytester, "--lr-grid", "default", "--stage", "inversion", "--steps", "10")
    smoke.assert_outcomes(passed=7)
    assert "not used" not in smoke.stdout.str(), "a smoke run does not call the full ones unused"


def test_smaller_grid_update_keeps_other_entries(pytester):
    make_project(pytester)
    record(pytester)
    before = json.loads(baseline_file(pytester).read_text())
    make_project(pytester, shift=0.05)
    record(pytester, "1e-2")
    after = json.loads(baseline_file(pytester).read_text())
    assert set(after["entries"]) == set(before["entries"])
    for key in before["entries"]:
        if key != "1e-02":
            assert after["entries"][key] == before["entries"][key]
    changed = entry_of(after, "1e-02")["metrics"]["lpips"]["value"]
    assert math.isclose(changed, entry_of(before, "1e-02")["metrics"]["lpips"]["value"] + 0.05)
    make_project(pytester)
    result = run(pytester, "--lr-grid", "1e-3,3e-2", "--stage", "inversion")
    result.assert_outcomes(passed=2)
    assert "unused" not in result.stdout.str().lower()


def test_hand_tuned_tolerance_survives_update(pytester):
    make_project(pytester)
    record(pytester, "1e-2")
    path = baseline_file(pytester)
    stored = json.loads(path.read_text())
    entry_of(stored, "1e-02")["metrics"]["lpips"]["abs"] = 0.5
    path.write_text(json.dumps(stored))
    record(pytester, "1e-2")
    assert entry_of(json.loads(path.read_text()), "1e-02")["metrics"]["lpips"]["abs"] == 0.5


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "*corrupt JSON at line 1*"),
        ('{"format": "something-else"}', "*wrong schema: not a ptibench baseline*"),
        ('{"format": "ptibench-baseline", "version": NaN}', "*NaN is not a number*"),
    ],
)
def test_bad_baseline_file_is_one_clear_line(pytester, content, expected):
    make_project(pytester)
    path = baseline_file(pytester)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    result = run(pytester, "--lr-grid", "1e-2", "--stage", "inversion")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*baseline file *inversion.json: {expected.lstrip('*')}"])
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_nan_value_inside_an_entry_names_the_file(pytester):
    make_project(pytester)
    record(pytester, "1e-2")
    path = baseline_file(pytester)
    path.write_text(re.sub(r'"value": [-0-9.e]+', '"value": NaN', path.read_text(), count=1))
    result = run(pytester, "--lr-grid", "1e-2", "--stage", "inversion")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*baseline file *inversion.json: NaN is not a number*"])


def test_diverged_case_compares_as_status(pytester):
    make_project(pytester)
    record(pytester, f"{GRID},1e2")
    result = run(pytester, "--lr-grid", f"{GRID},1e2", "--stage", "inversion")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*1e+02*diverged@7*pass", "*knee: lr=3e-02*"])
    stored = json.loads(baseline_file(pytester).read_text())
    assert entry_of(stored, "1e+02")["status"] == "diverged"


RENAMED_METHOD = """
from ptibench.training.methods import get_method, register_method


class Renamed(type(get_method("pti"))):
    name = "pti-renamed"


register_method(Renamed())
"""


def test_new_method_is_shown_beside_the_default_baseline(pytester):
    make_project(pytester)
    record(pytester)
    pytester.makeconftest(pytester.path.joinpath("conftest.py").read_text() + RENAMED_METHOD)
    result = run(
        pytester,
        "--lr-grid",
        "1e-2,1e-1",
        "--stage",
        "inversion",
        "--method",
        "pti-renamed",
        "--update-baselines",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*pti-renamed beside the stored pti baseline*", "*lr*lpips new*lpips base*lpips diff*"]
    )
    assert baseline_file(pytester, method="pti-renamed").exists()


def test_a_new_method_without_baselines_passes_beside_the_reference(pytester):
    """ "Compare my method": no baselines of its own is not a red run; the table of the method
    beside pti's stored baseline is the result. --ptibench-strict makes it one (for CI)."""
    make_project(pytester)
    record(pytester)
    make_project(pytester, shift=0.1)
    pytester.makeconftest(pytester.path.joinpath("conftest.py").read_text() + RENAMED_METHOD)
    args = ("--lr-grid", "1e-2,1e-1", "--stage", "inversion", "--method", "pti-renamed")
    result = run(pytester, *args)
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*pti-renamed beside the stored pti baseline (new | base | diff):*",
            "*lr*lpips new*lpips base*lpips diff*",
            "1e-02*0.3724*0.2724*+0.100*",
            "*2 case(s) had no baseline of their own and were not checked*",
        ]
    )
    assert not baseline_file(pytester, method="pti-renamed").exists()
    run(pytester, *args, "--ptibench-strict").assert_outcomes(failed=2)


def test_what_changed_explains_a_mismatch():
    recorded = {"device": "cpu", "world_version": "aa", "versions": {"torch": "2.14.1"}}
    now = {"device": "cuda:0", "world_version": "aa", "versions": {"torch": "2.15.0"}}
    assert what_changed(recorded, now) == "device cpu -> cuda:0; torch 2.14.1 -> 2.15.0"
    assert what_changed(recorded, recorded) == ""


def test_what_changed_names_compiled_training_against_an_eager_baseline():
    older = {"device": "cpu"}  # recorded before baselines said whether training was compiled
    assert what_changed(older, {"device": "cpu", "compiled": True}) == "compiled False -> True"
    assert what_changed(older, {"device": "cpu", "compiled": False}) == ""


def test_what_changed_names_another_cpu_model_and_never_guards_it(tmp_path):
    from ptibench.provenance import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC 9R14\n\nprocessor\t: 1\nmodel name\t: other\n"
    )
    amd = cpu_model.__wrapped__(info)
    assert amd == "AMD EPYC 9R14 (family 25, model 17)"
    assert cpu_model.__wrapped__(tmp_path / "absent")  # no /proc/cpuinfo: still a name
    older = {"device": "cpu"}  # recorded before baselines named the CPU
    assert what_changed(older, {"device": "cpu", "cpu": amd}) == ""
    recorded, now = {"device": "cpu", "cpu": amd}, {"device": "cpu", "cpu": "Intel Xeon"}
    assert what_changed(recorded, now) == f"cpu {amd} -> Intel Xeon"
    assert baselines.recorded_differently(recorded, now) == ""


def test_what_changed_names_deterministic_kernels_against_a_baseline_recorded_without():
    older = {"device": "cuda:0"}  # recorded before baselines said whether kernels were fixed
    now = {"device": "cuda:0", "deterministic": True}
    assert what_changed(older, now) == "deterministic False -> True"
    assert what_changed(now, now) == ""


def test_the_committed_baselines_are_read_as_they_are():
    """Every entry of the shipped baseline files (whatever their format) is found by its own
    spec."""
    root = Path(__file__).resolve().parents[1] / "baselines"
    files = sorted(root.rglob("*.json"))
    assert files
    for path in files:
        raw = json.loads(path.read_text())
        for lr, by_seed in raw["entries"].items():
            if raw["version"] >= 2:
                by_seed = {seed: e for seed, variants in by_seed.items() for e in variants.values()}
            for seed, entry in by_seed.items():
                spec = CaseSpec.from_dict(entry["spec"])
                assert (lr_key(spec.lr), str(spec.seed)) == (lr, seed)
                found = baselines.lookup(root, spec)
                assert found.path == path and found.entry == entry
                assert baselines.stored_entry(root, spec) == entry
                other = spec.with_(steps=spec.steps + 1)
                assert baselines.lookup(root, other).entry is None


def test_a_first_format_file_is_upgraded_on_update(tmp_path):
    spec = CaseSpec(stage="inversion", lr=1e-2)
    path = baselines.update(tmp_path, CaseResult(spec, "ok", {"lpips": 0.5}), {"device": "cpu"})
    current = json.loads(path.read_text())
    (entry,) = current["entries"]["1e-02"]["0"].values()
    path.write_text(json.dumps({**current, "version": 1, "entries": {"1e-02": {"0": entry}}}))
    assert baselines.lookup(tmp_path, spec).entry == entry
    smoke = spec.with_(lr=1e-1, steps=5)
    baselines.update(tmp_path, CaseResult(smoke, "ok", {"lpips": 0.7}), {"device": "cpu"})
    upgraded = json.loads(path.read_text())
    assert upgraded["version"] == 3
    assert set(upgraded["summaries"]) == {"1e-02", "1e-01"}
    assert upgraded["entries"]["1e-02"]["0"] == {baselines.settings_key(spec): entry}
    assert baselines.lookup(tmp_path, smoke).entry["metrics"]["lpips"]["value"] == 0.7
    assert "steps=5" in baselines.settings_key(smoke)


def test_recorded_differently_names_only_guarded_fields():
    stored = {"world_version": "a", "device": "cuda:0", "threads": 1}
    assert baselines.recorded_differently(stored, {"world_version": "a", "device": "cuda:1"}) == ""
    assert baselines.recorded_differently(stored, {"threads": 2, "device": "cuda"}) == ""
    assert (
        baselines.recorded_differently(stored, {"world_version": "b", "compiled": True})
        == "world_version a -> b; compiled False -> True"
    )
