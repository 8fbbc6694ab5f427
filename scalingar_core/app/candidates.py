"""``candidates.png``: every candidate of one generation, numbered, with the chosen one framed in green.

Each panel is two caption lines (``#i`` and what became of the candidate: chosen, or removed at which step;
below, the checker's short verdict when there is one, or why it was removed) above the image. Removed
candidates keep the red frame and diagonal the sampler gave them; the chosen one gets a green frame, so the
two can never be confused.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.images import REMOVED_RGB
from .style import BACKGROUND, CHOSEN_RGB, TEXT, font, outline, rgb255


def caption(record: dict, steps: int, note: str | None) -> tuple[list[str], tuple[int, int, int]]:
    """The caption lines of one candidate (``#i`` and its fate; below, ``note``: the checker's short
    verdict or why it was removed) and their colour."""
    first = f"#{record['index']}"
    colour = TEXT
    if record["selected"]:
        first += " chosen"
        colour = rgb255(CHOSEN_RGB)
    elif record["removed_at"] is not None:
        first += f" removed at {record['removed_at'] + 1}/{steps}"
        colour = rgb255(REMOVED_RGB)
        note = note or (record.get("removed_reason") or "").replace("_", " ")
    return [first, note or ""], colour


def candidate_panel(image: torch.Tensor, record: dict, steps: int, note: str | None = None,
                    min_side: int = 192) -> torch.Tensor:
    """One candidate: two caption lines above the (enlarged, nearest) image; ``[3, H', W']`` in [0, 1]."""
    from PIL import Image, ImageDraw

    scale = max(1, math.ceil(min_side / min(image.shape[-2:])))
    img = F.interpolate(image[None].float().clamp(0, 1).cpu(), scale_factor=scale, mode="nearest")[0]
    if record["selected"]:
        outline(img, (0, 0, img.shape[2], img.shape[1]), max(3, min(img.shape[-2:]) // 24), CHOSEN_RGB)
    size = max(11, round(min(img.shape[-2:]) / 14))
    line_h = round(size * 1.35)
    caption_h = 2 * line_h + size // 3
    canvas = np.empty((caption_h + img.shape[1], img.shape[2], 3), dtype=np.float32)
    canvas[...] = np.array(BACKGROUND, dtype=np.float32) / 255
    canvas[caption_h:] = img.permute(1, 2, 0).numpy()
    pil = Image.fromarray(np.rint(canvas * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    lines, colour = caption(record, steps, note)
    for k, line in enumerate(lines):
        draw.text((3, size // 6 + k * line_h + line_h // 2), line, fill=colour if k == 0 else TEXT,
                  font=font(size), anchor="lm")
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)


def candidate_panels(images: torch.Tensor, trace, notes: dict[int, str] | None = None,
                     min_side: int = 192) -> torch.Tensor:
    """Every candidate's panel in index order, ``[N, 3, H', W']``. ``images``: the sampler's candidates
    (removed ones already framed in red); ``notes``: a short second caption line per candidate index."""
    notes = notes or {}
    return torch.stack([
        candidate_panel(images[r.index], {"index": r.index, "selected": r.selected, "removed_at": r.removed_at,
                                          "removed_reason": r.removed_reason}, trace.steps, notes.get(r.index),
                        min_side)
        for r in sorted(trace.trajectories, key=lambda r: r.index)])
