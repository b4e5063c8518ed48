"""Temporal smoothing of predicted ab, following motion, reset at scene cuts.

Plain averaging over time smears colour across moving edges, so the previous smoothed ab is
warped to the current frame with optical flow (OpenCV DIS on the small grey frames), blended,
and gated per pixel by how well the warped previous luma matches the current luma (occlusions
and new content take the new prediction). Cuts are detected on luma alone: grey footage gives
colour-based detectors nothing to see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

OCCLUSION_TOL = 0.08  # luma error (0..1) at which the warped past stops counting


def new_flow() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


LAYOUT_SIZE = (16, 9)  # thumbnail on which a cut shows as a change of the picture's layout
LAYOUT_SHARE = 0.2  # layout change (mean |delta| of the mean-free thumbnails) that is a cut, x threshold


def layout_change(grey: np.ndarray, prev_grey: np.ndarray) -> float:
    """How much the coarse layout of the picture changed, brightness flicker removed. Motion
    (even a cartoon's jumpy animation) moves details; a cut moves the big shapes. Measured on
    Steamboat Willie: its three cuts 0.055-0.074, its fastest animation at most 0.046."""
    a = cv2.resize(grey, LAYOUT_SIZE, interpolation=cv2.INTER_AREA)
    b = cv2.resize(prev_grey, LAYOUT_SIZE, interpolation=cv2.INTER_AREA)
    return float(np.abs((a - a.mean()) - (b - b.mean())).mean())


def cut_test(grey: np.ndarray, prev_grey: np.ndarray, warped_grey: np.ndarray, threshold: float) -> bool:
    """A cut: even after motion compensation the picture changed wholesale, or its layout did.
    Decided on the pair alone, so chunks find the same cuts as one pass."""
    moved = float(np.abs(grey - prev_grey).mean())
    if float(np.abs(grey - warped_grey).mean()) > threshold * 0.5 or moved > threshold:
        return True
    return layout_change(grey, prev_grey) > threshold * LAYOUT_SHARE


def is_cut(grey: np.ndarray, prev_grey: np.ndarray, threshold: float, dis: cv2.DISOpticalFlow | None = None) -> bool:
    """The smoother's cut test on its own (for finding shots without smoothing)."""
    flow = flow_to_previous(grey, prev_grey, dis)
    return cut_test(grey, prev_grey, backward_warp(prev_grey, flow), threshold)


def backward_warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `img` (the previous frame) at x + flow(x): brings it onto the current frame."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_to_previous(cur: np.ndarray, prev: np.ndarray, dis: cv2.DISOpticalFlow | None = None) -> np.ndarray:
    """Dense flow from the current frame into the previous one (both float [0, 1], same size)."""
    dis = dis or new_flow()
    a = np.round(cur * 255).astype(np.uint8)
    b = np.round(prev * 255).astype(np.uint8)
    return dis.calc(a, b, None)


@dataclass
class TemporalSmoother:
    """Stateful: feed frames in display order. `reset()` at the start of each independent run."""

    strength: float = 0.8
    cut_threshold: float = 0.25
    prev_grey: np.ndarray | None = None
    prev_ab: np.ndarray | None = None
    cuts: int = 0
    _dis: cv2.DISOpticalFlow = field(default_factory=new_flow, repr=False)

    def reset(self) -> None:
        self.prev_grey = None
        self.prev_ab = None

    def __call__(self, grey: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """grey: HxW float [0, 1]; ab: HxWx2. Returns the smoothed ab (a new array)."""
        if self.prev_grey is None or self.prev_grey.shape != grey.shape or self.strength <= 0:
            return self._keep(grey, ab)
        flow = flow_to_previous(grey, self.prev_grey, self._dis)
        warped_grey = backward_warp(self.prev_grey, flow)
        if cut_test(grey, self.prev_grey, warped_grey, self.cut_threshold):
            self.cuts += 1
            return self._keep(grey, ab)
        err = cv2.GaussianBlur(np.abs(grey - warped_grey), (0, 0), 1.0)
        weight = self.strength * np.clip(1.0 - err / OCCLUSION_TOL, 0.0, 1.0)
        warped_ab = backward_warp(self.prev_ab, flow)
        out = ab + weight[..., None] * (warped_ab - ab)
        return self._keep(grey, out.astype(np.float32))

    def _keep(self, grey: np.ndarray, ab: np.ndarray) -> np.ndarray:
        self.prev_grey = grey
        self.prev_ab = ab
        return ab
