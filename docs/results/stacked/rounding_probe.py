"""How far a stacked stage-2 run lands from the same cases trained alone, and how far the run
alone lands from itself when only its float rounding changes (1 vs 2 torch threads).

The default LoRA grid of `yellow-ring` on the tiny world, seeds 0-2, `--steps` steps (50 by
default), around the initializer's embedding as the pivot. Prints, per (seed, lr), the largest
adapter-weight difference between the stacked run of all 18 cases and the run alone (absolute,
and in units of lr: one Adam step moves an element by about lr), then the same for the run
alone at 1 and 2 threads on the cases that differ most.

    python docs/results/stacked/rounding_probe.py [--steps 50]
"""

from __future__ import annotations

import argparse

import torch

from ptibench.concept import load_concept
from ptibench.models.loading import load_bundle
from ptibench.models.registry import resolve_world
from ptibench.spec import CaseSpec
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import get_method
from ptibench.training.stacked_lora import train_stacked

LRS = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
SEEDS = (0, 1, 2)


def adapter(unet) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in unet.named_parameters() if ".lora_" in n}


def gap(left: dict, right: dict) -> tuple[float, float]:
    """(largest absolute difference, relative Frobenius difference) of two adapters."""
    largest = max(float((left[n] - right[n]).abs().max()) for n in left)
    diff = sum(float((left[n] - right[n]).pow(2).sum()) for n in left) ** 0.5
    norm = sum(float(left[n].pow(2).sum()) for n in left) ** 0.5
    return largest, diff / norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    world = resolve_world("tiny-world")
    bundle = load_bundle(world)
    concept = load_concept("yellow-ring")
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    method = get_method("pti")
    pivot = bundle.word_embedding(concept.initializer)
    specs = [
        CaseSpec(stage="finetune", lr=lr, seed=seed, world=world.name, steps=args.steps)
        for seed in SEEDS
        for lr in LRS
    ]

    def alone(spec, threads: int) -> dict[str, torch.Tensor]:
        torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):
            ctx = StageContext(spec, concept, bundle, data, pivot=pivot)
            return adapter(method.train("finetune", ctx).unet)

    single = [alone(spec, 1) for spec in specs]
    with torch.random.fork_rng(devices=[]):
        stacked = [
            adapter(o.unet) for o in train_stacked(bundle, concept, data, specs, method, pivot)
        ]
    print(f"stacked (K={len(specs)}) vs alone, {args.steps} steps, 1 thread")
    gaps = []
    for spec, mine, theirs in zip(specs, stacked, single, strict=True):
        largest, relative = gap(theirs, mine)
        gaps.append((largest / spec.lr, spec))
        print(
            f"  seed {spec.seed} lr {spec.lr:g}: max {largest:.2e} = {largest / spec.lr:.3f} lr, "
            f"relative {relative:.2e}"
        )
    print("alone, 1 vs 2 threads, the three cases the stack moved most (in lr)")
    for _, spec in sorted(gaps, key=lambda item: item[0], reverse=True)[:3]:
        largest, relative = gap(alone(spec, 1), alone(spec, 2))
        print(
            f"  seed {spec.seed} lr {spec.lr:g}: max {largest:.2e} = {largest / spec.lr:.3f} lr, "
            f"relative {relative:.2e}"
        )


if __name__ == "__main__":
    main()
