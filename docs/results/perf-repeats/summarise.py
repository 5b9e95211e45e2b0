"""The side-by-side ratios of repeated perf-suite runs (group runs against sequential ones,
diffusers' textual_inversion.py against ptibench): each run's side-by-side ratio, their
mean and a 95% t interval over the runs (each run alternates the two sides, so a run is one
paired measurement; the runs are the replicates).

    python docs/results/perf-repeats/summarise.py docs/results/perf-repeats/<commit>/run*.json
"""

from __future__ import annotations

import json
import statistics
import sys

from scipy import stats

FIGURES = {
    "batched_vs_sequential": "speedup_sequential_over_batched",
    "stacked_lora_vs_sequential": "speedup_sequential_over_stacked",
    "diffusers_script_over_ptibench_alone": "ratio_script_over_ptibench",
    "diffusers_script_per_batched_case": "ratio_script_over_ptibench_batched_per_case",
}
"""What each line reports: the label and the ratio's key in the suite's recorded figures."""


def ratios(paths: list[str]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in FIGURES}
    for path in paths:
        with open(path) as handle:
            for bench in json.load(handle)["benchmarks"]:
                for name, key in FIGURES.items():
                    if key in bench["extra_info"]:
                        found[name].append(float(bench["extra_info"][key]))
    return found


def main() -> None:
    for name, values in ratios(sys.argv[1:]).items():
        if not values:
            continue
        if len(values) < 2:
            print(f"{name}: {values}")
            continue
        mean = statistics.mean(values)
        half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
        print(
            f"{name}: runs {', '.join(f'{v:.2f}' for v in values)}; "
            f"mean {mean:.2f}x [{mean - half:.2f}, {mean + half:.2f}] (95% t, n = {len(values)})"
        )


if __name__ == "__main__":
    main()
