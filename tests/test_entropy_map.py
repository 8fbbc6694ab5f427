"""The entropy map's pure drawing on a hand-made trace: every cell's colour, the image beside it untouched,
never-generated cells hatched (never confused with confident ones), what a removed candidate shows, the shared
colour scale and the colour bar."""
import numpy as np
import pytest
import torch

from scalingar_core.app import entropy_map as em
from scalingar_core.engine.images import REMOVED_RGB

GRID = 4
SIZE = 8  # decoded image side: 2 pixels per token, enlarged to 64 (16 pixels per token)
MIN_SIDE = 64
CELL = MIN_SIDE // GRID
LAST = 5  # trajectory 1 stopped after 6 tokens


def hand_made():
    entropy0 = [0.5 * i / 15 for i in range(16)]  # 0 .. 0.5 in raster order
    entropy1 = [0.4] * (LAST + 1)
    trace = {"grid": [GRID, GRID], "steps": 16, "trajectories": [
        {"index": 0, "removed_at": None, "removed_reason": None, "selected": True,
         "signals": {"entropy_norm": entropy0}},
        {"index": 1, "removed_at": LAST, "removed_reason": "basin", "selected": False,
         "signals": {"entropy_norm": entropy1}},
    ]}
    images = torch.full((2, 3, SIZE, SIZE), 0.2)
    images[1] = 0.5  # the grey of positions never generated
    images[1, :, :2, :] = 0.9  # first token row generated ...
    images[1, :, 2:4, :4] = 0.9  # ... and two tokens of the second
    return trace, images, entropy0, entropy1


@pytest.fixture(scope="module")
def panels():
    trace, images, _, _ = hand_made()
    return em.entropy_panels(images, trace, min_side=MIN_SIDE)


def cell_centre(layout, r, c, part="image"):
    left, top = getattr(layout, part)[:2]
    return top + r * CELL + CELL // 2, left + c * CELL + CELL // 2


def cell_pixels(panel, layout, r, c, part) -> np.ndarray:
    """Every RGB value inside one token cell (a 2-pixel margin kept clear of outlines), ``[k, 3]``."""
    left, top = getattr(layout, part)[:2]
    y0, x0 = top + r * CELL + 2, left + c * CELL + 2
    return panel[:, y0:y0 + CELL - 4, x0:x0 + CELL - 4].permute(1, 2, 0).reshape(-1, 3).numpy()


def rgb(panel, y, x) -> np.ndarray:
    return panel[:, y, x].numpy()


def test_grids_hold_entropy_in_raster_order_nan_where_not_generated():
    trace, _, entropy0, entropy1 = hand_made()
    grids = em.entropy_grids(trace)
    assert grids.shape == (2, GRID, GRID)
    assert np.allclose(grids[0].reshape(-1), entropy0)
    assert np.allclose(grids[1].reshape(-1)[:LAST + 1], entropy1)
    assert np.isnan(grids[1].reshape(-1)[LAST + 1:]).all()
    assert grids[0][1, 2] == pytest.approx(entropy0[1 * GRID + 2])  # row-major: token 6 is row 1, column 2


def test_shared_scale_is_the_largest_entropy_rounded_up():
    trace, *_ = hand_made()
    assert em.colour_scale(em.entropy_grids(trace)) == pytest.approx(0.5)
    assert em.colour_scale(np.array([[0.031, np.nan]])) == pytest.approx(0.1)  # at least a tenth
    assert em.colour_scale(np.array([[0.93]])) == pytest.approx(1.0)
    assert em.colour_scale(np.full((1, 2), np.nan)) == pytest.approx(1.0)


def test_every_generated_cell_has_its_entropy_colour_beside_the_untouched_image(panels):
    trace, images, entropy0, entropy1 = hand_made()
    layout = em.panel_layout(MIN_SIDE, MIN_SIDE)
    assert panels.shape == (2, 3, layout.height, layout.width)
    assert layout.map[0] >= layout.image[2] and layout.bar[0] >= layout.map[2]  # image | map | bar
    vmax = 0.5
    for k in range(16):
        r, c = divmod(k, GRID)
        expected = em.colourise(np.array(entropy0[k]), vmax)
        assert np.allclose(rgb(panels[0], *cell_centre(layout, r, c, "map")), expected, atol=1 / 255), k
        assert np.allclose(rgb(panels[0], *cell_centre(layout, r, c)), 0.2, atol=1 / 255), k  # colours kept
    # same entropy, same colour in both panels: one scale for all candidates
    expected = em.colourise(np.array(0.4), vmax)
    assert np.allclose(rgb(panels[1], *cell_centre(layout, 0, 2, "map")), expected, atol=1 / 255)
    assert np.allclose(rgb(panels[1], *cell_centre(layout, 0, 2)), 0.9, atol=1 / 255)


def test_never_generated_cells_are_hatched_and_look_like_no_entropy_colour(panels):
    layout = em.panel_layout(MIN_SIDE, MIN_SIDE)
    hatch = np.array(em.HATCH_RGB)
    lut = em._lut()
    for part in ("image", "map"):
        for k in (LAST + 2, 10, 14):
            r, c = divmod(k, GRID)
            pixels = cell_pixels(panels[1], layout, r, c, part)
            # both stripe colours, and nothing else: a pattern, not a flat colour
            assert all(np.abs(pixels - h).max(-1).min() < 1.5 / 255 for h in hatch), (part, k)
            assert (np.abs(pixels[:, None] - hatch[None]).max(-1).min(-1) < 1.5 / 255).all(), (part, k)
    # neither stripe is a colour of the map, so a hatched cell never reads as confident (or as anything)
    for h in hatch:
        assert np.abs(lut - h).max(-1).min() > 0.08
    # a generated cell is flat
    pixels = cell_pixels(panels[1], layout, 0, 0, "map")
    assert np.ptp(pixels, axis=0).max() < 1.5 / 255


def test_a_removed_candidate_keeps_its_red_frame_and_shows_where_it_stopped(panels):
    layout = em.panel_layout(MIN_SIDE, MIN_SIDE)
    left, top = layout.image[:2]
    red = np.array(REMOVED_RGB)
    assert np.allclose(rgb(panels[1], top, left), red, atol=1 / 255)  # frame
    assert np.allclose(rgb(panels[1], top + MIN_SIDE - 1, left + MIN_SIDE // 2), red, atol=1 / 255)
    assert not np.allclose(rgb(panels[0], top, left), red, atol=0.1)  # survivors have no red frame
    # the last token's cell (row 1, column 1) is outlined in red in the image and in the map
    r, c = divmod(LAST, GRID)
    for part in ("image", "map"):
        left, top = getattr(layout, part)[:2]
        assert np.allclose(rgb(panels[1], top + r * CELL, left + c * CELL + CELL // 2), red, atol=1 / 255), part
        assert np.allclose(rgb(panels[1], top + r * CELL + CELL // 2, left + (c + 1) * CELL - 1), red,
                           atol=1 / 255), part
        assert not np.allclose(rgb(panels[1], *cell_centre(layout, r, c, part)), red, atol=0.1)
        # the next cell (not generated) is not outlined
        assert not np.allclose(rgb(panels[1], top + r * CELL, left + (c + 1) * CELL + CELL // 2), red, atol=0.1)


def test_the_chosen_candidate_is_framed_green(panels):
    layout = em.panel_layout(MIN_SIDE, MIN_SIDE)
    left, top = layout.image[:2]
    green = np.array(em.CHOSEN_RGB)
    assert np.allclose(rgb(panels[0], top, left), green, atol=1 / 255)
    assert not np.allclose(rgb(panels[1], top, left), green, atol=0.1)


def test_colour_bar_runs_from_the_scale_top_to_zero(panels):
    layout = em.panel_layout(MIN_SIDE, MIN_SIDE)
    bl, bt, br, bb = layout.bar
    x = (bl + br) // 2
    assert np.allclose(rgb(panels[0], bt, x), em.colourise(np.array(0.5), 0.5), atol=1 / 255)
    assert np.allclose(rgb(panels[0], bb - 1, x), em.colourise(np.array(0.0), 0.5), atol=1 / 255)
    column = panels[0][:, bt:bb, x].numpy()
    brightness = column.sum(0)
    assert brightness[0] > brightness[len(brightness) // 2] > brightness[-1]  # inferno brightens with entropy


def test_title_row_names_the_candidate_in_its_state_colour(panels):
    layout = em.panel_layout(MIN_SIDE, MIN_SIDE)
    _, _, right, bottom = layout.title

    def share_of(panel, colour):
        title = (panel[:, :bottom, :right].permute(1, 2, 0).numpy() * 255)
        return (np.abs(title - np.array(colour)).max(-1) < 30).sum()

    red = tuple(round(255 * v) for v in REMOVED_RGB)
    green = tuple(round(255 * v) for v in em.CHOSEN_RGB)
    assert share_of(panels[0], green) > 20 and share_of(panels[0], red) == 0
    assert share_of(panels[1], red) > 20 and share_of(panels[1], green) == 0
    text, _ = em._title({"index": 1, "removed_at": LAST, "removed_reason": "basin", "selected": False},
                        em.entropy_grids(hand_made()[0])[1], 16)
    assert text == "#1 stopped at 6/16 (basin) · mean 0.40"


def test_generation_keeps_unmarked_candidates_for_the_map():
    from scalingar_core.engine.config import GateConfig, RunConfig, SamplingConfig
    from scalingar_core.engine.loop import generate
    from scalingar_core.testing.reference_model import ReferenceModel

    m = ReferenceModel(grid=(8, 8))
    config = RunConfig(sampling=SamplingConfig(num_trajectories=6, seed=1),
                       gate=GateConfig(warmup_fraction=0.1, protection_fraction=0.1, hard_fail=0.99))
    result = generate(m, m.encode("x"), config)
    removed = [r.index for r in result.trace.trajectories if r.removed_at is not None]
    assert removed
    i = removed[0]
    assert not torch.equal(result.decoded[i], result.images[i])  # the candidates output is marked ...
    survivor = result.selected
    assert torch.equal(result.decoded[survivor], result.images[survivor])  # ... survivors are not
    panels = em.entropy_panels(result.decoded, result.trace)
    assert panels.shape[0] == 6 and panels.shape[-1] > 2 * panels.shape[-2] * 0.9  # image, map and bar side by side
    again = em.entropy_panels(result.decoded, result.trace.to_dict())
    assert torch.equal(panels, again)  # a Trace and its saved JSON draw the same
