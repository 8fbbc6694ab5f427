"""Where the model was unsure: each candidate's per-token normalised entropy on its token grid, blended over
its decoded image (the paper's token-entropy picture, v3 Fig. 7).

The trace already holds every trajectory's ``entropy_norm`` per step in raster order, so a map costs one
reshape. One panel per candidate: a title row (index, selected / removed at which step and why, mean
entropy), the image with the entropy colour-mapped over the tokens that were generated (cells never
generated keep the grey of the partial decode; a removed candidate keeps its red frame and has the cell
of its last token outlined), and a colour bar. All candidates share one colour scale so they compare.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.images import REMOVED_RGB, mark_removed

COLORMAP = "inferno"  # dark = confident, bright = unsure
ALPHA = 0.6  # weight of the entropy colour over the image
BACKGROUND, TEXT, MUTED, SELECTED = (27, 29, 34), (201, 206, 216), (138, 144, 156), (245, 213, 140)  # widget theme


@dataclass(frozen=True)
class PanelLayout:
    """Pixel boxes ``(left, top, right, bottom)`` (right/bottom exclusive) of one panel's parts."""

    width: int
    height: int
    title: tuple[int, int, int, int]
    image: tuple[int, int, int, int]
    bar: tuple[int, int, int, int]
    font_size: int


def panel_layout(image_h: int, image_w: int) -> PanelLayout:
    side = min(image_h, image_w)
    font = max(11, round(side / 20))
    pad = max(4, font // 2)
    title_h = round(font * 1.7)
    bar_w = font
    label_w = round(font * 2.6)
    top = title_h
    image = (0, top, image_w, top + image_h)
    bar = (image_w + pad, top + font // 2, image_w + pad + bar_w, top + image_h - font // 2)
    width = bar[2] + pad + label_w
    return PanelLayout(width=width, height=top + image_h, title=(0, 0, width, title_h),
                       image=image, bar=bar, font_size=font)


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


@lru_cache(maxsize=8)
def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)  # bundled with matplotlib


def _title(record: dict, entropy: np.ndarray, steps: int) -> tuple[str, tuple[int, int, int]]:
    mean = f"{np.nanmean(entropy):.2f}" if np.isfinite(entropy).any() else "–"  # – : no entropy recorded
    text = f"#{record['index']}"
    colour = TEXT
    if record["removed_at"] is not None:
        reason = (record["removed_reason"] or "removed").replace("_", " ")
        text += f" stopped at {record['removed_at'] + 1}/{steps} ({reason})"
        colour = tuple(round(255 * c) for c in REMOVED_RGB)
    elif record["selected"]:
        text += " selected"
        colour = SELECTED
    return f"{text} · mean {mean}", colour


def _outline(img: torch.Tensor, box: tuple[int, int, int, int], width: int) -> None:
    """A red rectangle of ``width`` pixels just inside ``box`` (left, top, right, bottom), in place."""
    x0, y0, x1, y1 = box
    red = torch.tensor(REMOVED_RGB, dtype=img.dtype)[:, None, None]
    for ys, xs in ((slice(y0, y0 + width), slice(x0, x1)), (slice(y1 - width, y1), slice(x0, x1)),
                   (slice(y0, y1), slice(x0, x0 + width)), (slice(y0, y1), slice(x1 - width, x1))):
        img[:, ys, xs] = red


def overlay(image: torch.Tensor, entropy: np.ndarray, vmax: float, alpha: float = ALPHA,
            scale: int = 1) -> torch.Tensor:
    """``image`` (``[3, H, W]``) enlarged ``scale`` times (nearest), with the colour of each generated
    token's entropy blended over its cell; cells never generated (NaN) are left as they are."""
    img = F.interpolate(image[None].float().clamp(0, 1), scale_factor=scale, mode="nearest")[0]
    values = F.interpolate(torch.from_numpy(entropy)[None, None], size=img.shape[-2:], mode="nearest")[0, 0].numpy()
    colour = torch.from_numpy(colourise(values, vmax)).permute(2, 0, 1)
    seen = torch.from_numpy(np.isfinite(values))[None].float() * alpha
    return img * (1 - seen) + colour * seen


def mark_stop(img: torch.Tensor, entropy: np.ndarray) -> torch.Tensor:
    """A removed candidate: its red frame, and the cell of its last generated token outlined in red."""
    img = mark_removed(img, diagonal=False)
    (h, w), (hh, ww) = entropy.shape, img.shape[-2:]
    last = int(np.isfinite(entropy).sum()) - 1  # tokens come in raster order
    if last >= 0:
        r, c = divmod(last, w)
        _outline(img, (c * ww // w, r * hh // h, (c + 1) * ww // w, (r + 1) * hh // h), max(1, min(hh, ww) // 128))
    return img


def entropy_panel(image: torch.Tensor, entropy: np.ndarray, record: dict, vmax: float, steps: int,
                  alpha: float = ALPHA, min_side: int = 256) -> torch.Tensor:
    """One candidate's panel, ``[3, H', W']`` in [0, 1] (boxes: ``panel_layout``). ``image``: the candidate as
    decoded (``[3, H, W]``, grey where not generated); ``entropy``: its ``[h, w]`` grid (NaN = not generated)."""
    from PIL import Image, ImageDraw

    scale = max(1, math.ceil(min_side / min(image.shape[-2:])))  # tiny toy images: enlarge, keep pixels sharp
    img = overlay(image, entropy, vmax, alpha, scale)
    if record["removed_at"] is not None:
        img = mark_stop(img, entropy)
    layout = panel_layout(*img.shape[-2:])
    canvas = np.empty((layout.height, layout.width, 3), dtype=np.float32)
    canvas[...] = np.array(BACKGROUND, dtype=np.float32) / 255
    left, top, right, bottom = layout.image
    canvas[top:bottom, left:right] = img.permute(1, 2, 0).numpy()
    bl, bt, br, bb = layout.bar
    canvas[bt:bb, bl:br] = colourise(np.linspace(vmax, 0.0, bb - bt)[:, None].repeat(br - bl, 1), vmax)
    pil = Image.fromarray(np.rint(canvas * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    font = _font(layout.font_size)
    text, text_colour = _title(record, entropy, steps)
    draw.text((4, layout.title[3] // 2), text, fill=text_colour, font=font, anchor="lm")
    for value in (0.0, vmax / 2, vmax):  # colour-bar ticks
        y = bb - 1 - (bb - 1 - bt) * value / vmax
        draw.line([(br, y), (br + 3, y)], fill=MUTED)
        draw.text((br + 5, y), f"{value:.2g}", fill=MUTED, font=font, anchor="lm")
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)


def entropy_panels(images: torch.Tensor, trace, alpha: float = ALPHA, min_side: int = 256,
                   vmax: float | None = None) -> torch.Tensor:
    """Every candidate's entropy panel, ``[N, 3, H', W']`` (one shared colour scale, 0..``vmax``).

    ``images``: the candidates as decoded, before removed ones were marked (``GenerationResult.decoded``)."""
    grids = entropy_grids(trace)
    vmax = vmax or colour_scale(grids)
    records = sorted(_records(trace), key=lambda r: r["index"])
    steps = grids.shape[1] * grids.shape[2]
    return torch.stack([entropy_panel(images[r["index"]], grids[i], r, vmax, steps, alpha, min_side)
                        for i, r in enumerate(records)])
