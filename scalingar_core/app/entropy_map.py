"""Where the model was unsure: each candidate's per-token normalised entropy on its token grid, drawn beside
its decoded image (the paper's token-entropy picture, v3 Fig. 7).

The trace already holds every trajectory's ``entropy_norm`` per step in raster order, so a map costs one
reshape. One panel per candidate: a title row (index, chosen / removed at which step and why, mean
entropy), the image as decoded (its colours untouched), the entropy map of the same grid beside it, and a
colour bar. Token cells never generated are hatched in both, a pattern the colour map never produces, so
they cannot be mistaken for confident ones. A removed candidate keeps its red frame and has the cell of
its last token outlined. All candidates share one colour scale so they compare.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.images import REMOVED_RGB, mark_removed
from .style import BACKGROUND, CHOSEN_RGB, HATCH_RGB, MUTED, TEXT, font, outline, rgb255

COLORMAP = "inferno"  # dark = confident, bright = unsure


@dataclass(frozen=True)
class PanelLayout:
    """Pixel boxes ``(left, top, right, bottom)`` (right/bottom exclusive) of one panel's parts."""

    width: int
    height: int
    title: tuple[int, int, int, int]
    image: tuple[int, int, int, int]
    map: tuple[int, int, int, int]
    bar: tuple[int, int, int, int]
    font_size: int


def panel_layout(image_h: int, image_w: int) -> PanelLayout:
    side = min(image_h, image_w)
    size = max(11, round(side / 20))
    pad = max(4, size // 2)
    title_h = round(size * 1.7)
    bar_w = size
    label_w = round(size * 2.6)
    top = title_h
    image = (0, top, image_w, top + image_h)
    entropy = (image_w + pad, top, 2 * image_w + pad, top + image_h)
    bar = (entropy[2] + pad, top + size // 2, entropy[2] + pad + bar_w, top + image_h - size // 2)
    width = bar[2] + pad + label_w
    return PanelLayout(width=width, height=top + image_h, title=(0, 0, width, title_h),
                       image=image, map=entropy, bar=bar, font_size=size)


def _records(trace) -> list[dict]:
    """index, removed_at, removed_reason, selected and entropy per trajectory, from a Trace or its dict."""
    if isinstance(trace, dict):
        return [{**{k: t.get(k) for k in ("index", "removed_at", "removed_reason", "selected")},
                 "entropy": t.get("signals", {}).get("entropy_norm", [])} for t in trace["trajectories"]]
    return [{"index": r.index, "removed_at": r.removed_at, "removed_reason": r.removed_reason,
             "selected": r.selected, "entropy": r.signals.get("entropy_norm", [])} for r in trace.trajectories]


def _grid(trace) -> tuple[int, int]:
    h, w = trace["grid"] if isinstance(trace, dict) else trace.grid
    return int(h), int(w)


def entropy_grids(trace) -> np.ndarray:
    """``[N, h, w]`` normalised entropy of each trajectory's tokens in raster order (NaN: not generated)."""
    h, w = _grid(trace)
    records = sorted(_records(trace), key=lambda r: r["index"])
    out = np.full((len(records), h * w), np.nan, dtype=np.float32)
    for i, r in enumerate(records):
        values = [np.nan if v is None else float(v) for v in r["entropy"][: h * w]]
        out[i, : len(values)] = values
    return out.reshape(len(records), h, w)


def colour_scale(grids: np.ndarray) -> float:
    """Top of the shared colour scale: the largest entropy rounded up to a tenth (normalised entropy is in
    [0, 1]; the models' values sit low in it, so a fixed 0..1 scale would show nearly flat maps)."""
    finite = grids[np.isfinite(grids)]
    top = float(finite.max()) if finite.size else 1.0
    return min(1.0, max(0.1, math.ceil(top * 10 - 1e-6) / 10))


@lru_cache(maxsize=4)
def _lut(name: str = COLORMAP) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def colourise(values: np.ndarray, vmax: float) -> np.ndarray:
    """``values`` (any shape) -> RGB in [0, 1] (``[..., 3]``) on the 0..vmax colour scale."""
    index = np.clip(np.nan_to_num(values / vmax, nan=0.0), 0.0, 1.0) * 255
    return _lut()[np.rint(index).astype(np.int64)]


def _title(record: dict, entropy: np.ndarray, steps: int) -> tuple[str, tuple[int, int, int]]:
    mean = f"{np.nanmean(entropy):.2f}" if np.isfinite(entropy).any() else "–"  # – : no entropy recorded
    text = f"#{record['index']}"
    colour = TEXT
    if record["removed_at"] is not None:
        reason = (record["removed_reason"] or "removed").replace("_", " ")
        text += f" stopped at {record['removed_at'] + 1}/{steps} ({reason})"
        colour = rgb255(REMOVED_RGB)
    elif record["selected"]:
        text += " chosen"
        colour = rgb255(CHOSEN_RGB)
    return f"{text} · mean {mean}", colour


def hatch(img: torch.Tensor, missing: torch.Tensor, stripe: int) -> torch.Tensor:
    """``img`` (``[3, H, W]``) with the pixels where ``missing`` (``[H, W]`` bool) striped diagonally in
    the two hatch colours, ``stripe`` pixels wide."""
    h, w = missing.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dark = ((xs + ys) // stripe) % 2 == 0
    pattern = torch.where(dark, torch.tensor(HATCH_RGB[0])[:, None, None], torch.tensor(HATCH_RGB[1])[:, None, None])
    return torch.where(missing, pattern.to(img.dtype), img)


def enlarge(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``[h, w]`` token grid stretched to ``size`` pixels, nearest (each token a block of pixels)."""
    return F.interpolate(torch.from_numpy(values)[None, None], size=size, mode="nearest")[0, 0].numpy()


def stripe_width(side: int) -> int:
    return max(2, side // 48)


def picture(image: torch.Tensor, entropy: np.ndarray, scale: int) -> torch.Tensor:
    """The candidate as decoded, enlarged ``scale`` times (nearest), never-generated cells hatched."""
    img = F.interpolate(image[None].float().clamp(0, 1), scale_factor=scale, mode="nearest")[0]
    missing = torch.from_numpy(~np.isfinite(enlarge(entropy, img.shape[-2:])))
    return hatch(img, missing, stripe_width(min(img.shape[-2:])))


def entropy_image(entropy: np.ndarray, size: tuple[int, int], vmax: float) -> torch.Tensor:
    """The entropy grid colour-mapped at ``size`` pixels, never-generated cells hatched."""
    values = enlarge(entropy, size)
    img = torch.from_numpy(colourise(values, vmax)).permute(2, 0, 1)
    return hatch(img, torch.from_numpy(~np.isfinite(values)), stripe_width(min(size)))


def last_cell(entropy: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel box of the last generated token's cell (tokens come in raster order), or None."""
    (h, w), (hh, ww) = entropy.shape, size
    last = int(np.isfinite(entropy).sum()) - 1
    if last < 0:
        return None
    r, c = divmod(last, w)
    return c * ww // w, r * hh // h, (c + 1) * ww // w, (r + 1) * hh // h


def entropy_panel(image: torch.Tensor, entropy: np.ndarray, record: dict, vmax: float, steps: int,
                  min_side: int = 256) -> torch.Tensor:
    """One candidate's panel, ``[3, H', W']`` in [0, 1] (boxes: ``panel_layout``). ``image``: the candidate as
    decoded (``[3, H, W]``); ``entropy``: its ``[h, w]`` grid (NaN = not generated)."""
    from PIL import Image, ImageDraw

    scale = max(1, math.ceil(min_side / min(image.shape[-2:])))  # tiny toy images: enlarge, keep pixels sharp
    img = picture(image, entropy, scale)
    size = tuple(img.shape[-2:])
    emap = entropy_image(entropy, size, vmax)
    if record["selected"]:  # framed green, as in candidates.png
        outline(img, (0, 0, size[1], size[0]), max(3, min(size) // 48), CHOSEN_RGB)
    if record["removed_at"] is not None:
        img = mark_removed(img, diagonal=False)
        box = last_cell(entropy, size)
        if box is not None:  # where it stopped, in both pictures
            for target in (img, emap):
                outline(target, box, max(1, min(size) // 128), REMOVED_RGB)
    layout = panel_layout(*size)
    canvas = np.empty((layout.height, layout.width, 3), dtype=np.float32)
    canvas[...] = np.array(BACKGROUND, dtype=np.float32) / 255
    for box, part in ((layout.image, img), (layout.map, emap)):
        left, top, right, bottom = box
        canvas[top:bottom, left:right] = part.permute(1, 2, 0).numpy()
    bl, bt, br, bb = layout.bar
    canvas[bt:bb, bl:br] = colourise(np.linspace(vmax, 0.0, bb - bt)[:, None].repeat(br - bl, 1), vmax)
    pil = Image.fromarray(np.rint(canvas * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    text_font = font(layout.font_size)
    text, text_colour = _title(record, entropy, steps)
    draw.text((4, layout.title[3] // 2), text, fill=text_colour, font=text_font, anchor="lm")
    for value in (0.0, vmax / 2, vmax):  # colour-bar ticks
        y = bb - 1 - (bb - 1 - bt) * value / vmax
        draw.line([(br, y), (br + 3, y)], fill=MUTED)
        draw.text((br + 5, y), f"{value:.2g}", fill=MUTED, font=text_font, anchor="lm")
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)


def entropy_panels(images: torch.Tensor, trace, min_side: int = 256, vmax: float | None = None) -> torch.Tensor:
    """Every candidate's entropy panel, ``[N, 3, H', W']`` (one shared colour scale, 0..``vmax``).

    ``images``: the candidates as decoded, before removed ones were marked (``GenerationResult.decoded``)."""
    grids = entropy_grids(trace)
    vmax = vmax or colour_scale(grids)
    records = sorted(_records(trace), key=lambda r: r["index"])
    steps = grids.shape[1] * grids.shape[2]
    return torch.stack([entropy_panel(images[r["index"]], grids[i], r, vmax, steps, min_side)
                        for i, r in enumerate(records)])
