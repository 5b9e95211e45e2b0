"""The attribute oracle: read an image of the world back into its attributes.

Exact on rendered images; on generated ones it reads what a person would (the border's colour,
the foreground's colour, centroid, extent and best-matching shape template).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptibench.world.render import (
    COLOURS,
    NOVEL_SHAPES,
    POSITIONS,
    RESOLUTION,
    SHAPES,
    SIZES,
    shape_mask,
)

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float64)
_FOREGROUND_DISTANCE = 80.0
_SIZE_THRESHOLD = (2 * SIZES["small"] * 1.05 + 2 * 0.85 * SIZES["large"] * 0.95) / 2
"""Halfway between the widest small object (a circle at the renderer's +5% radius jitter: 10.5 px
at radius 5) and the narrowest large one (a square of side 2 x 0.85 x radius at -5%: 12.9 px at
radius 8), in 32-px image units."""


@dataclass(frozen=True)
class Reading:
    """What the oracle saw; fields are None where no object was found."""

    background: str
    colour: str | None
    position: str | None
    size: str | None
    shape: str | None
    foreground_fraction: float

    def matches(self, wanted: dict[str, str]) -> bool:
        """True when every attribute in `wanted` was read as asked."""
        return all(getattr(self, key) == value for key, value in wanted.items())


def _nearest_colour(rgb: np.ndarray) -> str:
    return _PALETTE_NAMES[int(np.argmin(((_PALETTE - rgb) ** 2).sum(axis=1)))]


def to_uint8(image) -> np.ndarray:
    """Accept a PIL image, an HxWx3 uint8 array or a float array in [0, 1]."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return array[..., :3]


def read(image, shapes: tuple[str, ...] = SHAPES + NOVEL_SHAPES) -> Reading:
    """Read one image (any resolution; positions and sizes scale with it)."""
    pixels = to_uint8(image).astype(np.float64)
    height, width = pixels.shape[:2]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    bg_rgb = np.median(border, axis=0)
    background = _nearest_colour(bg_rgb)
    distance = np.sqrt(((pixels - bg_rgb) ** 2).sum(axis=-1))
    mask = distance > _FOREGROUND_DISTANCE
    fraction = float(mask.mean())
    if mask.sum() < 2:
        return Reading(background, None, None, None, None, fraction)
    # the object's colour from its core (the pixels farthest from the background): a thin shape's
    # mask is mostly anti-aliased edge, whose blend of colours can sit nearer another palette entry
    core = mask & (distance >= 0.8 * distance[mask].max())
    fg_rgb = np.median(pixels[core], axis=0)
    colour = _nearest_colour(fg_rgb)
    ys, xs = np.nonzero(mask)
    scale = width / RESOLUTION
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    offset = np.array([(cx - width / 2) / scale, (cy - height / 2) / scale])
    anchors = np.array(list(POSITIONS.values()))
    position = list(POSITIONS)[int(np.argmin(((anchors - offset) ** 2).sum(axis=1)))]
    extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / scale
    coverage = distance / max(float(np.linalg.norm(fg_rgb - bg_rgb)), 1e-6)
    size = "large" if _soft_extent(coverage, ys, xs) / scale > _SIZE_THRESHOLD else "small"
    shape = _best_shape(mask, cx, cy, extent * scale / 2, shapes, width)
    return Reading(background, colour, position, size, shape, fraction)


def _soft_extent(coverage: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> float:
    """Width or height of the object (the larger), summed from its per-pixel coverage around the
    mask's box rather than counted from the thresholded mask: anti-aliased edges count by how much
    they are covered, so a large triangle whose base row is under half covered is not read as
    small."""
    top, left = max(int(ys.min()) - 1, 0), max(int(xs.min()) - 1, 0)
    box = np.clip(coverage[top : ys.max() + 2, left : xs.max() + 2], 0.0, 1.0)
    return float(max(box.max(axis=0).sum(), box.max(axis=1).sum()))


def _best_shape(
    mask: np.ndarray, cx: float, cy: float, half_extent: float, shapes, resolution: int
) -> str:
    """The shape whose template, fitted to the object's box, overlaps the mask best (IoU)."""
    best, best_iou = shapes[0], -1.0
    for shape in shapes:
        radius = half_extent / (0.85 if shape == "square" else 1.0)
        centre_y = cy + (0.1 * radius if shape == "triangle" else 0.0)
        template = shape_mask(shape, cx, centre_y, radius, resolution) > 0.5
        union = np.logical_or(template, mask).sum()
        iou = np.logical_and(template, mask).sum() / max(union, 1)
        if iou > best_iou:
            best, best_iou = shape, iou
    return best
