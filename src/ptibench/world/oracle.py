"""The attribute oracle: read an image of the world back into its attributes.

Exact on rendered images; on generated ones it reads what a person would (the border's colour,
the foreground's colour, centroid, extent and best-matching shape template).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import COLOURS, NOVEL_SHAPES, POSITIONS, RESOLUTION, SHAPES, SIZES, shape_mask

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float64)
_FOREGROUND_DISTANCE = 80.0
_SIZE_THRESHOLD = (2 * SIZES["small"] + 2 * SIZES["large"]) / 2


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
    colour = _nearest_colour(np.median(pixels[mask], axis=0))
    ys, xs = np.nonzero(mask)
    scale = width / RESOLUTION
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    offset = np.array([(cx - width / 2) / scale, (cy - height / 2) / scale])
    anchors = np.array(list(POSITIONS.values()))
    position = list(POSITIONS)[int(np.argmin(((anchors - offset) ** 2).sum(axis=1)))]
    extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / scale
    size = "large" if extent > _SIZE_THRESHOLD else "small"
    shape = _best_shape(mask, cx, cy, extent * scale / 2, shapes, width)
    return Reading(background, colour, position, size, shape, fraction)


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
