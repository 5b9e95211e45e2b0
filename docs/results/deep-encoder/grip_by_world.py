"""Probe: how far a trained stage-1 token moves the prompt's other words, world by world, read
from a grid's own vectors.

For each `NAME=WORLD,OUT` (a world folder and the `--ptibench-out` of its stage-1 grid) the
vectors in OUT's artifacts are put in the placeholder's slot of the concept's edit prompts and
compared, state by state, with the untrained token (the initializer's embedding), as
`rewording/stage1_grip_probe.py` does (`others`: mean cosine of the later words' final states;
`concept`: the placeholder's own state). Then the seed-0 lr-1 vector's displacement is scaled
to see whether the encoder bounds what distance can do. No training: text-encoder forwards only.

    python docs/results/deep-encoder/grip_by_world.py W1=W1,OUT_W1 W1-DEEP=W1-DEEP,OUT_W1DEEP
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from ptibench.concept import load_concept
from ptibench.models.artifacts import load_embedding
from ptibench.models.loading import load_bundle

RESULTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(RESULTS / "rewording"))
sys.path.insert(0, str(RESULTS / "roles-world"))
from edit_prompts import inversion_cases  # noqa: E402  (roles-world/edit_prompts.py)
from stage1_grip_probe import SCALES, grip  # noqa: E402  (rewording/stage1_grip_probe.py)


def vectors(out: Path, concept: str) -> dict[tuple[float, int], torch.Tensor]:
    """(lr, grid seed) -> the trained vector of each stage-1 case of `concept` in `out`."""
    found = {}
    for case in inversion_cases(out):
        spec, embeds = case["spec"], case.get("artifacts", {}).get("learned_embeds")
        if spec["concept"] == concept and embeds:
            found[(spec["lr"], spec["seed"])] = load_embedding(out / embeds)
    return found


def world_rows(world: str, out: Path, concept_name: str) -> tuple[list[str], list[str]]:
    bundle = load_bundle(world)
    concept = load_concept(concept_name)
    e0 = bundle.word_embedding(concept.initializer)
    found = vectors(out, concept_name)
    if not found:
        raise SystemExit(f"error: no stage-1 vectors of {concept_name} in {out}/results.json")
    by_lr: dict[float, list[dict]] = {}
    for (lr, _seed), vector in sorted(found.items()):
        row = grip(bundle, concept, vector, e0)
        row["distance"] = float((vector - e0).norm())
        by_lr.setdefault(lr, []).append(row)
    lines = []
    for lr, rows in sorted(by_lr.items()):
        cells = [f"{lr:g}", str(len(rows))]
        for key in ("distance", "others", "others_min", "concept"):
            values = [r[key] for r in rows]
            low, high = min(values), max(values)
            cells.append(f"{statistics.mean(values):.3g} ({low:.3g}-{high:.3g})")
        lines.append("| " + " | ".join(cells) + " |")
    far = found.get((1.0, 0))
    scaled = []
    if far is not None:
        for s in SCALES:
            vector = e0 + s * (far - e0)
            row = grip(bundle, concept, vector, e0)
            distance = float((vector - e0).norm())
            scaled.append(
                f"| {s:g} | {distance:.3g} | {row['others']:.3f} | {row['concept']:.3f} |"
            )
    return lines, scaled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worlds", nargs="+", help="NAME=WORLD_DIR,OUT_DIR")
    parser.add_argument("--concept", default="yellow-ring")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for item in args.worlds:
        name, _, paths = item.partition("=")
        world, _, out = paths.partition(",")
        if not (name and world and out):
            raise SystemExit(f"error: expected NAME=WORLD_DIR,OUT_DIR, got {item!r}")
        lines, scaled = world_rows(world, Path(out), args.concept)
        print(f"### {name}\n")
        print("| lr | seeds | distance | others | others (min) | concept |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))
        print("\nMeans over the grid seeds, their range in brackets.\n")
        if scaled:
            print("| scale of the seed-0 lr-1 displacement | distance | others | concept |")
            print("|---|---|---|---|")
            print("\n".join(scaled))
            print()


if __name__ == "__main__":
    main()
