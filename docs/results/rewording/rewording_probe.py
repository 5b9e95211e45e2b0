"""Probe: does the shipped tiny world follow its attributes when a prompt is worded differently
from its training captions, and where does position get lost?

1. **Prompt following per phrasing.** The 64 held-out combinations of the tests
   (`quality.held_out_prompts(64)`), one sample each, worded as in training and in each of
   `quality.HELD_OUT_PHRASINGS`; the oracle reads the five attributes back. 95% Wilson intervals.
2. **The layout map alone.** For the same prompts, the layout path's map
   (`LayoutUNet2DConditionModel.layout_map`) is read as a position: the one of the five whose
   position map (`train_layout.position_map`) correlates best with it, "none" when no
   correlation is positive. This is what the UNet's input gets from the prompt before any
   cross-attention.
3. **Where the position word sits.** The token index of the position word in each phrasing
   (the map is a linear function of the 16 token states flattened, so it reads a slot, not a
   word).

    python docs/results/rewording/rewording_probe.py --out docs/results/rewording
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

from ptibench.assets import tiny_world_path
from ptibench.world import quality
from ptibench.world.render import POSITIONS
from ptibench.world.train_layout import position_map

TRAINING = "training phrasing"


def interval(share: float, n: int) -> list[float]:
    ci = binomtest(round(share * n), n).proportion_ci(method="wilson")
    return [round(ci.low, 3), round(ci.high, 3)]


@torch.no_grad()
def map_reading(pipe, prompts: list[str]) -> list[str]:
    """The position the layout map points at, per prompt ('none' when it points nowhere)."""
    ids = quality.prompt_ids(pipe, prompts)
    maps = pipe.unet.layout_map(pipe.text_encoder(ids)[0]).flatten(1)
    size = pipe.unet.config.sample_size
    names = list(POSITIONS)
    templates = torch.stack([position_map(name, size).flatten() for name in names])
    maps = maps - maps.mean(1, keepdim=True)
    templates = templates - templates.mean(1, keepdim=True)
    scores = (
        torch.nn.functional.normalize(maps, dim=1)
        @ torch.nn.functional.normalize(templates, dim=1).T
    )
    best = scores.argmax(1)
    return [names[b] if scores[i, b] > 0 else "none" for i, b in enumerate(best.tolist())]


def position_slot(pipe, prompt: str, position: str) -> int | None:
    tokens = pipe.tokenizer.tokenize(prompt)
    word = pipe.tokenizer.tokenize(position)[0]
    return tokens.index(word) + 1 if word in tokens else None  # +1: the start token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument(
        "--world", type=Path, default=None, help="a world folder (default: shipped)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.time()
    pipe = quality.load_pipeline(args.world or tiny_world_path())
    combos = quality.held_out_prompts(args.prompts)
    rows = {}
    for template in (None, *quality.HELD_OUT_PHRASINGS):
        name = TRAINING if template is None else template
        score = quality.measure_prompt_following(pipe, args.prompts, template=template)
        if template is None:
            prompts = [quality.full_prompt(a) for a in combos]
        else:
            prompts = [quality.phrased_prompt(a, template) for a in combos]
        read = map_reading(pipe, prompts)
        map_share = float(np.mean([r == a.position for r, a in zip(read, combos, strict=True)]))
        slots = sorted(
            {position_slot(pipe, p, a.position) for p, a in zip(prompts, combos, strict=True)}
            - {None}
        )
        rows[name] = {
            "example": prompts[0],
            **{
                key: {
                    "share": getattr(score, key),
                    "ci95": interval(getattr(score, key), len(combos)),
                }
                for key in ("background", "colour", "position", "size", "shape")
            },
            "layout_map_position": {"share": map_share, "ci95": interval(map_share, len(combos))},
            "position_word_token_slots": slots,
        }
        print(name, json.dumps(rows[name]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"prompts": args.prompts, "seconds": round(time.time() - clock, 1), "rows": rows}
    (args.out / "rewording_probe.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
