"""Probe: does the shipped world follow prompts better at another sampler setting?

The world's quality checks sample with 20 DPM-Solver++ steps at classifier-free guidance 4
(`quality.SAMPLE_STEPS`, `quality.GUIDANCE`), and so does ptibench's evaluation. Shape is read
back in 0.41-0.45 of held-out prompts at that setting; this probe reads the same prompts, with
the same starting noise per prompt, at other guidance scales and step counts, so each setting
is compared with the default prompt by prompt (exact McNemar test on the discordant pairs).

    python docs/results/guidance/guidance_probe.py --out docs/results/guidance/guidance.json

Settings: `--settings 4:20,2:20,6:20,8:20,12:20,4:50` (guidance:steps), the 128 held-out
combinations of `quality.held_out_prompts` in the training wording; `--phrasings 4,8` also reads
the first held-out phrasing set (`quality.HELD_OUT_PHRASINGS`, 64 combinations x 6, seeded as
`quality.measure_prompt_following`) at those guidance scales, 20 steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from scipy.stats import binomtest

from ptibench.assets import tiny_world_path
from ptibench.world import oracle, quality

ATTRIBUTES = ("background", "colour", "position", "size", "shape")


def hits(pipe, combos, prompts, guidance: float, steps: int) -> dict[str, list[int]]:
    """Per prompt, 1 where the oracle reads the prompt's attribute back."""
    images = quality.sample(pipe, prompts, steps=steps, guidance=guidance)
    readings = [oracle.read(img) for img in images]
    return {
        key: [
            int(getattr(r, key) == getattr(a, key)) for r, a in zip(readings, combos, strict=True)
        ]
        for key in ATTRIBUTES
    }


def share(values: list[int]) -> dict:
    k, n = sum(values), len(values)
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return {"share": round(k / n, 3), "ci95": [round(ci.low, 3), round(ci.high, 3)], "n": n}


def mcnemar(base: list[int], other: list[int]) -> dict:
    """Exact McNemar test: prompts gained and lost against the default setting."""
    gained = sum(1 for b, o in zip(base, other, strict=True) if o and not b)
    lost = sum(1 for b, o in zip(base, other, strict=True) if b and not o)
    p = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "p": float(f"{p:.2g}")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", default="4:20,2:20,6:20,8:20,12:20,4:50")
    parser.add_argument("--phrasings", default="4,8")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = quality.load_pipeline(tiny_world_path())
    combos = quality.held_out_prompts(args.prompts)
    prompts = [quality.full_prompt(a) for a in combos]
    settings = [tuple(float(x) for x in s.split(":")) for s in args.settings.split(",")]
    result: dict = {"prompts": args.prompts, "training_wording": {}, "phrasings": {}}
    per_prompt = {}
    for guidance, steps in settings:
        name = f"guidance {guidance:g}, {int(steps)} steps"
        start = time.time()
        per_prompt[name] = hits(pipe, combos, prompts, guidance, int(steps))
        result["training_wording"][name] = {
            "seconds": round(time.time() - start, 1),
            **{k: share(v) for k, v in per_prompt[name].items()},
        }
        print(
            name, {k: result["training_wording"][name][k]["share"] for k in ATTRIBUTES}, flush=True
        )
    base = next(iter(per_prompt))
    for name, values in per_prompt.items():
        if name != base:
            result["training_wording"][name]["vs_default"] = {
                k: mcnemar(per_prompt[base][k], values[k]) for k in ATTRIBUTES
            }
    phrased_combos = quality.held_out_prompts(64)
    phrased = {}
    for guidance in (float(g) for g in args.phrasings.split(",") if g):
        name = f"guidance {guidance:g}, 20 steps"
        start = time.time()
        phrased[name] = {k: [] for k in ATTRIBUTES}
        for template in quality.HELD_OUT_PHRASINGS:
            texts = [quality.phrased_prompt(a, template) for a in phrased_combos]
            for k, v in hits(pipe, phrased_combos, texts, guidance, 20).items():
                phrased[name][k].extend(v)
        result["phrasings"][name] = {
            "seconds": round(time.time() - start, 1),
            **{k: share(v) for k, v in phrased[name].items()},
        }
        print(
            "first set",
            name,
            {k: result["phrasings"][name][k]["share"] for k in ATTRIBUTES},
            flush=True,
        )
    names = list(phrased)
    for name in names[1:]:
        result["phrasings"][name]["vs_first"] = {
            k: mcnemar(phrased[names[0]][k], phrased[name][k]) for k in ATTRIBUTES
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
