"""Spreading a guide's correction after the network (vidcolor.hints)."""

import numpy as np

from vidcolor.config import JobConfig
from vidcolor.hints import spread_hints
from vidcolor.model import Colorizer


def _guide(h: int, w: int, points: list[tuple[int, int, float, float]]) -> np.ndarray:
    g = np.zeros((h, w, 3), np.float32)
    for y, x, a, b in points:
        g[y - 2 : y + 3, x - 2 : x + 3] = (a, b, 1.0)
    return g


def test_no_hint_leaves_the_prediction_untouched() -> None:
    rng = np.random.default_rng(0)
    ab = rng.normal(0, 0.2, (36, 64, 2)).astype(np.float32)
    out = spread_hints(ab, np.zeros((36, 64, 3), np.float32), rng.random((36, 64)).astype(np.float32))
    assert out is ab or np.array_equal(out, ab)


def test_one_point_colours_its_surroundings_not_the_far_side_of_the_frame() -> None:
    ab = np.zeros((72, 128, 2), np.float32)
    luma = np.full((72, 128), 0.5, np.float32)
    out = spread_hints(ab, _guide(72, 128, [(20, 30, 0.4, -0.2)]), luma)
    assert np.allclose(out[20, 30], (0.4, -0.2), atol=0.02)
    near = out[40, 60]  # same flat grey, 36 px away (half the short side)
    assert near[0] > 0.25 and near[1] < -0.12
    far = out[70, 126]  # the opposite corner, 1.5 short sides away
    assert abs(far[0]) < 0.1 * 0.4


def test_the_correction_stops_at_a_strong_edge() -> None:
    ab = np.zeros((72, 128, 2), np.float32)
    luma = np.full((72, 128), 0.2, np.float32)
    luma[:, 64:] = 0.9  # a bright region beside a dark one
    out = spread_hints(ab, _guide(72, 128, [(36, 20, 0.5, 0.3)]), luma)
    dark, bright = out[36, 60], out[36, 70]  # neighbours across the edge
    assert dark[0] > 0.35
    assert abs(bright[0]) < 0.1 * dark[0]


def test_many_points_act_locally() -> None:
    ab = np.zeros((72, 128, 2), np.float32)
    luma = np.full((72, 128), 0.5, np.float32)
    left = [(y, x, 0.4, 0.0) for y in (10, 36, 60) for x in (8, 24, 40)]
    right = [(y, x, -0.4, 0.0) for y in (10, 36, 60) for x in (88, 104, 120)]
    out = spread_hints(ab, _guide(72, 128, left + right), luma)
    assert out[36, 16, 0] > 0.3 and out[36, 112, 0] < -0.3
    assert abs(out[36, 64, 0]) < 0.1  # half way: the two hints cancel


def test_the_shipped_model_spreads_one_hint_over_its_region() -> None:
    """Wired into Colorizer.predict: one blue point on a flat grey frame turns the flat area
    blue far beyond the point, and the darker object in it far less."""
    col = Colorizer.from_file(JobConfig().weights_path)
    grey = np.full((1, 96, 160), 0.6, np.float32)
    grey[0, 40:80, 100:150] = 0.15
    blue = np.array([0.05, -0.45], np.float32)  # a, b / AB_SCALE
    g = _guide(96, 160, [(20, 20, *blue)])[None]
    plain, guided = col.predict(grey, pad_to=1)[0], col.predict(grey, pad_to=1, guide=g)[0]
    far = guided[85, 60] - plain[85, 60]  # same grey, 70 px from the point
    assert far[1] < -0.15
    dark = guided[60, 125] - plain[60, 125]
    assert abs(dark[1]) < 0.5 * abs(far[1])
