"""Colorization quality measures: PSNR, SSIM, colourfulness, CDC, chroma flicker. Pure
functions of arrays; `evaluate.py` runs `vidcolor eval` with them.

Definitions (all on 8-bit RGB as a player decodes it, `to_ndarray("rgb24")`, full resolution):

- PSNR: per frame, 10 log10(255^2 / MSE over all pixels and channels), then the mean over
  frames. Identical frames have infinite PSNR; it is capped at PSNR_CAP (100 dB) so numbers
  and JSON stay finite.
- SSIM: Wang et al. 2004, 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, L 255, on each
  RGB channel, the map averaged over channels and over the valid (non-border) area; frame mean.
- Colourfulness: Hasler & Suesstrunk 2003, M = sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 +
  mu_yb^2), rg = R - G, yb = (R + G) / 2 - B; frame mean. 0 for grey.
- CDC (colour distribution consistency, TCVC, Liu et al.): Jensen-Shannon divergence (natural
  log) of the per-channel 256-bin RGB histograms of frames t and t + d, averaged over t and the
  channels, then over d in {1, 2, 4}. Lower is steadier; compare with the original's own CDC.
- Chroma flicker: mean Euclidean |ab(t) - ab(t-1) warped to t| in Lab ab units over the pixels
  the motion explains. Flow is DIS (fast preset) on the ORIGINAL video's luma; a pixel is
  masked when the warped previous luma misses by more than OCCLUSION_TOL or forward and
  backward flow disagree (Sundaram et al. 2010). The original's own value is the floor that
  real motion, lighting and the flow's errors leave.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .temporal import backward_warp, flow_to_previous

PSNR_CAP = 100.0  # dB, for identical frames
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
CDC_STEPS = (1, 2, 4)
OCCLUSION_TOL = 0.05  # luma (0..1) error of the warped previous frame above which a pixel is occluded



# --- metrics on frames --------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images; identical images give PSNR_CAP."""
    d = a.astype(np.float32) - b.astype(np.float32)
    mse = float(np.mean(d * d, dtype=np.float64))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 images (HxW or HxWx3, channels averaged), Gaussian 11x11 window."""
    x = a.astype(np.float32)
    y = b.astype(np.float32)

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    mxx, myy, mxy = mx * mx, my * my, mx * my
    sxx = blur(x * x) - mxx
    syy = blur(y * y) - myy
    sxy = blur(x * y) - mxy
    smap = ((2 * mxy + SSIM_C1) * (2 * sxy + SSIM_C2)) / ((mxx + myy + SSIM_C1) * (sxx + syy + SSIM_C2))
    r = SSIM_WINDOW // 2  # the border where the window leaves the image, as in the reference code
    if smap.shape[0] > 2 * r and smap.shape[1] > 2 * r:
        smap = smap[r:-r, r:-r]
    return float(np.mean(smap, dtype=np.float64))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of an RGB image (uint8 scale)."""
    f = rgb.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    sd = math.hypot(float(rg.std(dtype=np.float64)), float(yb.std(dtype=np.float64)))
    mu = math.hypot(float(rg.mean(dtype=np.float64)), float(yb.mean(dtype=np.float64)))
    return sd + 0.3 * mu


def channel_histograms(rgb: np.ndarray) -> np.ndarray:
    """(3, 256) float64: each channel's 256-bin histogram as a probability distribution."""
    img = np.ascontiguousarray(rgb)
    h = np.stack([cv2.calcHist([img], [c], None, [256], [0, 256]).reshape(-1) for c in range(3)]).astype(np.float64)
    return h / np.maximum(h.sum(axis=-1, keepdims=True), 1.0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Jensen-Shannon divergence (natural log, 0..ln 2) along the last axis of two distributions."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log(a / m), 0.0)
        return t.sum(axis=-1)

    js = np.maximum(0.5 * kl(p) + 0.5 * kl(q), 0.0)
    return float(js) if js.ndim == 0 else js


def cdc(hists: Sequence[np.ndarray] | np.ndarray, steps: Sequence[int] = CDC_STEPS) -> float | None:
    """CDC of a clip from its per-frame channel histograms (N, 3, 256); None under 2 frames."""
    h = np.asarray(hists, np.float64)
    per_step = [float(np.mean(js_divergence(h[:-d], h[d:]))) for d in steps if len(h) > d]
    return float(np.mean(per_step)) if per_step else None


def rgb_to_ab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> Lab a, b (HxWx2 float32, Lab units)."""
    lab = cv2.cvtColor(rgb.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)
    return np.ascontiguousarray(lab[..., 1:])


def motion_mask(grey: np.ndarray, prev_grey: np.ndarray, dis: cv2.DISOpticalFlow) -> tuple[np.ndarray, np.ndarray]:
    """(flow from `grey` into `prev_grey`, mask of the pixels that flow explains). Luma in [0, 1]."""
    back = flow_to_previous(grey, prev_grey, dis)
    fwd = flow_to_previous(prev_grey, grey, dis)
    fwd_at = backward_warp(fwd, back)  # forward flow where each pixel lands in the previous frame
    s = back + fwd_at
    inconsistent = (s * s).sum(-1) > 0.01 * ((back * back).sum(-1) + (fwd_at * fwd_at).sum(-1)) + 0.5
    occluded = np.abs(grey - backward_warp(prev_grey, back)) > OCCLUSION_TOL
    return back, ~(inconsistent | occluded)


@dataclass
class FlickerMeter:
    """Chroma flicker of several versions of one clip, all warped with the same flow and mask."""

    prev_grey: np.ndarray | None = None
    prev_ab: dict[str, np.ndarray] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    pixels: int = 0
    _dis: cv2.DISOpticalFlow = field(
        default_factory=lambda: cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST), repr=False)

    def update(self, grey: np.ndarray, abs_: dict[str, np.ndarray]) -> None:
        """grey: the original's luma (HxW float [0, 1]); abs_: name -> Lab ab (HxWx2)."""
        if self.prev_grey is not None and self.prev_grey.shape == grey.shape:
            flow, valid = motion_mask(grey, self.prev_grey, self._dis)
            n = int(valid.sum())
            self.pixels += n
            for name, ab in abs_.items():
                if n:
                    d = ab - backward_warp(self.prev_ab[name], flow)
                    err = np.sqrt((d * d).sum(-1))
                    self.sums[name] = self.sums.get(name, 0.0) + float(err[valid].sum(dtype=np.float64))
                else:
                    self.sums.setdefault(name, 0.0)
        self.prev_grey = grey
        self.prev_ab = dict(abs_)

    def result(self, name: str) -> float | None:
        return self.sums.get(name, 0.0) / self.pixels if self.pixels else None


def chroma_flicker(greys: Sequence[np.ndarray], rgbs: Sequence[np.ndarray]) -> float | None:
    """Flicker of one RGB clip (uint8 frames) given the luma ([0, 1]) the flow is computed on."""
    meter = FlickerMeter()
    for g, rgb in zip(greys, rgbs, strict=True):
        meter.update(g, {"v": rgb_to_ab(rgb)})
    return meter.result("v")
