"""A case's samples as one labelled sheet: a title naming the case, the concept's training images
as the first row, then one row per prompt with the prompt written beside it.

Tiles are thumbnails: small images (the tiny world's 32 px) are enlarged by an integer factor so
that shapes stay visible next to the text, large ones (512-1024 px models) are shrunk to at most
THUMB_MAX px, so a sheet of 10 prompts x 8 samples stays near 1300 x 1500 px whatever the model.
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

THUMB_MAX = 128
THUMB_MIN = 64
PAD = 4
LABEL_WIDTH = 240
FONT_SIZE = 13
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (90, 90, 90)


def thumb_size(resolution: int) -> int:
    """The tile edge for images of `resolution` px: an integer enlargement up to THUMB_MIN for
    small images, THUMB_MAX at most for large ones."""
    if resolution >= THUMB_MIN:
        return min(resolution, THUMB_MAX)
    return resolution * max(1, THUMB_MIN // resolution)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(pixels: np.ndarray, edge: int) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    if image.size == (edge, edge):
        return image
    enlarge = edge > max(image.size)
    method = Image.Resampling.NEAREST if enlarge else Image.Resampling.LANCZOS
    return image.resize((edge, edge), method)


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font, width: int, lines: int) -> list[str]:
    """`text` broken into at most `lines` lines that fit `width` px (the last one cut with …)."""
    wrapped = [text]
    for chars in range(len(text), 0, -1):
        wrapped = textwrap.wrap(text, chars, break_long_words=True) or [""]
        if all(draw.textlength(line, font=font) <= width for line in wrapped):
            break
    if len(wrapped) > lines:
        wrapped = [*wrapped[: lines - 1], wrapped[lines - 1][:-1] + "…"]
    return wrapped


def labelled_grid(
    images: np.ndarray,
    prompts: list[str],
    title: str,
    reference: np.ndarray | None = None,
) -> Image.Image:
    """[rows, samples, H, W, 3] uint8 (one row per prompt) -> one labelled RGB image.

    `reference` ([N, H', W', 3], the concept's training images) becomes the first row."""
    rows, cols, height = images.shape[:3]
    edge = thumb_size(height)
    font, title_font = _font(FONT_SIZE), _font(FONT_SIZE + 3)
    sheet_rows: list[tuple[str, np.ndarray]] = []
    if reference is not None and len(reference):
        sheet_rows.append((f"training images ({len(reference)})", reference))
    sheet_rows += list(zip(prompts, images, strict=True))
    columns = max(cols, *(len(tiles) for _, tiles in sheet_rows))
    title_height = FONT_SIZE * 2 + 2 * PAD
    width = LABEL_WIDTH + columns * (edge + PAD) + PAD
    height_px = title_height + len(sheet_rows) * (edge + PAD) + PAD
    canvas = Image.new("RGB", (width, height_px), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD), title, fill=INK, font=title_font)
    line_height = FONT_SIZE + 3
    for r, (label, tiles) in enumerate(sheet_rows):
        top = title_height + r * (edge + PAD)
        lines = _wrapped(draw, label, font, LABEL_WIDTH - 2 * PAD, max(1, edge // line_height))
        text_top = top + (edge - len(lines) * line_height) // 2
        colour = MUTED if reference is not None and r == 0 else INK
        for i, line in enumerate(lines):
            draw.text((PAD, text_top + i * line_height), line, fill=colour, font=font)
        for c, pixels in enumerate(tiles):
            canvas.paste(_tile(pixels, edge), (LABEL_WIDTH + c * (edge + PAD), top))
    return canvas
