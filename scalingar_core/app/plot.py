"""The confidence-trace plot as a still image: the live widget's picture (``web/scalingar_plot.js``) drawn
with matplotlib.

Why matplotlib: ticks, a legend, dashed and haloed anti-aliased lines and readable text at any size are
what it does well, and hand-drawing them in Pillow gave an unreadable plot. Only its object-oriented API
is used (a ``Figure`` on the Agg canvas, no pyplot): no GUI backend, no global state, safe in a server.

Same colours and marks as the widget: C per trajectory (selected one thick with a light halo, the others
dimmed), the threshold θ dashed and broken before warm-up, a ring where a trajectory left a low-confidence
basin and a cross for a hard fail, each at the step and C where it left; below, each trajectory's CFG.
Each line ends in its candidate number (``#i``, as in ``candidates.png``), and the legend lists only the
marks that occur.
"""
from __future__ import annotations

import colorsys
import math

from PIL import Image

THEME = {  # the widget's THEME (web/scalingar_plot.js)
    "background": "#1b1d22", "panel": "#23262d", "grid": "#343842", "axis": "#6b7280", "text": "#c9ced8",
    "muted": "#8a909c", "theta": "#f4f4f5", "basin": "#f59e0b", "hard_fail": "#ef4444",
}
HALO = (1.0, 1.0, 1.0, 0.85)
THETA_DASH = (5, 4)  # pixels on, off
BASE_SIZE = (768, 512)  # sizes below are in pixels at this image size and scale with it


def colour(index: int) -> tuple[int, int, int]:
    """The widget's ``colorForIndex``: golden-angle hue steps, so neighbouring indices stay far apart."""
    i = index if isinstance(index, int) and index >= 0 else 0
    hue = round((210 + i * 137.508) % 360)
    light = 0.62 if i % 2 == 0 else 0.55
    r, g, b = colorsys.hls_to_rgb(hue / 360, light, 0.75)
    return round(r * 255), round(g * 255), round(b * 255)


def _rgb(c) -> tuple[float, float, float]:
    return tuple(v / 255 for v in c)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _values(points) -> list[float]:
    """None / NaN -> NaN, which breaks a matplotlib line (θ before warm-up)."""
    return [float(v) if _finite(v) else math.nan for v in points or []]


def padded_extent(values, pad: float = 0.08, min_span: float = 0.05, fallback=(0.0, 1.0)) -> tuple[float, float]:
    """The widget's ``paddedExtent``: [lo, hi] over finite values, padded so lines never sit on the frame."""
    finite = [v for v in values if _finite(v)]
    if not finite:
        return fallback
    lo, hi = min(finite), max(finite)
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    p = (hi - lo) * pad
    return lo - p, hi + p


def value_at_or_before(values, step: int):
    """C where a trajectory left: at its removal step, or the last value before it."""
    for t in range(min(step, len(values) - 1), -1, -1):
        if _finite(values[t]):
            return values[t]
    return None


def draw_summary(summary: dict, width: int = 768, height: int = 512):
    """``Trace.summary()`` -> a matplotlib ``Figure`` of ``width`` x ``height`` pixels, already drawn.

    ``fig.axes[0]`` is the C panel, ``fig.axes[1]`` the CFG panel (``data_to_pixel`` reads their transforms)."""
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    dpi = 100
    px = min(width / BASE_SIZE[0], height / BASE_SIZE[1])  # one widget pixel at this size
    pt = 72 / dpi * max(px, 0.5)  # ... in points, for line widths and marker sizes
    font = max(6.0, 9.5 * px)
    # Constrained layout sizes the margins to the labels, so small images keep their axis labels.
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=THEME["background"], layout="constrained")
    fig.get_layout_engine().set(w_pad=6 * px / dpi, h_pad=6 * px / dpi, hspace=0.02)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=(0.72, 0.28))
    ax_c = fig.add_subplot(grid[0])
    ax_g = fig.add_subplot(grid[1], sharex=ax_c)

    trajectories = sorted((t for t in summary.get("trajectories", []) if isinstance(t, dict)),
                          key=lambda t: t.get("index", 0))
    steps = int(summary.get("steps") or 0)
    longest = max([len(t.get("C") or []) for t in trajectories] + [len(summary.get("threshold") or [])] + [0])
    x_max = max(1, steps - 1, longest - 1)
    theta = _values(summary.get("threshold"))
    c_lo, c_hi = padded_extent([v for t in trajectories for v in _values(t.get("C"))] + theta, min_span=0.05)
    g_lo, g_hi = padded_extent([v for t in trajectories for v in _values(t.get("cfg"))], min_span=0.5)

    for ax, (lo, hi), label in ((ax_c, (c_lo, c_hi), "C"), (ax_g, (g_lo, g_hi), "CFG")):
        ax.set_facecolor(THEME["panel"])
        ax.set_xlim(0, x_max * 1.06)  # room for the candidate numbers at the line ends
        ax.set_ylim(lo, hi)
        ax.grid(True, axis="y", color=THEME["grid"], linewidth=1 * pt)
        ax.set_axisbelow(True)
        for spine in ax.spines.values():
            spine.set_color(THEME["axis"])
        ax.tick_params(colors=THEME["muted"], labelsize=font, length=3 * px, width=1 * pt)
        ax.locator_params(axis="y", nbins=4 if ax is ax_c else 3)
        ax.set_ylabel(label, color=THEME["text"], fontsize=font)
    ax_c.tick_params(labelbottom=False)
    ax_g.set_xlabel("step", color=THEME["text"], fontsize=font, labelpad=2)

    selected = next((t for t in trajectories if t.get("selected")), None)
    if selected is None and isinstance(summary.get("selected"), int):
        selected = next((t for t in trajectories if t.get("index") == summary["selected"]), None)
    halo = [patheffects.Stroke(linewidth=5.5 * pt, foreground=HALO), patheffects.Normal()]
    for t in sorted(trajectories, key=lambda t: t is selected):  # the selected one on top
        col = _rgb(colour(t.get("index", 0)))
        is_sel = t is selected
        alpha = 1.0 if is_sel or selected is None else 0.55
        c_values, g_values = _values(t.get("C")), _values(t.get("cfg"))
        ax_c.plot(range(len(c_values)), c_values, color=col, alpha=alpha, solid_capstyle="round",
                  linewidth=(3 if is_sel else 1.5) * pt, path_effects=halo if is_sel else None, zorder=3)
        ax_g.plot(range(len(g_values)), g_values, color=col, alpha=alpha, linewidth=(2.2 if is_sel else 1.2) * pt,
                  zorder=3)

    dash = (THETA_DASH[0] / 1.5, THETA_DASH[1] / 1.5)  # dash lengths are in line widths
    ax_c.plot(range(len(theta)), theta, color=THEME["theta"], linewidth=1.5 * pt, linestyle=(0, dash), zorder=4)

    marks = {"basin": dict(marker="o", markerfacecolor="none", markeredgecolor=THEME["basin"]),
             "hard_fail": dict(marker="x", markeredgecolor=THEME["hard_fail"])}
    other = dict(marker="o", markerfacecolor="none", markeredgecolor=THEME["muted"])
    for t in trajectories:
        at = t.get("removed_at")
        if not isinstance(at, int):
            continue
        y = value_at_or_before(_values(t.get("C")), at)
        if y is not None:
            ax_c.plot([at], [y], linestyle="none", markersize=9 * pt, markeredgewidth=2 * pt, zorder=5,
                      **marks.get(t.get("removed_reason"), other))

    # The legend names only what this plot shows; each line is labelled with its candidate number at its end.
    handles = []
    if any(_finite(v) for v in theta):
        handles.append(Line2D([], [], color=THEME["theta"], linewidth=1.5 * pt, linestyle=(0, dash), label="θ"))
    reasons = {t.get("removed_reason") for t in trajectories if isinstance(t.get("removed_at"), int)}
    for reason, label in (("basin", "basin"), ("hard_fail", "hard fail")):
        if reason in reasons:
            handles.append(Line2D([], [], linestyle="none", markersize=8 * pt, markeredgewidth=2 * pt, label=label,
                                  **marks[reason]))
    if reasons - set(marks):
        handles.append(Line2D([], [], linestyle="none", markersize=8 * pt, markeredgewidth=2 * pt, label="removed",
                              **other))
    if selected is not None:
        handles.append(Line2D([], [], color=_rgb(colour(selected.get("index", 0))), linewidth=3 * pt,
                              path_effects=halo, label=f"chosen #{selected.get('index')}"))
    for t in trajectories:  # at the removal mark, or where the line ends
        c_values = _values(t.get("C"))
        at = t["removed_at"] if isinstance(t.get("removed_at"), int) else len(c_values) - 1
        y = value_at_or_before(c_values, at)
        if y is not None:
            ax_c.annotate(f"#{t.get('index', 0)}", (at, y), xytext=(8 * px, 0), textcoords="offset pixels",
                          color=_rgb(colour(t.get("index", 0))), fontsize=font * 0.85, va="center", zorder=6,
                          fontweight="bold" if t is selected else "normal", annotation_clip=False)
    if handles:
        ax_c.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(handles),
                    frameon=False, fontsize=font, labelcolor=THEME["text"], borderaxespad=0.2, handlelength=2.2,
                    columnspacing=1.2)
    title = f"C · {summary['strategy']}" if summary.get("strategy") else "C"
    ax_c.set_title(title, loc="left", color=THEME["text"], fontsize=font * 1.1, pad=4 * px)
    if not any(_finite(v) for t in trajectories for v in t.get("C") or []):
        ax_c.text(0.5, 0.5, "no confidence recorded", transform=ax_c.transAxes, ha="center", va="center",
                  color=THEME["muted"], fontsize=font)
    fig.canvas.draw()
    return fig


def figure_to_image(fig) -> Image.Image:
    """The drawn figure as an RGB image of exactly its pixel size."""
    canvas = fig.canvas
    canvas.draw()
    w, h = canvas.get_width_height()
    return Image.frombuffer("RGBA", (w, h), bytes(canvas.buffer_rgba()), "raw", "RGBA", 0, 1).convert("RGB")


def data_to_pixel(ax, step: float, value: float) -> tuple[float, float]:
    """Where (step, value) of panel ``ax`` lands in the image (x right, y down, origin top-left)."""
    x, y = ax.transData.transform((step, value))
    return float(x), float(ax.figure.bbox.height - y)


def plot_summary(summary: dict, width: int = 768, height: int = 512) -> Image.Image:
    """``Trace.summary()`` -> RGB image: C per trajectory, θ, removals, the selected one, CFG below."""
    return figure_to_image(draw_summary(summary, width, height))


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
