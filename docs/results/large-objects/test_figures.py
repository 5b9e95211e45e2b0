"""The shipped world's figures at the quality tests' settings (tests/test_world_quality.py):
held-out prompts in the training wording (64), both held-out phrasing sets (the tests' 32
prompts per phrasing, and 64 for the write-up: prompt i is seeded i in both, so the 32-prompt
pool is the first half of each phrasing's 64), word sensitivity with the layout path on and off,
CLIP zero-shot and the LPIPS contrasts.

    python docs/results/large-objects/test_figures.py \
        --out docs/results/large-objects/test_figures.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ptibench.assets import tiny_world_path
from ptibench.world import oracle, quality

ATTRIBUTES = ("background", "colour", "position", "size", "shape")
COLOUR_TEMPLATE = "a large {} circle on a blue background at the left"
POSITION_TEMPLATE = "a large red circle on a blue background at the {}"
SETS = {"first": quality.HELD_OUT_PHRASINGS, "confirmation": quality.CONFIRMATION_PHRASINGS}


def phrasing_hits(pipe, templates: tuple[str, ...], n: int) -> list[list[dict[str, bool]]]:
    """Per phrasing, per prompt: which attributes the oracle reads back."""
    combos = quality.held_out_prompts(n)
    hits = []
    for template in templates:
        images = quality.sample(pipe, [quality.phrased_prompt(a, template) for a in combos])
        readings = [oracle.read(image) for image in images]
        hits.append(
            [
                {key: getattr(r, key) == getattr(a, key) for key in ATTRIBUTES}
                for r, a in zip(readings, combos, strict=True)
            ]
        )
    return hits


def pooled(hits: list[list[dict[str, bool]]], n: int) -> dict[str, float]:
    rows = [row for per_phrasing in hits for row in per_phrasing[:n]]
    return {"prompts": len(rows), **{k: sum(r[k] for r in rows) / len(rows) for k in ATTRIBUTES}}


def position_sensitivity_without_layout(pipe) -> float:
    saved = pipe.unet.layout_scale.detach().clone()
    try:
        with torch.no_grad():
            pipe.unet.layout_scale.zero_()
        return quality.word_sensitivity(pipe, POSITION_TEMPLATE, ["left", "right", "center"])
    finally:
        with torch.no_grad():
            pipe.unet.layout_scale.copy_(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    world = tiny_world_path()
    start = time.time()
    pipe = quality.load_pipeline(world)
    report = {"following_64": asdict(quality.measure_prompt_following(pipe, n_prompts=64))}
    for name, templates in SETS.items():
        hits = phrasing_hits(pipe, templates, 64)
        report[f"{name}_phrasings_32"] = pooled(hits, 32)
        report[f"{name}_phrasings_64"] = pooled(hits, 64)
        out.write_text(json.dumps(report, indent=2) + "\n")
    report["colour_words"] = quality.word_sensitivity(
        pipe, COLOUR_TEMPLATE, ["red", "green", "white"]
    )
    report["position_words"] = quality.word_sensitivity(
        pipe, POSITION_TEMPLATE, ["left", "right", "center"]
    )
    report["position_words_layout_off"] = position_sensitivity_without_layout(pipe)
    report["clip"] = quality.clip_zero_shot(*quality.load_clip(world))
    report["lpips"] = quality.lpips_contrasts(quality.load_lpips(world))
    report["seconds"] = round(time.time() - start, 1)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
