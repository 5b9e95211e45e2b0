"""The metric models of a world: CLIP (open_clip) and LPIPS, with the preprocessing their inputs
need, loaded once per process per world version.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ptibench.errors import PtibenchError
from ptibench.models.checkpoints import check_lpips_backbone, check_open_clip_weights
from ptibench.models.config import WorldConfig
from ptibench.models.loading import offline, quiet_loading, world_version
from ptibench.models.registry import resolve_world


@dataclass
class MetricModels:
    """CLIP and LPIPS, with the preprocessing their inputs need (from [-1, 1] NCHW)."""

    clip: torch.nn.Module
    clip_tokenizer: Callable
    lpips: torch.nn.Module
    clip_size: int
    clip_mean: torch.Tensor
    clip_std: torch.Tensor
    lpips_resolution: int | None
    device: torch.device

    def clip_input(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(self.device).float() + 1) / 2
        if x.shape[-1] != self.clip_size or x.shape[-2] != self.clip_size:
            x = F.interpolate(x, size=self.clip_size, mode="bicubic", antialias=True)
        return (x - self.clip_mean) / self.clip_std

    def lpips_input(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device).float()
        if self.lpips_resolution and x.shape[-1] != self.lpips_resolution:
            x = F.interpolate(x, size=self.lpips_resolution, mode="bilinear")
        return x


def _load_clip(config: WorldConfig, device: torch.device):
    import open_clip

    if config.clip_config:
        if not Path(config.clip_config).is_file():
            raise PtibenchError(
                f"CLIP config for world {config.name!r} not found: {config.clip_config}"
            )
        open_clip.add_model_config(config.clip_config)
    pretrained = config.clip_pretrained
    if pretrained and (
        os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))
    ):
        if not Path(pretrained).is_file():
            raise PtibenchError(
                f"CLIP weights for world {config.name!r} not found: {pretrained} "
                "(a world still training writes them last)"
            )

    check_open_clip_weights(config.clip_arch, pretrained)
    try:
        model = open_clip.create_model(config.clip_arch, pretrained=pretrained, device=device)
    except (RuntimeError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PtibenchError(
            f"cannot load CLIP {config.clip_arch!r} ({pretrained}) "
            f"for world {config.name!r}: {first}"
        ) from error
    model.eval().requires_grad_(False)
    return model, open_clip.get_tokenizer(config.clip_arch)


def _load_lpips(config: WorldConfig, device: torch.device):
    import lpips

    weights = config.lpips_weights
    if weights == "random":  # offline tests: random backbone, lpips's shipped linear heads
        metric = lpips.LPIPS(net=config.lpips_net, pnet_rand=True, verbose=False)
    elif weights is None:
        check_lpips_backbone(config.lpips_net)
        metric = lpips.LPIPS(net=config.lpips_net, verbose=False)
    else:
        from safetensors.torch import load_file

        if not Path(weights).is_file():
            raise PtibenchError(
                f"LPIPS weights for world {config.name!r} not found: {weights} "
                "(a world still training writes them last)"
            )
        metric = lpips.LPIPS(
            net=config.lpips_net, lpips=False, pretrained=False, pnet_rand=True, verbose=False
        )
        state = {k: v.float() for k, v in load_file(weights).items()}
        metric.net.load_state_dict(state)
    return metric.to(device).eval().requires_grad_(False)


@functools.lru_cache(maxsize=2)
def _metric_models(config: WorldConfig, version: str) -> MetricModels:
    offline()
    device = config.torch_device()
    with quiet_loading():
        clip, tokenizer = _load_clip(config, device)
        lpips_model = _load_lpips(config, device)
    image_size = clip.visual.image_size
    size = image_size[0] if isinstance(image_size, tuple | list) else int(image_size)
    cfg = getattr(clip.visual, "preprocess_cfg", {}) or {}
    mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=device)
    std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), device=device)
    return MetricModels(
        clip=clip,
        clip_tokenizer=tokenizer,
        lpips=lpips_model,
        clip_size=size,
        clip_mean=mean.view(1, 3, 1, 1),
        clip_std=std.view(1, 3, 1, 1),
        lpips_resolution=config.lpips_resolution,
        device=device,
    )


def load_metric_models(world: str | WorldConfig) -> MetricModels:
    config = resolve_world(world)
    return _metric_models(config, world_version(config))
