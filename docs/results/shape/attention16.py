"""Probe: does the UNet draw shapes better with attention at its 16x16 level?

The shipped UNet cross-attends to the prompt at 8x8 and 4x4 only: its first down block and its
last up block (the 16x16 latent, where a shape's outline lives) are plain ResNet blocks. Stable
Diffusion 1.x is the other way round (attention at the three finest levels, none at the
coarsest). `prepare` copies the shipped pipeline and turns those two blocks into
`CrossAttnDownBlock2D` / `CrossAttnUpBlock2D` (self- and cross-attention, as the other levels):
with `--cross-only` both attentions of the new blocks attend to the prompt (no self-attention).
Every shipped weight is kept and each new transformer's output projection starts at zero, so the
prepared UNet computes exactly the shipped function (checked on random inputs). Training and
measuring are `shape_phase.py`'s, so the runs compare with its control (the language phase once
more, `--weight 0`) and its shape term (`--weight 0.3`):

    python docs/results/shape/attention16.py prepare --work /work/exp/attn16-0
    python docs/results/shape/shape_phase.py train --weight 0 --work /work/exp/attn16-0
    python docs/results/shape/shape_phase.py measure --world /work/exp/attn16-0 \
        --out docs/results/shape/phase-attn16-0

`prepare` also times a training step (forward and backward, batch 32) of both UNets, alternated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from ptibench.assets import tiny_world_path
from ptibench.world.layout_unet import LayoutUNet2DConditionModel


def with_attention16(
    unet: LayoutUNet2DConditionModel, cross_only: bool = False
) -> LayoutUNet2DConditionModel:
    """`unet` with attention at its finest level, computing the same function as `unet`;
    `cross_only`: both of the new blocks' attentions attend to the prompt (no self-attention)."""
    config = dict(unet.config)
    if cross_only:
        config["only_cross_attention"] = [True, False, False]
    config["down_block_types"] = ["CrossAttnDownBlock2D", *config["down_block_types"][1:]]
    config["up_block_types"] = [*config["up_block_types"][:-1], "CrossAttnUpBlock2D"]
    new = LayoutUNet2DConditionModel.from_config(config)
    missing, unexpected = new.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or not all(".attentions." in k for k in missing):
        raise SystemExit(f"unexpected keys {unexpected} or missing non-attention keys {missing}")
    for block in (new.down_blocks[0], new.up_blocks[-1]):
        for transformer in block.attentions:
            torch.nn.init.zeros_(transformer.proj_out.weight)
            torch.nn.init.zeros_(transformer.proj_out.bias)
    return new


def random_inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents, timesteps and text states shaped as the world's UNet takes them."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 16, 16, generator=gen)
    states = torch.randn(batch, 16, 128, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    return x, t, states


def step_seconds(unet, batch: int = 32, repeats: int = 5) -> float:
    """Median seconds of one forward and backward pass at the world's training batch."""
    x, t, states = random_inputs(batch, seed=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        unet(x, t, states).sample.square().mean().backward()
        times.append(time.perf_counter() - start)
        unet.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def prepare(work: Path, cross_only: bool) -> None:
    shipped = tiny_world_path() / "pipeline"
    unet = LayoutUNet2DConditionModel.from_pretrained(shipped / "unet", dtype=torch.float32)
    new = with_attention16(unet, cross_only)
    x, t, states = random_inputs(8, seed=1)
    with torch.no_grad():
        difference = float((unet(x, t, states).sample - new(x, t, states).sample).abs().max())
    seconds = {"shipped": [], "attention16": []}
    for _ in range(2):
        seconds["shipped"].append(round(step_seconds(unet), 4))
        seconds["attention16"].append(round(step_seconds(new), 4))
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(shipped, work / "pipeline")
    new.half().save_pretrained(work / "pipeline" / "unet", safe_serialization=True)
    report = {
        "max_output_difference": difference,
        "parameters": {
            "shipped": sum(p.numel() for p in unet.parameters()),
            "attention16": sum(p.numel() for p in new.parameters()),
        },
        "train_step_seconds_batch32": seconds,
        "threads": torch.get_num_threads(),
        "cross_only": cross_only,
    }
    (work / "attention16.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare")
    pr.add_argument("--work", type=Path, required=True)
    pr.add_argument("--threads", type=int, default=1)
    pr.add_argument("--cross-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prepare(args.work, args.cross_only)


if __name__ == "__main__":
    main()
