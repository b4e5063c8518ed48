"""Colour conversions shared by training and inference.

The model sees exactly what a video carries: the luma plane Y', normalised by its range.
Training builds the same input from RGB (DESIGN decision 3), so both paths go through
`luma_to_model_input`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .video import SourceInfo

AB_SCALE = 110.0  # Lab a/b of sRGB colours stay within about +-110; the model predicts ab / AB_SCALE

# Kr, Kb of the luma matrices a video may declare.
LUMA_COEFFS = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def y_levels(bits: int, full_range: bool) -> tuple[float, float, float]:
    """(black, luma span, chroma span) in code values for a plane of this bit depth and range."""
    scale = float(1 << (bits - 8))
    if full_range:
        return 0.0, 255.0 * scale, 255.0 * scale
    return 16.0 * scale, 219.0 * scale, 224.0 * scale


def normalize_y(y: np.ndarray, bits: int, full_range: bool) -> np.ndarray:
    """Y plane (uint8 or uint16 code values) -> float32 luma in [0, 1]."""
    black, span, _ = y_levels(bits, full_range)
    out = (y.astype(np.float32) - black) * (1.0 / span)
    return np.clip(out, 0.0, 1.0, out=out)


def rgb_to_luma(rgb: np.ndarray, matrix: str = "bt601") -> np.ndarray:
    """R'G'B' float in [0, 1] (HxWx3) -> Y' in [0, 1], as an encoder computes it."""
    kr, kb = LUMA_COEFFS[matrix]
    kg = 1.0 - kr - kb
    return (kr * rgb[..., 0] + kg * rgb[..., 1] + kb * rgb[..., 2]).astype(np.float32)


def quantize_luma(yn: np.ndarray) -> np.ndarray:
    """Round luma through 8-bit limited range the way an encoded video stores it."""
    code = np.round(16.0 + 219.0 * yn)
    return ((code - 16.0) / 219.0).astype(np.float32)


def luma_to_model_input(yn: np.ndarray) -> np.ndarray:
    """Normalised luma [0, 1] -> model input [-1, 1]."""
    return yn * 2.0 - 1.0


def rgb_to_ab(rgb: np.ndarray) -> np.ndarray:
    """R'G'B' float32 [0, 1] HxWx3 -> Lab ab / AB_SCALE, HxWx2 float32 (training target)."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)
    return lab[..., 1:] / AB_SCALE


def grey_lightness(yn: np.ndarray) -> np.ndarray:
    """Lab L of the grey pixel R'=G'=B'=Y'. Lab L is not luma, so it is derived from Y'."""
    lin = np.where(yn <= 0.04045, yn / 12.92, ((yn + 0.055) / 1.055) ** 2.4)
    f = np.where(lin > 216 / 24389, np.cbrt(lin), (24389 / 27 * lin + 16) / 116)
    return (116.0 * f - 16.0).astype(np.float32)


def lab_to_rgb(yn: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Luma [0, 1] HxW and ab / AB_SCALE HxWx2 -> R'G'B' float32 [0, 1]."""
    lab = np.empty((*yn.shape, 3), np.float32)
    lab[..., 0] = grey_lightness(yn)
    lab[..., 1:] = ab * AB_SCALE
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def rgb_to_cbcr(rgb: np.ndarray, matrix: str = "bt601") -> tuple[np.ndarray, np.ndarray]:
    """R'G'B' [0, 1] -> (Cb, Cr) in [-0.5, 0.5]."""
    kr, kb = LUMA_COEFFS[matrix]
    y = rgb_to_luma(rgb, matrix)
    cb = (rgb[..., 2] - y) / (2.0 * (1.0 - kb))
    cr = (rgb[..., 0] - y) / (2.0 * (1.0 - kr))
    return cb.astype(np.float32), cr.astype(np.float32)


def cbcr_to_planes(
    cb: np.ndarray, cr: np.ndarray, size: tuple[int, int], bits: int, full_range: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Cb, Cr at working resolution -> U, V code-value planes of `size` (w, h)."""
    _, _, cspan = y_levels(bits, full_range)
    mid = float(1 << (bits - 1))
    hi = float((1 << bits) - 1)
    dtype = np.uint8 if bits == 8 else np.uint16
    planes = []
    for c in (cb, cr):
        c = cv2.resize(c, size, interpolation=cv2.INTER_AREA if c.shape[1] > size[0] else cv2.INTER_LINEAR)
        planes.append(np.clip(np.round(mid + cspan * c), 0, hi).astype(dtype))
    return planes[0], planes[1]


def ab_to_planes(
    yn_small: np.ndarray,
    ab: np.ndarray,
    size: tuple[int, int],
    bits: int,
    full_range: bool,
    matrix: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ab at working resolution -> U, V planes of the output frame."""
    rgb = lab_to_rgb(yn_small, ab)
    cb, cr = rgb_to_cbcr(rgb, matrix)
    return cbcr_to_planes(cb, cr, size, bits, full_range)


def yuv_to_rgb(yn: np.ndarray, cb: np.ndarray, cr: np.ndarray, matrix: str = "bt601") -> np.ndarray:
    """Luma [0,1] and Cb/Cr [-0.5,0.5] at the same size -> R'G'B' [0, 1] (for metrics)."""
    kr, kb = LUMA_COEFFS[matrix]
    kg = 1.0 - kr - kb
    r = yn + 2.0 * (1.0 - kr) * cr
    b = yn + 2.0 * (1.0 - kb) * cb
    g = (yn - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], axis=-1), 0.0, 1.0).astype(np.float32)


# --- the working resolution ------------------------------------------------------------------


def working_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) of the model input: the short side scaled to `short_side`, aspect kept."""
    s = short_side / min(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def small_grey(y: np.ndarray, size: tuple[int, int], info: SourceInfo) -> np.ndarray:
    """Full-resolution Y plane -> normalised luma [0, 1] at working resolution."""
    interp = cv2.INTER_AREA if size[0] < y.shape[1] else cv2.INTER_LINEAR
    return normalize_y(cv2.resize(y, size, interpolation=interp), info.bits, info.full_range)


def apply_saturation(ab: np.ndarray, saturation: float, guide_conf: np.ndarray | None = None) -> np.ndarray:
    """The `saturation` gain on the model's own colour (HxWx2 ab). Where a guide gives the colour
    (`guide_conf`, HxW in 0..1) the gain fades out: a colour the user chose is not boosted."""
    if saturation == 1.0:
        return ab
    if guide_conf is None:
        return ab * saturation
    return ab * (1.0 + (saturation - 1.0) * (1.0 - guide_conf))[..., None]
