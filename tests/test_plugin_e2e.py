"""The plugin with the real core (no test double): a tiny grid on a random-weight world of the
tiny world's shape, recorded as baselines, then retrained from an empty cache and compared."""

from __future__ import annotations

import json

from test_plugin_support import BENCHMARK_TEST, run

from ptibench.models.random_weights import write_random_world

pytest_plugins = ["pytester"]


def test_real_cases_record_then_reproduce_their_baselines(pytester, tmp_path_factory):
    world = write_random_world(tmp_path_factory.getbasetemp() / "core-random-world")
    pytester.makepyfile(test_lr_grid=BENCHMARK_TEST)
    tiny = [
        *("--world", world.name, "--lr-grid", "1e-3,1", "--stage", "inversion,finetune"),
        *("--steps", "5", "--samples-per-prompt", "1", "--sample-steps", "2"),
        *("--ptibench-baselines", "baselines"),
    ]

    first = run(pytester, *tiny, "--ptibench-cache", "cache-1", "--update-baselines")
    first.assert_outcomes(passed=4)
    stored = list((pytester.path / "baselines").rglob("*.json"))
    assert sorted(p.name for p in stored) == ["finetune.json", "inversion.json"]

    again = run(pytester, *tiny, "--ptibench-cache", "cache-2", "--ptibench-out", "out-2")
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines(["*trade-off: inversion / pti*", "*trade-off: finetune / pti*"])
    document = json.loads((pytester.path / "out-2" / "results.json").read_text())
    assert [case["status"] for case in document["cases"]] == ["ok"] * 4
    assert not any(case["from_cache"] for case in document["cases"])
    samples = sorted(p.name for p in (pytester.path / "out-2" / "samples").iterdir())
    assert "yellow-ring-inversion-pti-lr=1e+00-seed0-samples.png" in samples
