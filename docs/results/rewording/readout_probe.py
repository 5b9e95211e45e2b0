"""Probe: can the shipped (frozen) text encoder's states say where the object goes under
rewording, and through which readout?

For each readout of the 16 token states (all of them flattened; their mean; the end token's
state; the last state), a ridge regression from the states to the caption's position map (as
`train_layout.fit_layout` fits the shipped map) is fitted on 6,000 captions of training images,
worded either as the recipe words them (`render.caption`) or in the caption language
(`world.language`). Each fit is then read, like the layout map, as the position whose blob it
correlates with best, on the 64 held-out combinations in the training wording and in the six
held-out phrasings. The shipped map itself is read too. Nothing is trained but the ridge maps.

    python docs/results/rewording/readout_probe.py --out docs/results/rewording/language
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from rewording_probe import TRAINING, map_reading

from ptibench.assets import tiny_world_path
from ptibench.world import quality
from ptibench.world.dataset import render_set
from ptibench.world.language import CaptionLanguage
from ptibench.world.render import POSITIONS, caption
from ptibench.world.train_layout import position_map
from ptibench.world.train_t2i import CaptionTokens

READOUTS = ("flat", "mean", "end", "last")


def states(encoder, tokens, texts: list[str], readout: str) -> torch.Tensor:
    ids = tokens(texts)
    with torch.no_grad():
        h = torch.cat([encoder(ids[k : k + 500])[0] for k in range(0, len(texts), 500)])
    if readout == "flat":
        x = h.flatten(1)
    elif readout == "mean":
        x = h.mean(1)
    elif readout == "end":
        x = h[torch.arange(len(texts)), (ids == encoder.config.eos_token_id).int().argmax(1)]
    else:
        x = h[:, -1]
    return torch.cat([x, torch.ones(len(texts), 1)], 1).double()


def read_positions(maps: torch.Tensor) -> list[str]:
    names = list(POSITIONS)
    blobs = torch.stack([position_map(n).flatten() for n in names]).double()
    blobs = blobs - blobs.mean(1, keepdim=True)
    maps = maps - maps.mean(1, keepdim=True)
    scores = (
        torch.nn.functional.normalize(maps, dim=1) @ torch.nn.functional.normalize(blobs, dim=1).T
    )
    best = scores.argmax(1)
    return [names[b] if scores[i, b] > 0 else "none" for i, b in enumerate(best.tolist())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.time()
    pipe = quality.load_pipeline(tiny_world_path())
    encoder, tokens = pipe.text_encoder, CaptionTokens(pipe.tokenizer)
    language = CaptionLanguage(pipe.tokenizer)
    attributes = render_set(2000, 0).attributes
    combos = quality.held_out_prompts(64)
    sets = {TRAINING: [quality.full_prompt(a) for a in combos]}
    for template in quality.HELD_OUT_PHRASINGS:
        sets[template] = [quality.phrased_prompt(a, template) for a in combos]

    def share(read: list[str]) -> float:
        return float(np.mean([r == a.position for r, a in zip(read, combos, strict=True)]))

    rows = {"shipped map": {name: share(map_reading(pipe, p)) for name, p in sets.items()}}
    rng = np.random.default_rng(5)
    for wording in ("recipe", "language"):
        for readout in READOUTS:
            idx = rng.integers(0, len(attributes), 6000)
            draw = caption if wording == "recipe" else language
            texts = [draw(attributes[i], rng) for i in idx]
            named = [
                attributes[i].position if re.search(rf"\b{attributes[i].position}\b", t) else None
                for i, t in zip(idx, texts, strict=True)
            ]
            x = states(encoder, tokens, texts, readout)
            y = torch.stack([position_map(p) for p in named]).flatten(1).double()
            w = torch.linalg.solve(x.T @ x + torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
            rows[f"{wording} captions, {readout}"] = {
                name: share(read_positions(states(encoder, tokens, p, readout) @ w))
                for name, p in sets.items()
            }
    for name, row in rows.items():
        held = np.mean([v for k, v in row.items() if k != TRAINING])
        print(f"{name:28s} training wording {row[TRAINING]:.2f}  held-out mean {held:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"prompts": 64, "seconds": round(time.time() - clock, 1), "rows": rows}
    (args.out / "readout_probe.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
