"""Metrics on hand-checkable inputs, the grey film, and `evaluate` end to end on a tiny clip."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidcolor import metrics
from vidcolor.config import JobConfig
from vidcolor.errors import BadInputError
from vidcolor.evaluate import evaluate, make_grey_clip
from vidcolor.metrics import (
    PSNR_CAP,
    cdc,
    channel_histograms,
    chroma_flicker,
    colorfulness,
    js_divergence,
    psnr,
    ssim,
)
from vidcolor.model import GeneratorConfig, UnetGenerator, save_generator
from vidcolor.video import read_plane

RNG = np.random.default_rng(0)


def textured(h: int = 48, w: int = 64, seed: int = 1) -> np.ndarray:
    """A smooth random RGB picture (uint8): texture for optical flow, no flat areas."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.uniform(0, 255, (h // 4, w // 4, 3)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.uint8)


# --- PSNR, SSIM ---------------------------------------------------------------------------


def test_psnr_identical_is_capped() -> None:
    a = textured()
    assert psnr(a, a) == PSNR_CAP == 100.0


def test_psnr_known_noise() -> None:
    a = np.full((40, 40, 3), 100, np.uint8)
    noise = np.where(RNG.random(a.shape) < 0.5, -10, 10)
    b = (a.astype(int) + noise).astype(np.uint8)  # |error| = 10 everywhere: MSE 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)  # 28.13 dB


def test_ssim_identical_and_degraded() -> None:
    a = textured(64, 64)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(a.astype(int) + RNG.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    s = ssim(a, noisy)
    assert 0.0 < s < 0.95
    assert ssim(a, noisy) == pytest.approx(ssim(noisy, a), abs=1e-6)


# --- colourfulness ------------------------------------------------------------------------


def test_colorfulness_grey_is_zero() -> None:
    grey = np.repeat(textured()[..., :1], 3, axis=2)
    assert colorfulness(grey) == pytest.approx(0.0, abs=1e-9)


def test_colorfulness_hand_computed() -> None:
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255  # rg = 255, yb = 127.5, no spread
    assert colorfulness(red) == pytest.approx(0.3 * math.hypot(255, 127.5))  # 85.53
    half = red.copy()
    half[:, 5:] = (0, 0, 255)  # blue: rg = 0, yb = -255
    # rg: mean 127.5, sd 127.5; yb: mean -63.75, sd 191.25
    want = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, 63.75)  # 272.6
    assert colorfulness(half) == pytest.approx(want)


# --- CDC, JS divergence -------------------------------------------------------------------


def test_js_divergence_symmetric_and_bounded() -> None:
    p, q = RNG.random(256), RNG.random(256)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))
    assert js_divergence(p, q) > 0
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    a, b = np.zeros(4), np.zeros(4)
    a[0], b[1] = 1, 1  # disjoint supports: the maximum, ln 2
    assert js_divergence(a, b) == pytest.approx(math.log(2))


def test_cdc_identical_frames_is_zero() -> None:
    h = channel_histograms(textured())
    assert cdc([h] * 6) == pytest.approx(0.0, abs=1e-12)
    assert cdc([h]) is None  # one frame: no pairs


def test_cdc_changing_colour_is_positive() -> None:
    a = textured()
    frames = [a, np.clip(a.astype(int) + np.array([40, 0, -40]), 0, 255).astype(np.uint8)] * 3
    hists = [channel_histograms(f) for f in frames]
    # Alternating frames: only d = 1 sees a change, d = 2 and 4 compare equal frames.
    assert cdc(hists) == pytest.approx(np.mean(js_divergence(hists[0], hists[1])) / 3)
    assert cdc(hists) > 0.005


# --- chroma flicker -----------------------------------------------------------------------


def test_flicker_static_clip_is_zero() -> None:
    rgb = textured()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    assert chroma_flicker([grey] * 5, [rgb] * 5) == pytest.approx(0.0, abs=1e-3)


def test_flicker_injected_chroma_flicker() -> None:
    rgb = textured()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    tinted = np.clip(rgb.astype(int) + np.array([30, -15, -15]), 0, 255).astype(np.uint8)
    value = chroma_flicker([grey] * 6, [rgb, tinted] * 3)  # same luma, colour jumping
    assert value is not None and value > 5.0
    assert chroma_flicker([grey], [rgb]) is None


def test_flicker_follows_motion() -> None:
    """A pan of a steady-coloured picture is not flicker: the flow takes the motion out."""
    big = textured(64, 96)
    frames = [np.ascontiguousarray(big[8:56, 2 * i : 2 * i + 64]) for i in range(5)]
    greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255 for f in frames]
    moving = chroma_flicker(greys, frames)
    unwarped = np.mean([np.abs(metrics.rgb_to_ab(a) - metrics.rgb_to_ab(b)).sum(-1).mean()
                        for a, b in itertools.pairwise(frames)])
    assert moving is not None and moving < 0.25 * unwarped


# --- the grey film and `evaluate` ---------------------------------------------------------


def write_clip(path: Path, frames: list[np.ndarray], codec: str = "libx264", pix_fmt: str = "yuv420p",
               fmt: str | None = None) -> None:
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=Fraction(10))
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if codec == "libx264":
            s.codec_context.options = {"preset": "ultrafast", "crf": "10"}
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def colour_clip(n: int = 6, h: int = 48, w: int = 64) -> list[np.ndarray]:
    big = textured(h + 8, w + 2 * n, seed=3)
    return [np.ascontiguousarray(big[4 : 4 + h, i : i + w]) for i in range(n)]


def test_grey_clip_keeps_luma_exactly(tmp_path: Path) -> None:
    src = tmp_path / "c.mp4"
    write_clip(src, colour_clip(4))
    g = make_grey_clip(src, tmp_path / "g.mkv")
    assert (g.frames, g.width, g.height) == (4, 64, 48)
    with av.open(str(src)) as a, av.open(str(g.path)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0), strict=True):
            assert np.array_equal(read_plane(fa, 0), read_plane(fb, 0))
            assert np.all(read_plane(fb, 1) == 128) and np.all(read_plane(fb, 2) == 128)


def test_grey_clip_odd_size_rgb_source(tmp_path: Path) -> None:
    """An RGB codec (as in old AVIs) at an odd size: luma from RGB, cropped to even."""
    src = tmp_path / "c.avi"
    frames = [textured(25, 33, seed=s) for s in range(3)]
    write_clip(src, frames, codec="rawvideo", pix_fmt="bgr24", fmt="avi")  # AVI stores raw RGB as BGR
    g = make_grey_clip(src, tmp_path / "g.mkv", max_frames=2)
    assert (g.frames, g.width, g.height) == (2, 32, 24)
    with av.open(str(g.path)) as b:
        y = read_plane(next(b.decode(video=0)), 0).astype(float)
    rgb = frames[0][:24, :32].astype(float)
    want = 16 + 219 / 255 * (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    assert np.abs(y - want).max() <= 2.0


def test_grey_clip_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        make_grey_clip(tmp_path / "nope.mp4", tmp_path / "g.mkv")


def test_evaluate_end_to_end(tmp_path: Path) -> None:
    src = tmp_path / "tiny.mp4"
    write_clip(src, colour_clip(6))
    net = UnetGenerator(GeneratorConfig(ngf=4, num_downs=4))
    weights = tmp_path / "g.pt"
    save_generator(net, weights)
    cfg = JobConfig(weights=str(weights), working_size=64, batch_size=4)
    report = tmp_path / "report"

    table = evaluate([src], cfg, report, max_frames=5)

    assert "tiny" in table and "mean of 1" in table
    data = json.loads((report / "report.json").read_text())
    assert {"weights", "config", "clips", "overall"} <= data.keys()
    clip = data["clips"][0]
    assert clip["frames"] == 5 and (clip["width"], clip["height"]) == (64, 48)
    for name in ("grey", "colorized", "no_smoothing"):
        assert set(clip[name]) == {"psnr", "ssim", "colorfulness", "cdc", "flicker"}
        assert 5 < clip[name]["psnr"] < PSNR_CAP
        assert 0 < clip[name]["ssim"] <= 1
    assert set(clip["original"]) == {"colorfulness", "cdc", "flicker"}
    assert clip["grey"]["colorfulness"] < 1.0 < clip["original"]["colorfulness"]
    assert data["overall"]["colorized"]["psnr"] == pytest.approx(clip["colorized"]["psnr"])
    sheet = cv2.imread(str(report / "tiny_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 48 * 2 and sheet.shape[1] >= 3 * 64
    assert "tiny_sheet.png" in (report / "report.md").read_text()
