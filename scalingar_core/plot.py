"""Confidence-trace plot drawn with Pillow only (ComfyUI installs do not all carry matplotlib).

Top panel: C (0..1) per trajectory, the threshold θ dashed, removals as red crosses, the selected trajectory
thicker. Bottom panel: each trajectory's CFG scale. The same picture as the live widget in ComfyUI.
"""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
BACKGROUND, AXIS, THETA, REMOVED = (255, 255, 255), (90, 90, 90), (0, 0, 0), (220, 20, 20)


def colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def _finite(values):
    return [v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def _polyline(draw, points, colour, width):
    """Lines through consecutive finite points; a gap (None) breaks the line."""
    run = []
    for p in points + [None]:
        if p is None:
            if len(run) > 1:
                draw.line(run, fill=colour, width=width)
            elif len(run) == 1:
                x, y = run[0]
                draw.ellipse([x - width, y - width, x + width, y + width], fill=colour)
            run = []
        else:
            run.append(p)


def _dashed(draw, points, colour, width, dash=6):
    for i, (a, b) in enumerate(zip(points, points[1:])):
        if a is not None and b is not None and (i // dash) % 2 == 0:
            draw.line([a, b], fill=colour, width=width)


def plot_summary(summary: dict, width: int = 768, height: int = 512) -> Image.Image:
    """``Trace.summary()`` -> RGB image. Top panel: C (0..1) per trajectory, theta dashed, removals as red
    crosses, the selected trajectory thicker. Bottom panel: CFG scale per trajectory."""
    steps = max(int(summary.get("steps") or 1), 1)
    trajectories = summary.get("trajectories", [])
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    left, right, top, gap = 44, width - 10, 18, 22
    c_bottom = top + int((height - top - gap - 20) * 0.68)
    g_top, g_bottom = c_bottom + gap, height - 20

    def x_of(t):
        return left + (right - left) * t / max(steps - 1, 1)

    cfg_values = _finite(v for tr in trajectories for v in tr.get("cfg", []))
    g_lo, g_hi = (min(cfg_values), max(cfg_values)) if cfg_values else (0.0, 1.0)
    if g_hi - g_lo < 1e-6:
        g_lo, g_hi = g_lo - 0.5, g_hi + 0.5

    def y_c(v):
        return c_bottom - (c_bottom - top) * min(max(v, 0.0), 1.0)

    def y_g(v):
        return g_bottom - (g_bottom - g_top) * (v - g_lo) / (g_hi - g_lo)

    for y0, y1, label, lo, hi in ((top, c_bottom, "C", "0", "1"), (g_top, g_bottom, "CFG", f"{g_lo:.2f}",
                                                                    f"{g_hi:.2f}")):
        draw.rectangle([left, y0, right, y1], outline=AXIS)
        draw.text((4, (y0 + y1) // 2 - 6), label, fill=AXIS)
        draw.text((4, y0), hi, fill=AXIS)
        draw.text((4, y1 - 10), lo, fill=AXIS)
    draw.text((left, height - 16), f"step 0..{steps - 1}   strategy {summary.get('strategy', '?')}   "
                                   f"selected #{summary.get('selected', '?')} (thick)   dashed: threshold   "
                                   f"x: removed", fill=AXIS)

    for tr in trajectories:
        col = colour(tr.get("index", 0))
        w = 3 if tr.get("selected") else 1
        cs = tr.get("C", [])
        _polyline(draw, [(x_of(t), y_c(v)) if v is not None and math.isfinite(v) else None
                         for t, v in enumerate(cs)], col, w)
        _polyline(draw, [(x_of(t), y_g(v)) if v is not None and math.isfinite(v) else None
                         for t, v in enumerate(tr.get("cfg", []))], col, w)
        at = tr.get("removed_at")
        if at is not None and cs:
            last = _finite(cs[: at + 1])
            x, y = x_of(at), y_c(last[-1] if last else 0.0)
            draw.line([x - 5, y - 5, x + 5, y + 5], fill=REMOVED, width=2)
            draw.line([x - 5, y + 5, x + 5, y - 5], fill=REMOVED, width=2)

    theta = summary.get("threshold", [])
    _dashed(draw, [(x_of(t), y_c(v)) if v is not None and math.isfinite(v) else None
                   for t, v in enumerate(theta)], THETA, 2)
    return img


def _summary(trace) -> dict:
    if hasattr(trace, "summary"):
        return trace.summary()
    if "trajectories" in trace and trace["trajectories"] and "state" in trace["trajectories"][0]:
        return {**trace, "trajectories": [
            {**{k: t[k] for k in ("index", "removed_at", "removed_reason", "selected")},
             "C": t["state"]["C"], "cfg": t["state"]["cfg"]} for t in trace["trajectories"]]}
    return trace


def plot_trace(trace, width: int = 768, height: int = 512) -> Image.Image:
    """Render a trace (a Trace, its ``to_dict()`` or its ``summary()``) as an RGB image."""
    return plot_summary(_summary(trace), width, height)
