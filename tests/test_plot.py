"""The static trace plot: marks land where the data says, in the widget's colours, on a hand-made trace."""
import math

import numpy as np
import pytest

from scalingar_core.app import plot

STEPS = 40
THETA = 0.6


def hand_made_summary() -> dict:
    """#0 selected, flat C 0.8, CFG 2.0; #1 left a basin at step 20 (C 0.5); #2 hard fail at step 10 (C 0.3);
    θ undefined for the first 8 steps (warm-up), then 0.6."""
    return {
        "steps": STEPS, "num_trajectories": 3, "strategy": "scalingar", "selected": 0,
        "threshold": [None] * 8 + [THETA] * (STEPS - 8),
        "trajectories": [
            {"index": 0, "removed_at": None, "removed_reason": None, "selected": True,
             "C": [0.8] * STEPS, "cfg": [2.0] * STEPS},
            {"index": 1, "removed_at": 20, "removed_reason": "basin", "selected": False,
             "C": [0.5] * 21, "cfg": [1.5] * 21},
            {"index": 2, "removed_at": 10, "removed_reason": "hard_fail", "selected": False,
             "C": [0.3] * 10 + [float("nan")], "cfg": [1.0] * 11},
        ],
    }


def hex_rgb(h: str) -> np.ndarray:
    return np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


PANEL = hex_rgb(plot.THEME["panel"])


def dimmed(rgb, alpha=0.55) -> np.ndarray:
    return alpha * np.asarray(rgb, dtype=float) + (1 - alpha) * PANEL


@pytest.fixture(scope="module")
def drawn():
    fig = plot.draw_summary(hand_made_summary(), 768, 512)
    return fig, np.asarray(plot.figure_to_image(fig), dtype=float)


def near(image, xy, rgb, radius=1, tol=40) -> bool:
    """Some pixel within ``radius`` of ``xy`` has colour ``rgb`` (anti-aliasing blurs line edges)."""
    x, y = round(xy[0]), round(xy[1])
    patch = image[y - radius:y + radius + 1, x - radius:x + radius + 1]
    return bool((np.abs(patch - rgb).max(-1) < tol).any())


def mask(image, rgb, tol=40) -> np.ndarray:
    return np.abs(image - rgb).max(-1) < tol


def test_colour_is_the_widgets_colour_for_index():
    # JS colorForIndex(0) = hsl(210, 75%, 62%), (1) = hsl(348, 75%, 55%), converted by hand (CSS HSL -> RGB)
    assert plot.colour(0) == (85, 158, 231)
    assert plot.colour(1) == (226, 54, 89)  # (0.8875, 0.2125, 0.3475) x 255, rounded
    assert len({plot.colour(i) for i in range(16)}) == 16


def test_image_size_axes_and_legend(drawn):
    fig, image = drawn
    assert image.shape == (512, 768, 3)
    ax_c, ax_g = fig.axes[:2]
    assert [t.get_text() for t in ax_c.get_legend().get_texts()] == ["θ", "basin", "hard fail", "chosen #0"]
    assert ax_g.get_xlabel() == "step" and ax_c.get_ylabel() == "C" and ax_g.get_ylabel() == "CFG"
    assert ax_c.get_title(loc="left") == "C · scalingar"
    assert len([t for t in ax_c.get_yticklabels() if t.get_text()]) >= 3  # ticks with labels
    assert ax_c.get_xlim() == (0, pytest.approx((STEPS - 1) * 1.06))  # room for the numbers at line ends
    lo, hi = ax_c.get_ylim()
    assert lo < 0.3 and hi > 0.8  # every C and θ inside the panel, padded


def test_lines_land_at_their_data_pixels(drawn):
    fig, image = drawn
    ax_c, ax_g = fig.axes[:2]
    for step in (2, 15, 30, 39):
        assert near(image, plot.data_to_pixel(ax_c, step, 0.8), plot.colour(0))  # the selected line, full colour
        assert near(image, plot.data_to_pixel(ax_g, step, 2.0), plot.colour(0))
    for step in (2, 15):
        assert near(image, plot.data_to_pixel(ax_c, step, 0.5), dimmed(plot.colour(1)))  # others dimmed
        assert near(image, plot.data_to_pixel(ax_g, step, 1.5), dimmed(plot.colour(1)))
    # nothing of #1 after it left, and nothing where no line is
    assert not near(image, plot.data_to_pixel(ax_c, 30, 0.5), dimmed(plot.colour(1)), radius=2)
    assert not near(image, plot.data_to_pixel(ax_c, 30, 0.65), plot.colour(0), radius=2)


def test_selected_line_is_thick_with_a_halo_and_the_others_thin(drawn):
    fig, image = drawn
    ax_c = fig.axes[0]
    x, y = (round(v) for v in plot.data_to_pixel(ax_c, 30, 0.8))
    column = image[y - 8:y + 9, x]
    assert mask(column[None], plot.colour(0), tol=30).sum() >= 3
    assert (column.min(-1) > 215).sum() >= 1  # the light halo above or below the line
    x, y = (round(v) for v in plot.data_to_pixel(ax_c, 5, 0.5))
    assert mask(image[y - 8:y + 9, x][None], dimmed(plot.colour(1)), tol=30).sum() <= 2


def test_theta_is_dashed_and_starts_after_warm_up(drawn):
    fig, image = drawn
    ax_c = fig.axes[0]
    theta = hex_rgb(plot.THEME["theta"])
    x0 = round(plot.data_to_pixel(ax_c, 0, THETA)[0])
    x8 = round(plot.data_to_pixel(ax_c, 8, THETA)[0])
    x_end = round(plot.data_to_pixel(ax_c, STEPS - 1, THETA)[0])
    y = round(plot.data_to_pixel(ax_c, 0, THETA)[1])
    row = mask(image[y - 1:y + 2, :], theta, tol=60).any(0)
    assert not row[x0 + 2:x8 - 2].any()  # warm-up: no threshold yet
    on = row[x8 + 2:x_end - 2].mean()
    assert 0.35 < on < 0.85, on  # dashed: on and off along the line
    assert row[x8 + 2:x_end - 2].sum() > 100


def test_removal_marks_at_the_step_and_value_where_each_trajectory_left(drawn):
    fig, image = drawn
    ax_c = fig.axes[0]
    top = round(ax_c.bbox.height and fig.bbox.height - ax_c.bbox.y1)  # below the legend row
    image = image.copy()
    for label in ax_c.texts:  # the candidate numbers beside the marks are drawn in the lines' colours
        box = label.get_window_extent()
        image[round(fig.bbox.height - box.y1):round(fig.bbox.height - box.y0) + 1, round(box.x0):round(box.x1) + 1] = 0
    for reason, step, value in (("basin", 20, 0.5), ("hard_fail", 10, 0.3)):
        colour = hex_rgb(plot.THEME[reason])
        px, py = plot.data_to_pixel(ax_c, step, value)
        ys, xs = np.nonzero(mask(image[top:], colour, tol=50))
        ys = ys + top
        assert len(ys) > 10, reason
        distance = np.hypot(xs - px, ys - py)
        assert distance.max() < 10, (reason, distance.max())  # every pixel of that mark is around the point
    # the cross is centred on the point, the ring is hollow
    assert near(image, plot.data_to_pixel(ax_c, 10, 0.3), hex_rgb(plot.THEME["hard_fail"]), radius=0, tol=60)
    px, py = plot.data_to_pixel(ax_c, 20, 0.5)
    assert not mask(image[round(py) - 1:round(py) + 2, round(px) - 1:round(px) + 2],
                    hex_rgb(plot.THEME["basin"]), tol=50).any()


def test_value_at_or_before_skips_missing_values():
    assert plot.value_at_or_before([0.1, 0.2, math.nan, None], 3) == 0.2
    assert plot.value_at_or_before([0.1, 0.2], 10) == 0.2
    assert plot.value_at_or_before([math.nan], 0) is None


def test_same_summary_same_pixels_and_every_input_form(drawn):
    from scalingar_core.engine.config import RunConfig, SamplingConfig
    from scalingar_core.engine.loop import generate
    from scalingar_core.testing.reference_model import ReferenceModel

    m = ReferenceModel(grid=(4, 4))
    trace = generate(m, m.encode("x"), RunConfig(sampling=SamplingConfig(num_trajectories=3))).trace
    a = np.asarray(plot.plot_trace(trace, 400, 300))
    assert a.shape == (300, 400, 3)
    assert np.array_equal(a, np.asarray(plot.plot_trace(trace.to_dict(), 400, 300)))
    assert np.array_equal(a, np.asarray(plot.plot_trace(trace.summary(), 400, 300)))
    assert not np.array_equal(a, np.asarray(plot.plot_summary(hand_made_summary(), 400, 300)))


def test_small_image_keeps_its_labels_inside():
    fig = plot.draw_summary(hand_made_summary(), 320, 220)
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        box = ax.yaxis.label.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= 320 and box.y1 <= 220
    box = fig.axes[1].xaxis.label.get_window_extent(renderer)
    assert box.y0 >= 0


def test_legend_lists_only_the_marks_that_occur():
    summary = hand_made_summary()
    summary["trajectories"] = summary["trajectories"][:2]  # no hard fail
    fig = plot.draw_summary(summary, 768, 512)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["θ", "basin", "chosen #0"]
    summary["trajectories"] = summary["trajectories"][:1]
    summary["threshold"] = [None] * STEPS  # plain sampling: no θ, nobody removed
    fig = plot.draw_summary(summary, 768, 512)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["chosen #0"]


def test_each_line_ends_in_its_candidate_number_in_its_colour_at_its_removal_mark(drawn):
    fig, _ = drawn
    labels = {t.get_text(): t for t in fig.axes[0].texts if t.get_text().startswith("#")}
    assert sorted(labels) == ["#0", "#1", "#2"]
    assert labels["#1"].xy == (20, 0.5) and labels["#2"].xy == (10, 0.3)  # beside each removal mark
    assert labels["#0"].xy == (STEPS - 1, 0.8)
    for name, t in labels.items():
        assert tuple(round(255 * v) for v in t.get_color()[:3]) == plot.colour(int(name[1:]))
