"""The procedural world: a vocabulary of attributes, a renderer and caption templates.

Images are 32x32 RGB: one flat-coloured object on a flat background. The resolution is the
smallest at which five shapes stay distinguishable, which keeps every model in the world small
enough to train and benchmark on two CPU cores. Shapes are rendered 4x supersampled, so edges
are anti-aliased like a generated image's would be.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, replace

import numpy as np

RESOLUTION = 32
SUPERSAMPLE = 4

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (235, 210, 30),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "ring", "cross")
NOVEL_SHAPES = ("star",)
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (-7.0, 0.0),
    "right": (7.0, 0.0),
    "top": (0.0, -7.0),
    "bottom": (0.0, 7.0),
    "center": (0.0, 0.0),
}
SIZES: dict[str, float] = {"small": 5.0, "large": 8.0}

# Shape x colour pairs that never appear in training, so concepts built on them are novel.
HELD_OUT_PAIRS = frozenset({("ring", "yellow")})


@dataclass(frozen=True)
class Attributes:
    """What one image shows; every field is a key of the vocabulary above."""

    shape: str
    colour: str
    background: str
    position: str
    size: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def with_(self, **changes: str) -> Attributes:
        return replace(self, **changes)


def is_held_out(attrs: Attributes) -> bool:
    """True for combinations never rendered for training (about 10% plus the novel pairs).

    Prompt following is measured on these, so "held-out" means the exact combination of shape,
    colour, background and position was never seen, not just the caption.
    """
    if (attrs.shape, attrs.colour) in HELD_OUT_PAIRS or attrs.shape in NOVEL_SHAPES:
        return True
    key = f"{attrs.shape}|{attrs.colour}|{attrs.background}|{attrs.position}".encode()
    return zlib.crc32(key) % 10 == 0


def sample_attributes(rng: np.random.Generator, *, held_out: bool = False) -> Attributes:
    """Draw a random training (or held-out) combination; object and background always differ."""
    colours = list(COLOURS)
    while True:
        attrs = Attributes(
            shape=SHAPES[rng.integers(len(SHAPES))],
            colour=colours[rng.integers(len(colours))],
            background=colours[rng.integers(len(colours))],
            position=list(POSITIONS)[rng.integers(len(POSITIONS))],
            size=list(SIZES)[rng.integers(len(SIZES))],
        )
        if attrs.colour != attrs.background and is_held_out(attrs) == held_out:
            return attrs


def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    n = resolution * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    return np.meshgrid(coords, coords, indexing="xy")


def shape_mask(
    shape: str, cx: float, cy: float, radius: float, resolution: int = RESOLUTION
) -> np.ndarray:
    """Coverage in [0, 1] of each pixel by the shape centred at (cx, cy)."""
    xs, ys = _grid(resolution)
    dx, dy = xs - cx, ys - cy
    dist = np.hypot(dx, dy)
    r = radius
    if shape == "circle":
        inside = dist <= r
    elif shape == "square":
        inside = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    elif shape == "triangle":
        # Upward triangle: apex at (0, -r), base at y = 0.8 r, half-width 0.95 r.
        height = 1.8 * r
        half_width_at_y = 0.95 * r * (dy + r) / height
        inside = (dy <= 0.8 * r) & (dy >= -r) & (np.abs(dx) <= half_width_at_y)
    elif shape == "ring":
        inside = (dist <= r) & (dist >= 0.55 * r)
    elif shape == "cross":
        arm = 0.33 * r
        inside = ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | (
            (np.abs(dy) <= arm) & (np.abs(dx) <= r)
        )
    elif shape == "star":
        angle = np.arctan2(dy, dx) + np.pi / 2
        phase = np.mod(angle, 2 * np.pi / 5) / (2 * np.pi / 5)
        edge = r * (0.45 + 0.55 * np.abs(2 * phase - 1))
        inside = dist <= edge
    else:
        raise ValueError(f"unknown shape {shape!r}")
    s = SUPERSAMPLE
    return inside.reshape(resolution, s, resolution, s).mean(axis=(1, 3))


def render(
    attrs: Attributes, rng: np.random.Generator | None = None, resolution: int = RESOLUTION
) -> np.ndarray:
    """Render attributes to an HxWx3 uint8 image; `rng` jitters position and size slightly."""
    scale = resolution / RESOLUTION
    ox, oy = POSITIONS[attrs.position]
    radius = SIZES[attrs.size]
    if rng is not None:
        ox += rng.uniform(-0.75, 0.75)
        oy += rng.uniform(-0.75, 0.75)
        radius *= rng.uniform(0.95, 1.05)
    centre = resolution / 2
    alpha = shape_mask(
        attrs.shape, centre + ox * scale, centre + oy * scale, radius * scale, resolution
    )[..., None]
    fg = np.array(COLOURS[attrs.colour], dtype=np.float64)
    bg = np.array(COLOURS[attrs.background], dtype=np.float64)
    return np.round(bg * (1 - alpha) + fg * alpha).astype(np.uint8)


def caption(attrs: Attributes, rng: np.random.Generator | None = None) -> str:
    """A natural caption; with `rng`, attributes are randomly left out and reordered.

    Leaving attributes out teaches the model that an unnamed attribute is free, which is what
    edit prompts like "a <concept> on a green background" rely on.
    """
    keep_size = keep_colour = keep_bg = keep_pos = True
    bg_first = True
    if rng is not None:
        keep_size = rng.random() < 0.5
        keep_colour = rng.random() < 0.85
        keep_bg = rng.random() < 0.8
        keep_pos = rng.random() < 0.8
        bg_first = rng.random() < 0.5
    return describe(
        attrs.shape,
        size=attrs.size if keep_size else None,
        colour=attrs.colour if keep_colour else None,
        background=attrs.background if keep_bg else None,
        position=attrs.position if keep_pos else None,
        background_first=bg_first,
    )


def describe(
    noun: str,
    *,
    size: str | None = None,
    colour: str | None = None,
    background: str | None = None,
    position: str | None = None,
    background_first: bool = True,
) -> str:
    """Build a caption around any noun phrase (a shape name, a class noun or a placeholder)."""
    words = " ".join(w for w in (size, colour, noun) if w)
    article = "an" if words[0] in "aeiou" else "a"
    bg = f" on a {background} background" if background else ""
    pos = f" at the {position}" if position else ""
    return f"{article} {words}" + (bg + pos if background_first else pos + bg)
