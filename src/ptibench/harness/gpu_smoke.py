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

from ptibench.models.config import WorldConfig
from ptibench.models.random_weights import sd15_pipeline
from ptibench.models.registry import register_world, resolve_world
from ptibench.run.runner import run_case
from ptibench.spec import CaseSpec, EvalConfig


def write_noise_concept(folder: Path, resolution: int, images: int = 4) -> Path:
    """A concept folder of random-noise images: training inputs of the right size for timing,
    with no meaning (its metrics are not figures)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(images):
        size = (resolution, resolution, 3)
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "concept.json").write_text(
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
    return folder


def sd15_world(root: Path, resolution: int, dtype: str, full: bool = True) -> WorldConfig:
    """An SD1.5-sized random-init pipeline under `root` (written once), as a world on the GPU
    when there is one, with random metric models (nothing is downloaded). full=False: the same
    architecture at toy widths, to check a script on a CPU before a GPU is lent."""
    folder = root / ("sd15" if full else "sd15-toy")
    if not (folder / "model_index.json").is_file():
        sd15_pipeline(folder, resolution=resolution, full=full)
    return replace(
        resolve_world(str(folder)),
        device="cuda" if torch.cuda.is_available() else "cpu",
        dtype=dtype,
        clip_pretrained=None,
        lpips_weights="random",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    root = Path(args.out or tempfile.mkdtemp(prefix="ptibench-gpu-"))
    world = sd15_world(root, args.resolution, args.dtype)
    concept = write_noise_concept(root / "concept", args.resolution)
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
