"""Probe: does a far-travelled stage-1 token lose its grip on the prompt's other words in the
tiny world's text encoder?

The default stage-1 grid of yellow-ring, seed 0 (7 lrs, 1000 steps, trained batched as the main
job trains it, so the vectors are the baselines' seed-0 vectors) gives one vector v per lr; e0
is the initializer's embedding ("ring"). For every edit prompt of the concept, the text
encoder's final states with the placeholder standing for v are compared with the same prompt
with it standing for e0 (the untrained token):

- `others`: mean cosine over the states of the words after the placeholder (the words an edit
  relies on: "green", "background", ...; the encoder is causal, so earlier words cannot see the
  token; padding excluded). 1 = the other words read as with e0.
- `concept`: cosine of the placeholder slot's own state.
- the same along the lr-1 direction scaled: e0 + s (v - e0), s up to 16, to see whether the
  encoder bounds what distance can do (its blocks are pre-LayerNorm, and a final LayerNorm
  normalises every state).

    python docs/results/rewording/stage1_grip_probe.py --out docs/results/rewording
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ptibench.concept import load_concept
from ptibench.models.loading import load_bundle
from ptibench.spec import CaseSpec
from ptibench.training.batched import train_batched
from ptibench.training.loop import TrainingData
from ptibench.training.methods import get_method

GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 16.0)


@torch.no_grad()
def grip(bundle, concept, vector: torch.Tensor, e0: torch.Tensor) -> dict[str, float]:
    prompts = [concept.with_placeholder(p.prompt) for p in concept.edit_prompts]
    ids, mask = bundle.prompt_ids(prompts, concept.placeholder)
    moved = bundle.encode_ids(ids, mask, vector)
    base = bundle.encode_ids(ids, mask, e0)
    cosine = torch.nn.functional.cosine_similarity(moved, base, dim=-1)
    pad = bundle.tokenizer.pad_token_id
    after = mask.int().cumsum(dim=1).bool() & ~mask  # causal: only later tokens can see it
    words = (ids != pad) & after
    return {
        "others": round(float(cosine[words].mean()), 4),
        "others_min": round(float(cosine[words].min()), 4),
        "concept": round(float(cosine[mask].mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.time()
    bundle = load_bundle("tiny-world")
    concept = load_concept("yellow-ring")
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    specs = [CaseSpec(stage="inversion", lr=lr, steps=args.steps) for lr in GRID]
    outcomes = train_batched(bundle, concept, data, specs, get_method("pti"))
    e0 = bundle.word_embedding(concept.initializer)
    norms = bundle.text_encoder.get_input_embeddings().weight.norm(dim=1)
    rows = {}
    for spec, outcome in zip(specs, outcomes, strict=True):
        rows[f"{spec.lr:g}"] = {
            "distance": round(float((outcome.vector - e0).norm()), 3),
            "norm": round(float(outcome.vector.norm()), 3),
            **grip(bundle, concept, outcome.vector, e0),
        }
        print(f"lr {spec.lr:g}", rows[f"{spec.lr:g}"], flush=True)
    far = outcomes[-1].vector
    scaled = {}
    for s in SCALES:
        vector = e0 + s * (far - e0)
        scaled[f"{s:g}"] = {
            "distance": round(float((vector - e0).norm()), 3),
            **grip(bundle, concept, vector, e0),
        }
        print(f"scale {s:g}", scaled[f"{s:g}"], flush=True)
    record = {
        "concept": concept.name,
        "steps": args.steps,
        "e0_norm": round(float(e0.norm()), 3),
        "vocabulary_norm_median": round(float(norms.median()), 3),
        "by_lr": rows,
        "lr1_direction_scaled": scaled,
        "seconds": round(time.time() - clock, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stage1_grip_probe.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
