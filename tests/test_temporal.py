"""Temporal smoothing: neutral on static scenes, removes flicker on motion, resets at cuts."""

from __future__ import annotations

import cv2
import numpy as np

from vidcolor.temporal import TemporalSmoother, backward_warp, flow_to_previous

H, W = 96, 160


def texture(seed: int = 0) -> np.ndarray:
    """A wide grey texture (blobs at several scales) to pan across."""
    rng = np.random.default_rng(seed)
    big = np.zeros((H, W * 3), np.float32)
    for s in (1.5, 4, 10):
        n = rng.random((H, W * 3)).astype(np.float32)
        big += cv2.GaussianBlur(n, (0, 0), s)
    big = (big - big.min()) / (big.max() - big.min())
    return big


def true_ab(grey: np.ndarray) -> np.ndarray:
    """Colour that belongs to the content: a function of the texture itself, so it moves with it."""
    return np.stack([0.4 * (grey - 0.5), 0.3 * np.sin(6 * grey)], -1).astype(np.float32)


def pan(frames: int, speed: int = 2, seed: int = 0) -> list[np.ndarray]:
    big = texture(seed)
    return [np.ascontiguousarray(big[:, i * speed : i * speed + W]) for i in range(frames)]


def flicker_error(greys: list[np.ndarray], abs_: list[np.ndarray]) -> float:
    """Mean |ab(t) - warp(ab(t-1))| with flow from the grey frames, 8 px border excluded."""
    errs = []
    for t in range(1, len(greys)):
        flow = flow_to_previous(greys[t], greys[t - 1])
        warped = backward_warp(abs_[t - 1], flow)
        errs.append(np.abs(abs_[t] - warped)[8:-8, 8:-8].mean())
    return float(np.mean(errs))


def test_static_scene_unchanged_by_smoothing() -> None:
    g = texture()[:, :W].copy()
    ab = true_ab(g)
    sm = TemporalSmoother(strength=0.8)
    for _ in range(6):
        out = sm(g, ab.copy())
        assert np.abs(out - ab).max() < 1e-4


def test_pan_with_flicker_smoothed_without_smearing() -> None:
    greys = pan(20, speed=5)
    truth = [true_ab(g) for g in greys]
    rng = np.random.default_rng(3)
    # The model's typical failure: the whole frame's colour jumps a little from frame to frame.
    noisy = [t + rng.normal(0, 0.04, 2).astype(np.float32) for t in truth]
    sm = TemporalSmoother(strength=0.8)
    smoothed = [sm(g, a.copy()) for g, a in zip(greys, noisy)]
    assert sm.cuts == 0
    f_raw, f_smooth = flicker_error(greys, noisy), flicker_error(greys, smoothed)
    assert f_smooth < 0.6 * f_raw, (f_raw, f_smooth)

    def err(xs: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(x - t)[8:-8, 8:-8].mean() for x, t in zip(xs, truth)]))

    # Following the motion, averaging over time must not smear colour: no more error vs truth.
    assert err(smoothed) <= err(noisy) * 1.02, (err(smoothed), err(noisy))


def test_plain_average_would_smear_on_a_pan() -> None:
    """The reason for flow: without warping (strength applied to the unwarped past) the error
    against the true colour grows on a pan; with warping it does not."""
    greys = pan(12, speed=4)
    truth = [true_ab(g) for g in greys]
    ema, prev = [], None
    for t in truth:
        prev = t if prev is None else 0.2 * t + 0.8 * prev
        ema.append(prev)
    sm = TemporalSmoother(strength=0.8)
    warped = [sm(g, t.copy()) for g, t in zip(greys, truth)]

    def err(xs: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(x - t)[8:-8, 8:-8].mean() for x, t in zip(xs, truth)]))

    assert err(warped) < 0.5 * err(ema)


def test_scene_cut_resets_state() -> None:
    a = pan(5, seed=0)
    b = pan(5, seed=7)
    b = [1.0 - x for x in b]  # a different shot: other texture, inverted brightness
    sm = TemporalSmoother(strength=0.9)
    for g in a:
        sm(g, np.full((H, W, 2), 0.3, np.float32))
    new_ab = np.full((H, W, 2), -0.3, np.float32)
    out = sm(b[0], new_ab.copy())
    assert sm.cuts == 1
    assert np.array_equal(out, new_ab)  # nothing of the old shot's colour leaks across the cut
    out2 = sm(b[1], new_ab.copy())
    assert np.abs(out2 - new_ab).max() < 1e-4


def test_strength_zero_is_identity() -> None:
    greys = pan(4)
    sm = TemporalSmoother(strength=0.0)
    rng = np.random.default_rng(0)
    for g in greys:
        ab = rng.normal(0, 0.1, (H, W, 2)).astype(np.float32)
        assert np.array_equal(sm(g, ab.copy()), ab)
