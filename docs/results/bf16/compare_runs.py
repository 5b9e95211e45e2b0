"""Two runs of the same grid, one sampling in float32 and one in bfloat16 (`--sample-dtype`):
how many per-sample oracle readings agree, how far each metric moved (paired over the cases,
mean with a 95% t interval), and where the time went.

    python docs/results/bf16/compare_runs.py FLOAT32/results.json BFLOAT16/results.json

(`.json.gz` read as well: the two runs of the 2026-12-05 write-up are in grid-3seeds/.)

Training is float32 in both runs and bitwise the same computation, so every difference in the
metrics comes from the sampler's precision (the script checks the distances agree).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path

from scipy import stats


def flags(records: dict) -> list[bool]:
    """The oracle's yes/no readings of a case's edit and reconstruction samples, in a fixed
    order (leakage enters through its metric)."""
    out: list[bool] = []
    for edit in records.get("edits", []):
        for name in ("edit", "identity"):
            out += list(edit.get(name, []))
    out += list(records.get("reconstruction", {}).get("appearance", []))
    return out


def read(path: Path) -> dict:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(data)


def paired(diffs: list[float]) -> str:
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return f"{mean:+.4f}"
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("float32", type=Path)
    parser.add_argument("bfloat16", type=Path)
    args = parser.parse_args()
    runs = [read(path) for path in (args.float32, args.bfloat16)]
    cases = [{case["key"]: case for case in run["cases"]} for run in runs]
    keys = sorted(set(cases[0]) & set(cases[1]))
    same = total = 0
    moved: dict[str, list[float]] = {}
    distance_gap = 0.0
    for key in keys:
        low, high = cases[0][key], cases[1][key]
        if low["status"] != "ok" or high["status"] != "ok":
            continue
        a, b = flags(low["records"]), flags(high["records"])
        same += sum(x == y for x, y in zip(a, b, strict=True))
        total += len(a)
        for name, value in low["metrics"].items():
            other = high["metrics"].get(name)
            if value is not None and other is not None:
                moved.setdefault(name, []).append(other - value)
        distance_gap = max(distance_gap, abs(moved["distance"][-1]))
    print(f"cases compared: {len(keys)}; training distances differ by at most {distance_gap:g}")
    print(f"edit and appearance readings equal: {same} of {total} ({same / total:.1%})")
    print("metric | bfloat16 - float32, mean over cases [95% t] | cases changed")
    for name, diffs in sorted(moved.items()):
        changed = sum(abs(d) > 1e-12 for d in diffs)
        print(f"{name} | {paired(diffs)} | {changed} of {len(diffs)}")
    for label, run in zip(("float32", "bfloat16"), runs, strict=True):
        eval_s = sum(case["timings"].get("eval_s", 0.0) for case in run["cases"])
        print(f"{label}: evaluation {eval_s:.0f} s over {len(run['cases'])} cases")


if __name__ == "__main__":
    main()
