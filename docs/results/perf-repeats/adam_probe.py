"""Probe: the default grid's 6 LoRA lrs trained stacked (K = 6) and one after another, with
torch's Adam implementations, alternated over two rounds in one process on one torch thread: each
side's time, the stacked/sequential ratio, and whether the adapters equal the
one-tensor-at-a-time Adam's bit for bit.

    python docs/results/perf-repeats/adam_probe.py --steps 50
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ptibench.concept import load_concept
from ptibench.models.loading import load_bundle
from ptibench.spec import CaseSpec
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import Method, get_method
from ptibench.training.stacked_lora import adapter_weights, train_stacked

LORA_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
MODES = {"one-by-one": {"foreach": False}, "foreach": {"foreach": True}}
SIDES = ("sequential", "stacked")


def adam(mode: str):
    def optimizer(self, stage, params, lr):
        return torch.optim.Adam(
            params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **MODES[mode]
        )

    return optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_bundle("tiny-world")
    concept = load_concept("yellow-ring")
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    method = get_method("pti")
    pivot = bundle.word_embedding(concept.initializer)
    specs = [CaseSpec(stage="finetune", lr=lr, steps=args.steps) for lr in LORA_GRID]
    shipped = Method.optimizer
    seconds: dict[str, list[float]] = {f"{m} {side}": [] for m in MODES for side in SIDES}
    weights = {}

    def sequential():
        return [
            method.train("finetune", StageContext(s, concept, bundle, data, pivot=pivot))
            for s in specs
        ]

    def stacked():
        return train_stacked(bundle, concept, data, specs, method, pivot)

    try:
        for _ in range(2):
            for mode in MODES:
                Method.optimizer = adam(mode)
                for side, run in (("sequential", sequential), ("stacked", stacked)):
                    with torch.random.fork_rng(devices=[]):
                        clock = time.perf_counter()
                        outcomes = run()
                        seconds[f"{mode} {side}"].append(round(time.perf_counter() - clock, 2))
                    weights[(mode, side)] = [adapter_weights(o.unet) for o in outcomes]
    finally:
        Method.optimizer = shipped
    base = weights[("one-by-one", "stacked")]
    report: dict = {"steps": args.steps, "k": len(specs), "seconds": seconds}
    for mode in MODES:
        report[f"{mode} sequential / stacked"] = round(
            sum(seconds[f"{mode} sequential"]) / sum(seconds[f"{mode} stacked"]), 2
        )
        pairs = [
            (a[n], b[n]) for a, b in zip(base, weights[(mode, "stacked")], strict=True) for n in a
        ]
        report[f"{mode} stacked adapters equal to one-by-one's"] = all(
            torch.equal(a, b) for a, b in pairs
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
