"""Colour carried by what things are: matching frames to a keyframe or a reference photo in the
generator's own encoder features (Zhang et al. 2019, "Deep Exemplar-based Video Colorization").

Optical flow carries a keyframe's colour only while the picture stays where it was; whatever
moves fast, turns or leaves and comes back is lost. Here each position of a frame (stride 8 of
the working size, or of twice it: MATCH_SCALE) is matched to every position of the reference by
cosine similarity of the encoder's stride-8 and stride-16 features (each made unit length,
concatenated); a softmax over the reference's positions (temperature MATCH_T) carries the
reference's colour, and the best similarity gates it: below SIM_NONE no colour, from SIM_FULL
full confidence. The result is a guide like any other (ab * confidence, confidence), fed to the
network's guide input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .efficientnet import INPUT_MEAN, INPUT_STD, SKIP_BLOCKS

# A frame is matched to its own shot's keyframe at this multiple of the working size: at 144 px a
# figure is a few cells of the stride-8 grid (Mickey's shorts in the bundled film: 2 x 2) and its
# colour is lost when it turns; at twice the size the encoder, trained on ImageNet at 224 px, sees
# it at its own scale. Reference photos and other shots' keyframes are matched at 1x, where their
# strict gates were measured (at 2x, a ruled chart passed the gate of the synthetic scene in the
# shot / reverse shot test). Training matched at 1x (its 128 px crops are close views).
# Measured: MODEL_CARD.md, session 9.
MATCH_SCALE = 2
STRIDE = 8  # of FeatureNet's grid
MIN_CELL_COVER = 0.5  # a reference cell carries colour when the guide covers at least this share of it
MATCH_T = 0.02  # softmax temperature over cosine similarities (the trial: 0.02)
SIM_NONE = 0.5  # best cosine similarity at which a match carries no colour
SIM_FULL = 0.8  # ... and from which it carries full confidence
# Reference photos show another moment, often another place: a stricter gate per position, and
# one for the whole frame on the median best similarity. Measured on the dev clips (frames against
# the same clip's last frame / against another clip's frame): median best similarity 0.56-0.86 /
# 0.41-0.53; 99th percentile of positions against another clip 0.59-0.72.
REF_SIM_NONE = 0.65
REF_SIM_FULL = 0.9
REF_FRAME_NONE = 0.5
REF_FRAME_FULL = 0.65


class FeatureNet(nn.Module):
    """The generator's encoder up to stride 16: (N, 1, H, W) grey in [-1, 1] (H, W multiples of
    32) -> (N, C8 + C16, H/8, W/8) matching features, each half unit length per position."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.cfg = generator.cfg
        enc = generator.encoder
        self.stem = nn.Sequential(enc._conv_stem, enc._bn0)
        self.blocks = nn.ModuleList(enc._blocks[: SKIP_BLOCKS[3] + 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (((x + 1.0) * 0.5 - INPUT_MEAN) / INPUT_STD).expand(-1, 3, -1, -1)
        y = F.relu6(self.stem(rgb))
        f8 = None
        for i, block in enumerate(self.blocks):
            y = block(y)
            if i == SKIP_BLOCKS[2]:
                f8 = y
        assert f8 is not None
        f16 = F.interpolate(y, size=f8.shape[-2:], mode="bilinear")
        return torch.cat([F.normalize(f8, dim=1), F.normalize(f16, dim=1)], 1) * (0.5 ** 0.5)


@dataclass(frozen=True)
class Reference:
    """What frames are matched against: feature vectors (C, Q) of Q positions (one image's grid,
    or several images' side by side) and the guide at each position (Q, 3: ab * conf, conf)."""

    feats: np.ndarray
    guide: np.ndarray

    @staticmethod
    def join(refs: list[Reference]) -> Reference:
        return Reference(np.concatenate([r.feats for r in refs], 1), np.concatenate([r.guide for r in refs], 0))


def pad_guide(guide: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """A guide (H, W, 3) padded as Colorizer pads its input (centred; no hint outside the frame)."""
    ph, pw = pad
    return np.pad(guide, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def _matched_area(grid_shape: tuple[int, int], pad: tuple[int, int]) -> tuple[int, int]:
    """(w, h) of the image a feature grid (gh, gw) was computed from, its padding taken off:
    the working size times the scale it was matched at."""
    gh, gw = grid_shape
    return gw * STRIDE - pad[1], gh * STRIDE - pad[0]


def make_reference(feats: np.ndarray, pad: tuple[int, int], guide: np.ndarray) -> Reference:
    """A reference from one image: its features (C, gh, gw, from Colorizer.features with padding
    `pad`, at any scale) and its guide at working size (H, W, 3), averaged onto the feature grid.
    Only cells mostly covered by the guide count: a painted area or a photo carries its colour, a
    few points do not (smeared over the frame, they misled the hint spreading: dev clips, 10
    points, +0.36 dB over no guide against +1.31 without matching). Coverage is counted over a
    cell of the working size's grid, so a 5x5 point stays no reference at any scale."""
    c, gh, gw = feats.shape
    area = _matched_area((gh, gw), pad)
    grid = guide
    cover = guide[..., 2]
    if area != (guide.shape[1], guide.shape[0]):
        cover = cv2.resize(cv2.blur(cover, (STRIDE, STRIDE)), area, interpolation=cv2.INTER_LINEAR)
        grid = cv2.resize(guide, area, interpolation=cv2.INTER_LINEAR)
    grid = cv2.resize(pad_guide(grid, pad), (gw, gh), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(pad_guide(cover[..., None], pad)[..., 0], (gw, gh), interpolation=cv2.INTER_AREA)
    grid[cover < MIN_CELL_COVER] = 0.0
    return Reference(feats.reshape(c, -1), grid.reshape(-1, 3).astype(np.float32))


def reference_of(colorizer: Any, grey: np.ndarray, guide: np.ndarray, scale: int = 1) -> Reference:
    """A reference from one image at working size: its luma (H, W) and guide (H, W, 3), its
    features taken at `scale` times that size (as the frames matched to it)."""
    feats, pad = colorizer.features(grey[None], pad_to=1, scale=scale)
    return make_reference(feats[0], pad, guide)


def match_grid(frame_feats: torch.Tensor, ref_feats: torch.Tensor, ref_guide: torch.Tensor,
               strict: torch.Tensor) -> torch.Tensor:
    """carry's core for M frame-reference pairs at once (one device, no host round trip: training
    matches a batch's samples on the GPU): frame_feats (M, C, P), ref_feats (M, C, Q), ref_guide
    (M, Q, 3), strict (M,) bool -> (M, P, 3), each position's carried guide times its gate."""
    sim = frame_feats.transpose(1, 2) @ ref_feats  # cosine similarities (M, P, Q)
    best = sim.amax(2)  # each position's best
    carried = torch.softmax(sim / MATCH_T, dim=2) @ ref_guide
    loose = ((best - SIM_NONE) / (SIM_FULL - SIM_NONE)).clamp(0.0, 1.0)
    tight = ((best - REF_SIM_NONE) / (REF_SIM_FULL - REF_SIM_NONE)).clamp(0.0, 1.0)
    frame = ((best.quantile(0.5, dim=1, keepdim=True) - REF_FRAME_NONE) / (REF_FRAME_FULL - REF_FRAME_NONE))
    gate = torch.where(strict[:, None], tight * frame.clamp(0.0, 1.0), loose)
    return carried * gate[..., None]


def carry(frame_feats: np.ndarray, pad: tuple[int, int], ref: Reference, size: tuple[int, int],
          strict: bool = False) -> np.ndarray:
    """The reference's colour carried onto a frame by feature matching: frame_feats (C, gh, gw)
    from Colorizer.features with padding `pad`; returns the frame's guide at `size` (w, h) as
    (h, w, 3): ab * conf, conf, where conf is the carried confidence times the match's gate.
    `strict`: the gates for reference photos (another moment, maybe another place)."""
    c, gh, gw = frame_feats.shape
    # torch, not numpy: at 2x (2,304 x 2,304 positions) numpy's exp took 4x torch's softmax.
    grid = match_grid(torch.from_numpy(np.ascontiguousarray(frame_feats.reshape(1, c, -1))),
                      torch.from_numpy(ref.feats)[None], torch.from_numpy(ref.guide)[None], torch.tensor([strict]))
    grid = grid[0].numpy().reshape(gh, gw, 3)  # float32, as the features
    ph, pw = pad
    mw, mh = _matched_area((gh, gw), pad)
    full = cv2.resize(grid, (mw + pw, mh + ph), interpolation=cv2.INTER_LINEAR)
    full = full[ph // 2 : ph // 2 + mh, pw // 2 : pw // 2 + mw]
    if (mw, mh) != size:
        full = cv2.resize(full, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(full)
