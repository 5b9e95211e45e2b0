"""A short CUDA case on an SD1.5-sized random-init pipeline at 512x512: steps/s, peak memory.

    python -m ptibench.harness.gpu_smoke [--steps 50] [--dtype bfloat16] [--out DIR]

Builds the pipeline from configs (no weights needed), runs stage 1 (inversion) and stage 2
(LoRA) through run_case with a small evaluation, and prints one JSON line per stage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ptibench.models.random_weights import sd15_pipeline
from ptibench.models.registry import register_world, resolve_world
from ptibench.run.runner import run_case
from ptibench.spec import CaseSpec, EvalConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    root = Path(args.out or tempfile.mkdtemp(prefix="ptibench-gpu-"))
    if not (root / "sd15" / "model_index.json").is_file():
        sd15_pipeline(root / "sd15", resolution=args.resolution, full=True)
    concept = root / "concept"
    concept.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        size = (args.resolution, args.resolution, 3)
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(concept / f"{i}.png")
    (concept / "concept.json").write_text(
        json.dumps(
            {
                "name": "noise",
                "placeholder": "<noise>",
                "class_noun": "texture",
                "initializer": "texture",
                "reconstruction_prompt": "a photo of a {}",
                "edit_prompts": ["a {} in the snow", "a red {}"],
            }
        )
    )
    world = replace(
        resolve_world(str(root / "sd15")),
        device="cuda" if torch.cuda.is_available() else "cpu",
        dtype=args.dtype,
        clip_pretrained=None,
        lpips_weights="random",
    )
    register_world("gpu-smoke", lambda: world)
    for stage in ("inversion", "finetune"):
        spec = CaseSpec(
            stage=stage,
            lr=1e-3,
            world="gpu-smoke",
            concept=str(concept),
            steps=args.steps,
            pivot_lr=1e-3,
            eval=EvalConfig(samples_per_prompt=2, sample_steps=10),
        )
        result = run_case(spec, cache_dir=root / "cache", progress=False)
        train_s = result.timings.get("train_s", float("nan"))
        report = {
            "stage": stage,
            "status": result.status,
            "device": result.environment.get("device"),
            "dtype": args.dtype,
            "resolution": args.resolution,
            "batch_size": spec.batch_size,
            "steps_per_s": args.steps / train_s if train_s else None,
            "peak_memory_mb": result.peak_memory_mb,
            "timings": result.timings,
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
