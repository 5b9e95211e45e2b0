"""Case by case, how far two GPU runs of the same cases are apart (metrics.json holds every run's
metrics, taken from its results.json).

    python docs/results/gpu-determinism/compare.py det-record det-again
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RUNS = json.loads((Path(__file__).resolve().parent / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", choices=sorted(RUNS))
    parser.add_argument("second", choices=sorted(RUNS))
    args = parser.parse_args()
    a, b = RUNS[args.first]["cases"], RUNS[args.second]["cases"]
    same = sum(a[case] == b[case] for case in a)
    print(f"{args.first} vs {args.second}: {same} of {len(a)} cases bitwise equal")
    for case in a:
        gaps = {
            name: abs(a[case][name] - b[case][name])
            for name in a[case]
            if a[case][name] is not None and b[case].get(name) is not None
        }
        worst = max(gaps, key=gaps.get)
        print(f"  {case}: largest difference {gaps[worst]:.4g} ({worst})")


if __name__ == "__main__":
    main()
