"""Colours and the font shared by the pictures the pack draws (the live widget's dark theme)."""
from __future__ import annotations

from functools import lru_cache

BACKGROUND, TEXT, MUTED = (27, 29, 34), (201, 206, 216), (138, 144, 156)
CHOSEN_RGB = (0.13, 0.77, 0.37)  # green, for the chosen candidate; removed ones are red (engine.images)
# Never-generated token cells: stripes of two blue-greys, a pattern no colour map produces.
HATCH_RGB = ((0.16, 0.18, 0.22), (0.52, 0.56, 0.64))


def rgb255(rgb: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(round(255 * c) for c in rgb)


@lru_cache(maxsize=8)
def font(size: int):
    """DejaVu Sans (bundled with matplotlib) at ``size`` pixels, for Pillow."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def outline(img, box: tuple[int, int, int, int], width: int, rgb: tuple[float, float, float]) -> None:
    """A rectangle of ``width`` pixels just inside ``box`` (left, top, right, bottom) of ``img``
    (``[3, H, W]`` tensor), in place."""
    import torch

    x0, y0, x1, y1 = box
    colour = torch.tensor(rgb, dtype=img.dtype)[:, None, None]
    for ys, xs in ((slice(y0, y0 + width), slice(x0, x1)), (slice(y1 - width, y1), slice(x0, x1)),
                   (slice(y0, y1), slice(x0, x0 + width)), (slice(y0, y1), slice(x1 - width, x1))):
        img[:, ys, xs] = colour
