"""Colorization quality: PSNR, SSIM, colourfulness, CDC, chroma flicker; `vidcolor eval`.

`evaluate` takes colour clips, turns each into the grey film a black-and-white camera would
have made (the luma plane Y', chroma neutral, stored losslessly), colorizes that with the real
pipeline (smoothing on, and off), and compares everything with the original colour, frame by
frame, beside the grey baseline (the grey frames as RGB).

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

import dataclasses
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np

from .color import AB_SCALE, ab_to_planes, normalize_y, rgb_to_luma, y_levels, yuv_to_rgb
from .config import JobConfig, config_dict
from .errors import BadInputError, ConfigError, OutputError
from .guide import build_shot_guides, guide_from_points, true_colour_points
from .temporal import backward_warp, flow_to_previous

log = logging.getLogger(__name__)

PSNR_CAP = 100.0  # dB, for identical frames
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
CDC_STEPS = (1, 2, 4)
OCCLUSION_TOL = 0.05  # luma (0..1) error of the warped previous frame above which a pixel is occluded
SHEET_ROWS = 4
SHEET_TILE_WIDTH = 320

PREDICTED = ("grey", "colorized", "no_smoothing")  # compared with the original
VARIANTS = (*PREDICTED, "original")


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


# --- video plumbing -----------------------------------------------------------------------


@dataclass
class GreyClip:
    path: Path
    frames: int
    width: int
    height: int
    full_range: bool
    fps: Fraction


def _open_video(path: Path, video_stream: int = 0) -> tuple[Any, Any]:
    from .video import _open

    c = _open(path)
    videos = [s for s in c.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if video_stream >= len(videos):
        c.close()
        raise BadInputError(f"{path} has {len(videos)} video stream(s); stream {video_stream} does not exist")
    vs = videos[video_stream]
    vs.thread_type = "AUTO"
    return c, vs


def _frames(path: Path, video_stream: int, max_frames: int) -> Iterator[av.VideoFrame]:
    """Decoded frames in display order; damaged packets are skipped, the decoder is flushed."""
    from .video import _decode_frames

    c, vs = _open_video(path, video_stream)
    try:
        n = 0
        for frame in _decode_frames(c, vs, errors=[0]):
            yield frame
            n += 1
            if max_frames and n >= max_frames:
                return
    except av.error.FFmpegError as err:
        raise BadInputError(f"cannot decode {path}: {err}") from err
    finally:
        c.close()


def _even(n: int) -> int:
    return max(2, n - n % 2)


def _luma(frame: av.VideoFrame) -> tuple[np.ndarray, bool]:
    """The Y' plane (8-bit) a black-and-white film of this frame holds, and whether it is full range."""
    from .video import _working_layout

    name = frame.format.name
    layout = _working_layout(name)
    if layout is not None and layout[0] == 8:
        full = frame.color_range == 2 or name.startswith("yuvj") or (layout[2] and frame.color_range != 1)
        return _plane0(frame), bool(full)
    return _plane0(frame.reformat(format="yuv420p")), False


def _plane0(frame: av.VideoFrame) -> np.ndarray:
    from .video import read_plane

    return read_plane(frame, 0)


def make_grey_clip(src: Path, dest: Path, max_frames: int = 0, video_stream: int = 0) -> GreyClip:
    """Write the grey film of `src`: its luma, neutral chroma, FFV1 (lossless) in Matroska.

    Odd sizes are cropped to even so 4:2:0 chroma covers every pixel; the colour tags (range,
    matrix) are copied so the grey and colorized versions decode to RGB as the original does."""
    from .video import write_plane

    out = None
    stream = None
    n = 0
    info: GreyClip | None = None
    try:
        for frame in _frames(src, video_stream, max_frames):
            y, full = _luma(frame)
            if info is None:
                c, vs = _open_video(src, video_stream)
                rate = vs.average_rate or vs.guessed_rate
                c.close()
                fps = Fraction(rate) if rate and rate > 0 else Fraction(25)
                w, h = _even(y.shape[1]), _even(y.shape[0])
                info = GreyClip(dest, 0, w, h, full, fps)
                out = av.open(str(dest), "w", format="matroska")
                stream = out.add_stream("ffv1", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.time_base = 1 / fps
                cc = stream.codec_context
                cc.time_base = 1 / fps
                cc.framerate = fps
                cc.color_range = 2 if full else 1
                if frame.colorspace not in (None, 2) and frame.format.name.startswith("yuv"):
                    cc.colorspace = frame.colorspace
                cc.options = {"level": "3"}
                neutral = np.full(((h + 1) // 2, (w + 1) // 2), 128, np.uint8)
            if y.shape[0] < info.height or y.shape[1] < info.width:
                raise BadInputError(f"frame size changes mid-stream in {src}; not supported")
            g = av.VideoFrame(info.width, info.height, "yuv420p")
            write_plane(g, 0, np.ascontiguousarray(y[: info.height, : info.width]))
            write_plane(g, 1, neutral)
            write_plane(g, 2, neutral)
            g.pts = n
            g.time_base = 1 / info.fps
            g.color_range = 2 if info.full_range else 1
            if frame.colorspace not in (None, 2) and frame.format.name.startswith("yuv"):
                g.colorspace = frame.colorspace
            for packet in stream.encode(g):
                out.mux(packet)
            n += 1
        if info is None:
            raise BadInputError(f"no decodable video frames in {src}")
        for packet in stream.encode(None):
            out.mux(packet)
    finally:
        if out is not None:
            out.close()
    info.frames = n
    return info


def _rgb_frames(path: Path, max_frames: int, size: tuple[int, int], video_stream: int = 0) -> Iterator[np.ndarray]:
    """RGB uint8 frames as a player decodes them, cropped to `size` (w, h)."""
    w, h = size
    for frame in _frames(path, video_stream, max_frames):
        rgb = frame.to_ndarray(format="rgb24")
        if rgb.shape[0] < h or rgb.shape[1] < w:
            raise BadInputError(f"{path}: frame of {rgb.shape[1]}x{rgb.shape[0]}, expected {w}x{h}")
        yield np.ascontiguousarray(rgb[:h, :w])


# --- one clip -------------------------------------------------------------------------------


@dataclass
class _Acc:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    colorfulness: list[float] = field(default_factory=list)
    hists: list[np.ndarray] = field(default_factory=list)


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def _sample_indices(n: int, k: int = SHEET_ROWS) -> list[int]:
    return sorted({round(float(x)) for x in np.linspace(0, n - 1, min(k, n))}) if n else []


def _tile(rgb: np.ndarray, label: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(1.0, SHEET_TILE_WIDTH / w)
    t = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    t = np.ascontiguousarray(t)
    cv2.putText(t, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(t, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def contact_sheet(rows: Sequence[tuple[int, Sequence[tuple[str, np.ndarray]]]]) -> np.ndarray:
    """Rows of labelled images side by side (grey | colorized | ... | original, RGB uint8), 4 px
    white gaps; rows of different widths are padded white on the right. Returns RGB."""
    gap = 4
    out_rows = []
    for _idx, images in rows:
        tiles = [_tile(img, label) for label, img in images]
        th = max(t.shape[0] for t in tiles)
        sep = np.full((th, gap, 3), 255, np.uint8)
        parts = []
        for t in tiles:
            if t.shape[0] < th:
                t = np.concatenate([t, np.full((th - t.shape[0], t.shape[1], 3), 255, np.uint8)])
            parts += [t, sep]
        out_rows.append(np.concatenate(parts[:-1], axis=1))
    width = max(r.shape[1] for r in out_rows)
    out_rows = [r if r.shape[1] == width else
                np.concatenate([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)], axis=1)
                for r in out_rows]
    hsep = np.full((gap, width, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for r in out_rows:
        parts += [r, hsep]
    return np.concatenate(parts[:-1], axis=0)


def _colorize(grey: GreyClip, out: Path, cfg: JobConfig, colorizer: Any, guides: Any = None) -> float:
    from .pipeline import LocalExecutor, run_job

    t0 = time.time()
    run_job(grey.path, out, cfg, overwrite=True, executor=LocalExecutor(colorizer), guides=guides)
    return time.time() - t0


def check_guide_modes(modes: Sequence[str]) -> None:
    for mode in modes:
        if mode != "first-frame" and not (mode.startswith("points:") and mode[7:].isdigit() and int(mode[7:]) > 0):
            raise ConfigError(f"unknown --guide mode {mode!r}: use first-frame or points:N (N >= 1)")


def true_guide(ab: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """The guide a user who knows the true colours (ab at working size) would give: the whole
    frame (first-frame) or N random points (points:N)."""
    if mode == "first-frame":
        return np.concatenate([ab, np.ones((*ab.shape[:2], 1), np.float32)], axis=-1)
    size = (ab.shape[1], ab.shape[0])
    return guide_from_points(true_colour_points(ab, int(mode.split(":")[1]), seed), size)


def _clip_guides(clip: Path, grey: GreyClip, cfg: JobConfig, modes: Sequence[str]) -> dict[str, Any]:
    """The simulated user's guides for a clip, per mode: true colours of its first frame, for
    its first shot (found once: the modes differ only in the guide image)."""
    from .pipeline import working_size
    from .video import frame_pts, probe

    if not modes:
        return {}
    info = probe(grey.path)
    size = working_size(info.width, info.height, cfg.working_size)
    first = next(_rgb_frames(clip, 1, (grey.width, grey.height), cfg.video_stream))
    ab = (rgb_to_ab(cv2.resize(first, size, interpolation=cv2.INTER_AREA)) / AB_SCALE).astype(np.float32)
    pts_list = frame_pts(info)
    (shot,) = build_shot_guides(info, pts_list, [(pts_list[0], true_guide(ab, modes[0], seed=0))], size,
                                cfg.scene_cut_threshold)
    return {m: [dataclasses.replace(shot, guide=true_guide(ab, m, seed=0))] for m in modes}


def evaluate_clip(clip: Path, cfg: JobConfig, colorizer: Any, work: Path, max_frames: int = 0,
                  sheet: Path | None = None, guide_modes: Sequence[str] = ()) -> dict[str, Any]:
    """All metrics of one colour clip (see the module docstring); writes `sheet` when given."""
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    grey = make_grey_clip(clip, work / "grey.mkv", max_frames, cfg.video_stream)
    log.info("%s: %d frames %dx%d; colorizing with smoothing on and off", clip.name, grey.frames,
             grey.width, grey.height)
    run_cfg = dataclasses.replace(cfg, encoder="ffv1", video_stream=0)
    outs = {"colorized": work / "colorized.mkv", "no_smoothing": work / "no_smoothing.mkv"}
    seconds = {"grey_clip": time.time() - t0}
    seconds["colorized"] = _colorize(grey, outs["colorized"], run_cfg, colorizer)
    seconds["no_smoothing"] = _colorize(grey, outs["no_smoothing"], dataclasses.replace(run_cfg, smoothing=False),
                                        colorizer)
    guided = {}
    for j, (mode, guides) in enumerate(_clip_guides(clip, grey, cfg, guide_modes).items()):
        guided[mode] = work / f"guided_{j}.mkv"
        seconds[f"guide:{mode}"] = _colorize(grey, guided[mode], run_cfg, colorizer, guides)

    t1 = time.time()
    size = (grey.width, grey.height)
    streams = zip(
        _rgb_frames(clip, max_frames, size, cfg.video_stream),
        _frames(grey.path, 0, 0),
        _rgb_frames(outs["colorized"], 0, size),
        _rgb_frames(outs["no_smoothing"], 0, size),
        *(_rgb_frames(path, 0, size) for path in guided.values()),
        strict=False,
    )
    acc = {v: _Acc() for v in VARIANTS}
    gacc = {mode: _Acc() for mode in guided}
    flicker = FlickerMeter()
    picks = set(_sample_indices(grey.frames))
    rows: list[tuple[int, list[tuple[str, np.ndarray]]]] = []
    n = 0
    for i, (orig, gframe, col, nosm, *gcols) in enumerate(streams):
        grey_rgb = gframe.to_ndarray(format="rgb24")
        for mode, gcol in zip(guided, gcols):
            gacc[mode].psnr.append(psnr(gcol, orig))
            gacc[mode].ssim.append(ssim(gcol, orig))
            gacc[mode].colorfulness.append(colorfulness(gcol))
        luma = normalize_y(_plane0(gframe), 8, grey.full_range)
        frames = {"grey": grey_rgb, "colorized": col, "no_smoothing": nosm, "original": orig}
        for name, rgb in frames.items():
            a = acc[name]
            if name != "original":
                a.psnr.append(psnr(rgb, orig))
                a.ssim.append(ssim(rgb, orig))
            a.colorfulness.append(colorfulness(rgb))
            a.hists.append(channel_histograms(rgb))
        flicker.update(luma, {name: rgb_to_ab(rgb) for name, rgb in frames.items()})
        if i in picks:
            rows.append((i, [(f"grey #{i}", grey_rgb), ("colorized", col),
                             *((f"guide {m}", g) for m, g in zip(guided, gcols)), ("original", orig)]))
        n += 1
    if n != grey.frames:
        log.warning("%s: %d frames decoded from every version, %d expected; compared the first %d",
                    clip.name, n, grey.frames, n)
    if n == 0:
        raise BadInputError(f"no frames to compare in {clip}")
    seconds["metrics"] = time.time() - t1

    result: dict[str, Any] = {"clip": clip.stem, "path": str(clip), "frames": n, "width": grey.width,
                              "height": grey.height, "fps": float(grey.fps)}
    for name in VARIANTS:
        a = acc[name]
        m: dict[str, float | None] = {}
        if name != "original":
            m["psnr"] = _mean(a.psnr)
            m["ssim"] = _mean(a.ssim)
        m["colorfulness"] = _mean(a.colorfulness)
        m["cdc"] = cdc(a.hists)
        m["flicker"] = flicker.result(name)
        result[name] = m
    result["guided"] = {mode: {"psnr": _mean(a.psnr), "ssim": _mean(a.ssim), "colorfulness": _mean(a.colorfulness)}
                        for mode, a in gacc.items()}
    result["flicker_pixels"] = flicker.pixels
    if sheet is not None and rows:
        if not cv2.imwrite(str(sheet), contact_sheet(rows)[..., ::-1]):
            raise OutputError(f"cannot write contact sheet {sheet}")
        result["sheet"] = sheet.name
    result["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    log.info("%s: done in %.1f s", clip.name, time.time() - t0)
    return result


# --- photos -----------------------------------------------------------------------------------


def colorize_photo(rgb: np.ndarray, cfg: JobConfig, colorizer: Any, guide_mode: str = "",
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A colour photo through the video path: Y' (BT.601) stored as 8-bit limited range, the
    model at the working size, chroma composed with the original luma as the pipeline does
    (4:4:4). Returns (grey RGB, colorized RGB), uint8. `guide_mode`: points:N from the truth."""
    from .pipeline import working_size

    h, w = rgb.shape[:2]
    y_code = np.round(16.0 + 219.0 * rgb_to_luma(rgb.astype(np.float32) / 255.0, "bt601")).astype(np.uint8)
    yn = normalize_y(y_code, 8, False)
    size = working_size(w, h, cfg.working_size)
    small = normalize_y(cv2.resize(y_code, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR),
                        8, False)
    guide = None
    if guide_mode:
        ab_true = rgb_to_ab(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)) / AB_SCALE
        guide = true_guide(ab_true.astype(np.float32), guide_mode, seed)[None]
    ab = colorizer.predict(small[None], pad_to=1, guide=guide)[0] * cfg.saturation
    u, v = ab_to_planes(small, ab, (w, h), 8, False, "bt601")
    _, _, cspan = y_levels(8, False)
    zero = np.zeros_like(yn)
    grey = yuv_to_rgb(yn, zero, zero, "bt601")
    col = yuv_to_rgb(yn, (u.astype(np.float32) - 128.0) / cspan, (v.astype(np.float32) - 128.0) / cspan, "bt601")
    return (np.round(grey * 255).astype(np.uint8), np.round(col * 255).astype(np.uint8))


def evaluate_photos(folder: Path, cfg: JobConfig, colorizer: Any, sheet: Path | None = None,
                    guide_modes: Sequence[str] = ()) -> dict[str, Any]:
    """PSNR, SSIM and colourfulness over a folder of colour photos (see colorize_photo), with
    `guide_modes` (points:N) beside the unguided result."""
    from .data import list_images

    files = list_images([folder])
    if not files:
        raise BadInputError(f"no photos (webp, jpg, png, bmp) in {folder}")
    modes = [m for m in guide_modes if m.startswith("points:")]
    acc = {v: _Acc() for v in ("grey", "colorized", "original")}
    gacc = {m: _Acc() for m in modes}
    picks = set(_sample_indices(len(files), 6))
    rows: list[tuple[int, list[tuple[str, np.ndarray]]]] = []
    t0 = time.time()
    for i, f in enumerate(files):
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BadInputError(f"cannot read photo {f}")
        orig = np.ascontiguousarray(bgr[..., ::-1])
        grey, col = colorize_photo(orig, cfg, colorizer)
        for name, img in (("grey", grey), ("colorized", col), ("original", orig)):
            if name != "original":
                acc[name].psnr.append(psnr(img, orig))
                acc[name].ssim.append(ssim(img, orig))
            acc[name].colorfulness.append(colorfulness(img))
        tiles = [(f"grey {f.stem[:24]}", grey), ("colorized", col)]
        for m in modes:
            _, gcol = colorize_photo(orig, cfg, colorizer, m, seed=i)
            gacc[m].psnr.append(psnr(gcol, orig))
            gacc[m].ssim.append(ssim(gcol, orig))
            gacc[m].colorfulness.append(colorfulness(gcol))
            tiles.append((f"guide {m}", gcol))
        if i in picks:
            rows.append((i, [*tiles, ("original", orig)]))
    result: dict[str, Any] = {"clip": folder.name or str(folder), "path": str(folder), "photos": len(files)}
    for name, a in acc.items():
        result[name] = {"psnr": _mean(a.psnr), "ssim": _mean(a.ssim), "colorfulness": _mean(a.colorfulness)}
    result["guided"] = {m: {"psnr": _mean(a.psnr), "ssim": _mean(a.ssim), "colorfulness": _mean(a.colorfulness)}
                        for m, a in gacc.items()}
    if sheet is not None and rows:
        if not cv2.imwrite(str(sheet), contact_sheet(rows)[..., ::-1]):
            raise OutputError(f"cannot write contact sheet {sheet}")
        result["sheet"] = sheet.name
    result["seconds"] = round(time.time() - t0, 2)
    log.info("%s: %d photos in %.1f s", folder, len(files), time.time() - t0)
    return result


def format_photo_table(results: Sequence[dict[str, Any]]) -> str:
    header = ["photos", "count", "PSNR grey/out", "SSIM grey/out", "colourfulness out/orig (ratio)"]
    rows = []
    for r in results:
        g, c, o = r["grey"], r["colorized"], r["original"]
        ratio = c["colorfulness"] / o["colorfulness"] if o["colorfulness"] else None
        rows.append([r["clip"], str(r["photos"]), f"{_f(g['psnr'], '.2f')}/{_f(c['psnr'], '.2f')}",
                     f"{_f(g['ssim'], '.4f')}/{_f(c['ssim'], '.4f')}",
                     f"{_f(c['colorfulness'], '.1f')}/{_f(o['colorfulness'], '.1f')} ({_f(ratio, '.2f')})"])
    return _markdown(header, rows)


def format_guide_table(results: Sequence[dict[str, Any]], modes: Sequence[str]) -> str:
    """PSNR (dB) without a guide and with each simulated guide, per clip or photo set, and the
    mean over clips (photo sets are listed on their own)."""
    header = ["clip / photos", "no guide", *modes]
    rows = []
    clips = [r for r in results if "photos" not in r]
    for r in results:
        cells = [_f(r["colorized"]["psnr"], ".2f")]
        cells += [_f(r["guided"][m]["psnr"], ".2f") if m in r["guided"] else "-" for m in modes]
        rows.append([r["clip"], *cells])
    if clips:
        cells = [_f(_mean([r["colorized"]["psnr"] for r in clips]), ".2f")]
        cells += [_f(_mean([r["guided"][m]["psnr"] for r in clips if m in r["guided"]]), ".2f") for m in modes]
        rows.append([f"mean of {len(clips)} clips", *cells])
    return _markdown(header, rows)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


# --- the report -----------------------------------------------------------------------------


def overall(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean over clips of every metric (clips where a metric is undefined are left out)."""
    out: dict[str, Any] = {"clips": len(results), "frames": sum(r["frames"] for r in results)}
    for name in VARIANTS:
        keys = results[0][name].keys() if results else []
        out[name] = {k: _mean([r[name][k] for r in results if r[name][k] is not None]) for k in keys}
    return out


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _row(name: str, frames: int, r: dict[str, Any]) -> list[str]:
    g, c, s, o = r["grey"], r["colorized"], r["no_smoothing"], r["original"]
    ratio = (c["colorfulness"] / o["colorfulness"]
             if c["colorfulness"] is not None and o["colorfulness"] else None)
    return [
        name,
        str(frames),
        f"{_f(g['psnr'], '.2f')}/{_f(c['psnr'], '.2f')}/{_f(s['psnr'], '.2f')}",
        f"{_f(g['ssim'], '.4f')}/{_f(c['ssim'], '.4f')}",
        f"{_f(c['colorfulness'], '.1f')}/{_f(o['colorfulness'], '.1f')} ({_f(ratio, '.2f')})",
        f"{_f(c['cdc'], '.4f')}/{_f(o['cdc'], '.4f')}",
        f"{_f(c['flicker'], '.2f')}/{_f(s['flicker'], '.2f')}/{_f(o['flicker'], '.2f')}",
    ]


HEADER = ["clip", "frames", "PSNR grey/out/nosmooth", "SSIM grey/out", "colourfulness out/orig (ratio)",
          "CDC out/orig", "flicker out/nosmooth/orig"]


def format_table(results: Sequence[dict[str, Any]], total: dict[str, Any]) -> str:
    """A markdown table (aligned, so it reads in a terminal too): one row per clip and the mean."""
    rows = [_row(r["clip"], r["frames"], r) for r in results]
    rows.append(_row(f"mean of {total['clips']}", total["frames"], total))
    return _markdown(HEADER, rows)


def _unique_names(clips: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for clip in clips:
        base = clip.stem or "clip"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def evaluate(clips: Sequence[Path], cfg: JobConfig, report_dir: Path | None = None, max_frames: int = 0,
             guide_modes: Sequence[str] = ()) -> str:
    """Evaluate colour clips and folders of colour photos (see the module docstring); returns
    the tables. `guide_modes` (first-frame, points:N) adds runs guided by the true colours.
    With `report_dir`, also writes report.json, report.md and contact sheets there."""
    from .model import Colorizer

    inputs = [Path(c) for c in clips]
    if not inputs:
        raise BadInputError("no clips to evaluate")
    for clip in inputs:
        if not clip.exists():
            raise BadInputError(f"clip not found: {clip}")
    check_guide_modes(guide_modes)
    if report_dir is not None:
        report_dir = Path(report_dir)
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create report folder {report_dir}: {err.strerror or err}") from err
    colorizer = Colorizer.for_job(cfg)  # once, for every run
    if guide_modes and not colorizer.takes_guide:
        raise ConfigError(f"--guide: the model {cfg.weights_path.name} takes no colour guide")
    results, photo_results = [], []
    with tempfile.TemporaryDirectory(prefix="vidcolor-eval-") as tmp:
        for i, (clip, name) in enumerate(zip(inputs, _unique_names(inputs), strict=True)):
            sheet = report_dir / f"{name}_sheet.png" if report_dir is not None else None
            if clip.is_dir():
                r = evaluate_photos(clip, cfg, colorizer, sheet, guide_modes)
                photo_results.append(r)
            else:
                r = evaluate_clip(clip, cfg, colorizer, Path(tmp) / str(i), max_frames, sheet, guide_modes)
                results.append(r)
            r["clip"] = name
    total = overall(results) if results else None
    tables = []
    if results:
        tables.append(format_table(results, total))
    if photo_results:
        tables.append(format_photo_table(photo_results))
    if guide_modes:
        tables.append(format_guide_table([*results, *photo_results], guide_modes))
    table = "\n\n".join(tables)
    if report_dir is not None:
        report = {
            "weights": str(cfg.weights_path),
            "weights_sha256": colorizer.meta.get("sha256"),
            "config": config_dict(cfg),
            "max_frames": max_frames,
            "psnr_cap_db": PSNR_CAP,
            "guide_modes": list(guide_modes),
            "clips": results,
            "photos": photo_results,
            "overall": total,
        }
        try:
            (report_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            md = [
                "# vidcolor eval",
                "",
                f"weights: `{cfg.weights_path}` (sha256 {str(colorizer.meta.get('sha256', '?'))[:12]}), "
                f"working size {cfg.working_size}, smoothing strength {cfg.smoothing_strength}, "
                f"max frames {max_frames or 'all'}",
                "",
                table,
                "",
                "out = colorized (smoothing on), nosmooth = smoothing off, grey = no colour, orig = the original.",
                "PSNR (dB, capped at 100) and SSIM against the original RGB; colourfulness Hasler & Suesstrunk;",
                "CDC = TCVC colour distribution consistency (lower is steadier); flicker = mean motion-compensated",
                "|delta ab| in Lab units on the pixels the original's flow explains. Guide modes simulate a user",
                "with the true colours: first-frame = the clip's first frame, points:N = N random true-colour",
                "points on the first frame (clips) or the photo.",
                "",
                *(f"![{r['clip']}]({r['sheet']})" for r in [*results, *photo_results] if "sheet" in r),
                "",
            ]
            (report_dir / "report.md").write_text("\n".join(md))
        except OSError as err:
            raise OutputError(f"cannot write the report in {report_dir}: {err.strerror or err}") from err
        log.info("report written to %s", report_dir)
    return table
