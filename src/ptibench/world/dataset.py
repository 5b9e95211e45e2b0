"""Deterministic training sets of the world: rendered images with their attributes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ptibench.world.render import COLOURS, Attributes, render, sample_attributes


@dataclass
class WorldImages:
    """N rendered images as a float tensor in [-1, 1] (N, 3, 32, 32) and their attributes."""

    pixels: torch.Tensor
    attributes: list[Attributes]


def render_set(n: int, seed: int, *, held_out: bool = False) -> WorldImages:
    rng = np.random.default_rng(seed)
    attributes = [sample_attributes(rng, held_out=held_out) for _ in range(n)]
    images = np.stack([render(a, rng) for a in attributes])
    return WorldImages(to_model_range(images), attributes)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], the range diffusers VAEs expect."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def foreground_alpha(images: WorldImages) -> torch.Tensor:
    """Per-pixel object coverage (N, 1, H, W), read back exactly from the flat-colour rendering.

    A pixel is `bg + alpha * (fg - bg)`, so alpha is the length of `pixel - bg` over `fg - bg`.
    """
    bg = torch.tensor([COLOURS[a.background] for a in images.attributes], dtype=torch.float32)
    fg = torch.tensor([COLOURS[a.colour] for a in images.attributes], dtype=torch.float32)
    bg, fg = bg / 127.5 - 1.0, fg / 127.5 - 1.0
    offset = images.pixels - bg[:, :, None, None]
    span = (fg - bg).norm(dim=1)[:, None, None, None]
    return (offset.norm(dim=1, keepdim=True) / span).clamp(0.0, 1.0)
