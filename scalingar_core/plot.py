"""A confidence-trace plot drawn with Pillow only (ComfyUI installs do not all carry matplotlib).

Top panel: C per trajectory over the decoding steps, the threshold θ (dashed), removal points (× basin,
■ hard fail) and the selected trajectory drawn thick. Bottom panel: each trajectory's CFG scale.
"""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def _summary(trace) -> dict:
    if hasattr(trace, "summary"):
        return trace.summary()
    if "trajectories" in trace and trace["trajectories"] and "state" in trace["trajectories"][0]:
        return {**trace, "trajectories": [
            {**{k: t[k] for k in ("index", "removed_at", "removed_reason", "selected")},
             "C": t["state"]["C"], "cfg": t["state"]["cfg"]} for t in trace["trajectories"]]}
    return trace


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _range(values: list[float], pad: float = 0.05) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    return lo - pad * span, hi + pad * span


def plot_trace(trace, width: int = 768, height: int = 480) -> Image.Image:
    """Render a trace (Trace, its ``to_dict()`` or its ``summary()``) as an RGB image."""
    s = _summary(trace)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top = 48, width - 12, 22
    split = int(height * 0.72)
    c_box = (left, top, right, split - 18)
    g_box = (left, split + 4, right, height - 20)
    steps = max(1, int(s.get("steps") or 1))
    trajs = s.get("trajectories", [])
    c_lo, c_hi = _range(_finite([v for t in trajs for v in t["C"]] + _finite(s.get("threshold") or [])))
    g_lo, g_hi = _range(_finite([v for t in trajs for v in t.get("cfg") or []]))

    def xy(box, lo, hi, step, value):
        x0, y0, x1, y1 = box
        x = x0 + (x1 - x0) * step / max(1, steps - 1)
        y = y1 - (y1 - y0) * (value - lo) / (hi - lo)
        return x, y

    for box, lo, hi, label in ((c_box, c_lo, c_hi, "C"), (g_box, g_lo, g_hi, "CFG")):
        d.rectangle(box, outline=(160, 160, 160))
        d.text((4, box[1]), f"{hi:.2f}", fill=(90, 90, 90))
        d.text((4, box[3] - 10), f"{lo:.2f}", fill=(90, 90, 90))
        d.text((4, (box[1] + box[3]) // 2 - 5), label, fill=(0, 0, 0))
    title = f"{s.get('strategy', '')}  N={s.get('num_trajectories', len(trajs))}  T={steps}"
    if s.get("tokens_generated") is not None:
        title += f"  tokens={s['tokens_generated']}"
    d.text((left, 4), title, fill=(0, 0, 0))
    d.text((right - 60, height - 14), "step", fill=(90, 90, 90))

    # θ: dashed, skipping the warm-up steps where it is undefined
    theta = s.get("threshold") or []
    pts = [(t, v) for t, v in enumerate(theta) if v is not None and math.isfinite(v)]
    for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
        if t1 == t0 + 1 and t0 % 4 < 2:
            d.line([xy(c_box, c_lo, c_hi, t0, v0), xy(c_box, c_lo, c_hi, t1, v1)], fill=(0, 0, 0), width=2)

    ordered = sorted(trajs, key=lambda t: t.get("selected", False))  # selected drawn last, on top
    for t in ordered:
        col = colour(t["index"])
        wide = 3 if t.get("selected") else 1
        for box, lo, hi, key in ((c_box, c_lo, c_hi, "C"), (g_box, g_lo, g_hi, "cfg")):
            series = [(k, v) for k, v in enumerate(t.get(key) or []) if v is not None and math.isfinite(v)]
            if len(series) > 1:
                d.line([xy(box, lo, hi, k, v) for k, v in series], fill=col, width=wide)
        if t.get("removed_at") is not None and t["C"]:
            k = min(t["removed_at"], len(t["C"]) - 1)
            x, y = xy(c_box, c_lo, c_hi, k, t["C"][k])
            if t.get("removed_reason") == "hard_fail":
                d.rectangle((x - 4, y - 4, x + 4, y + 4), fill=col, outline=(0, 0, 0))
            else:
                d.line((x - 5, y - 5, x + 5, y + 5), fill=(0, 0, 0), width=2)
                d.line((x - 5, y + 5, x + 5, y - 5), fill=(0, 0, 0), width=2)
    # legend
    x = left + 330
    for t in trajs[:10]:
        tag = "*" if t.get("selected") else ("x" if t.get("removed_at") is not None else "")
        d.text((x, 4), f"{t['index']}{tag}", fill=colour(t["index"]))
        x += 24
    return img
