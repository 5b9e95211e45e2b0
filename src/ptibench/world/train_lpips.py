"""The LPIPS backbone: lpips's AlexNet feature stack, trained to predict every attribute of the
world's images, compared at LPIPS_RESOLUTION.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ptibench.world.recipe import TrainConfig, merge_manifest

from .dataset import render_set
from .render import COLOURS, POSITIONS, SHAPES, SIZES

LPIPS_RESOLUTION = 64


def train_lpips_backbone(out: Path, config: TrainConfig) -> dict:
    """Train the AlexNet feature stack LPIPS uses, by predicting every attribute of the image.

    Features that separate shape, colour, background, position and size are the perceptual
    features of this world; LPIPS then compares images in that feature space.
    """
    import lpips

    torch.manual_seed(config.seed + 20)
    metric = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    backbone = metric.net
    heads = torch.nn.ModuleDict(
        {
            "shape": torch.nn.Linear(256 * 9, len(SHAPES)),
            "colour": torch.nn.Linear(256 * 9, len(COLOURS)),
            "background": torch.nn.Linear(256 * 9, len(COLOURS)),
            "position": torch.nn.Linear(256 * 9, len(POSITIONS)),
            "size": torch.nn.Linear(256 * 9, len(SIZES)),
        }
    )
    vocab = {
        "shape": list(SHAPES),
        "colour": list(COLOURS),
        "background": list(COLOURS),
        "position": list(POSITIONS),
        "size": list(SIZES),
    }
    data = render_set(config.images, config.seed + 21)
    labels = {
        key: torch.tensor([values.index(getattr(a, key)) for a in data.attributes])
        for key, values in vocab.items()
    }
    for p in backbone.parameters():
        p.requires_grad_(True)
    params = list(backbone.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(config.seed + 22)
    start = time.time()
    for _step in tqdm(range(config.lpips_steps), desc="lpips", mininterval=10):
        idx = torch.randint(0, len(data.pixels), (config.lpips_batch,), generator=gen)
        images = F.interpolate(data.pixels[idx], size=LPIPS_RESOLUTION, mode="bilinear")
        feats = backbone(metric.scaling_layer(images))[-1]
        pooled = F.adaptive_avg_pool2d(feats, 3).flatten(1)
        loss = sum(F.cross_entropy(heads[k](pooled), labels[k][idx]) for k in heads)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    folder = out / "lpips"
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(
        {k: v.half().contiguous() for k, v in backbone.state_dict().items()},
        str(folder / "alex_backbone.safetensors"),
    )
    record = {
        "steps": config.lpips_steps,
        "seconds": round(time.time() - start, 1),
        "loss": float(loss),
    }
    merge_manifest(out, "lpips", record)
    return record
