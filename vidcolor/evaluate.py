"""`vidcolor eval`: colorize colour clips and photos turned grey, and measure the result.

`evaluate` takes colour clips, turns each into the grey film a black-and-white camera would
have made (the luma plane Y', chroma neutral, stored losslessly), colorizes that with the real
pipeline (smoothing on, and off), and compares everything with the original colour, frame by
frame, beside the grey baseline (the grey frames as RGB); photo folders are turned grey as the
video path does. The measures and their definitions are in metrics.py.
"""


from __future__ import annotations

import dataclasses
import json
import logging
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

from .color import (
    AB_SCALE,
    ab_to_planes,
    apply_saturation,
    normalize_y,
    rgb_to_luma,
    working_size,
    y_levels,
    yuv_to_rgb,
)
from .config import JobConfig, config_dict
from .data import list_images
from .errors import BadInputError, ConfigError, OutputError
from .guide import build_shot_guides, guide_from_points, reference_photo, true_colour_points
from .match import carry, reference_of
from .metrics import PSNR_CAP, FlickerMeter, cdc, channel_histograms, colorfulness, psnr, rgb_to_ab, ssim
from .model import Colorizer
from .pipeline import LocalExecutor, run_job
from .video import decode_frames, frame_pts, open_input, probe, read_plane, working_layout, write_plane

log = logging.getLogger(__name__)

SHEET_ROWS = 4
BLANK_STD = 2.0  # RGB code values: a frame this flat (black leader, a fade's end) shows nothing
SHEET_TILE_WIDTH = 320
PREDICTED = ("grey", "colorized", "no_smoothing")  # compared with the original
VARIANTS = (*PREDICTED, "original")


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
    c = open_input(path)
    videos = [s for s in c.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if video_stream >= len(videos):
        c.close()
        raise BadInputError(f"{path} has {len(videos)} video stream(s); stream {video_stream} does not exist")
    vs = videos[video_stream]
    vs.thread_type = "AUTO"
    return c, vs


def _frames(path: Path, video_stream: int, max_frames: int) -> Iterator[av.VideoFrame]:
    """Decoded frames in display order; damaged packets are skipped, the decoder is flushed."""
    c, vs = _open_video(path, video_stream)
    try:
        n = 0
        for frame in decode_frames(c, vs, errors=[0]):
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
    name = frame.format.name
    layout = working_layout(name)
    if layout is not None and layout[0] == 8:
        full = frame.color_range == 2 or name.startswith("yuvj") or (layout[2] and frame.color_range != 1)
        return _plane0(frame), bool(full)
    return _plane0(frame.reformat(format="yuv420p")), False


def _plane0(frame: av.VideoFrame) -> np.ndarray:
    return read_plane(frame, 0)


def make_grey_clip(src: Path, dest: Path, max_frames: int = 0, video_stream: int = 0) -> GreyClip:
    """Write the grey film of `src`: its luma, neutral chroma, FFV1 (lossless) in Matroska.

    Odd sizes are cropped to even so 4:2:0 chroma covers every pixel; the colour tags (range,
    matrix) are copied so the grey and colorized versions decode to RGB as the original does."""
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
    t0 = time.time()
    run_job(grey.path, out, cfg, overwrite=True, executor=LocalExecutor(colorizer), guides=guides)
    return time.time() - t0


REFERENCE_MODES = ("reference:last", "reference:other", "reference:crop")


def check_guide_modes(modes: Sequence[str]) -> None:
    for mode in modes:
        if mode not in ("first-frame", *REFERENCE_MODES) and not (
                mode.startswith("points:") and mode[7:].isdigit() and int(mode[7:]) > 0):
            raise ConfigError(f"unknown --guide mode {mode!r}: use first-frame, points:N (N >= 1), "
                              f"{', '.join(REFERENCE_MODES)}")


def crop_view(rgb: np.ndarray, seed: int) -> np.ndarray:
    """Another view of a photo, for `reference:crop`: a random crop of 70 % of each side,
    mirrored (the reference shows the same things, elsewhere and at another scale)."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    ch, cw = int(h * 0.7), int(w * 0.7)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.ascontiguousarray(rgb[y0 : y0 + ch, x0 : x0 + cw][:, ::-1])


def true_guide(ab: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """The guide a user who knows the true colours (ab at working size) would give: the whole
    frame (first-frame) or N random points (points:N)."""
    if mode == "first-frame":
        return np.concatenate([ab, np.ones((*ab.shape[:2], 1), np.float32)], axis=-1)
    size = (ab.shape[1], ab.shape[0])
    return guide_from_points(true_colour_points(ab, int(mode.split(":")[1]), seed), size)


def _last_frame(clip: Path, max_frames: int, size: tuple[int, int], video_stream: int) -> np.ndarray:
    """The last of a clip's first `max_frames` frames (0: all), RGB; one frame held at a time."""
    last = None
    for last in _rgb_frames(clip, max_frames, size, video_stream):  # noqa: B007 (the last one is wanted)
        pass
    if last is None:
        raise BadInputError(f"no frames in {clip}")
    return last


def _other_frame(clip: Path, video_stream: int, index: int = 30) -> np.ndarray:
    """Frame `index` (RGB) of a clip, or its last if it is shorter."""
    c, vs = _open_video(clip, video_stream)
    with c:
        size = (_even(vs.codec_context.width), _even(vs.codec_context.height))
    return _last_frame(clip, index + 1, size, video_stream)


def _first_picture(clip: Path, frames: int, size: tuple[int, int], video_stream: int) -> tuple[int, np.ndarray]:
    """(index, RGB) of the clip's first frame that shows something: a user colours the first
    picture, not a black leader (Megamind opens on one black frame; keyed there, its first-frame
    run measured nothing)."""
    first = None
    for i, rgb in enumerate(_rgb_frames(clip, frames, size, video_stream)):
        first = (i, rgb) if first is None else first
        if float(rgb.std()) > BLANK_STD:
            return i, rgb
    if first is None:
        raise BadInputError(f"no frames in {clip}")
    return first


def _clip_guides(clip: Path, grey: GreyClip, cfg: JobConfig, modes: Sequence[str],
                 foreign: np.ndarray | None = None) -> dict[str, Any]:
    """The simulated user's guides for a clip, per mode: true colours of its first picture (see
    _first_picture), for its shot (found once: the modes differ only in the guide image); reference:last, the
    clip's last frame as a reference photo; reference:other, `foreign` (another clip's frame)."""
    out: dict[str, Any] = {}
    if "reference:last" in modes:
        last = _last_frame(clip, grey.frames, (grey.width, grey.height), cfg.video_stream)
        out["reference:last"] = [reference_photo(last, "last frame", cfg.working_size)]
    if "reference:other" in modes and foreign is not None:
        out["reference:other"] = [reference_photo(foreign, "another clip", cfg.working_size)]
    modes = [m for m in modes if m not in REFERENCE_MODES]
    if not modes:
        return out
    info = probe(grey.path)
    size = working_size(info.width, info.height, cfg.working_size)
    k, first = _first_picture(clip, grey.frames, (grey.width, grey.height), cfg.video_stream)
    ab = (rgb_to_ab(cv2.resize(first, size, interpolation=cv2.INTER_AREA)) / AB_SCALE).astype(np.float32)
    pts_list = frame_pts(info)
    (shot,) = build_shot_guides(info, pts_list, [(pts_list[k], true_guide(ab, modes[0], seed=0))], size,
                                cfg.scene_cut_threshold)
    return {**{m: [dataclasses.replace(shot, guide=true_guide(ab, m, seed=0))] for m in modes}, **out}


def evaluate_clip(clip: Path, cfg: JobConfig, colorizer: Any, work: Path, max_frames: int = 0,
                  sheet: Path | None = None, guide_modes: Sequence[str] = (),
                  foreign: np.ndarray | None = None) -> dict[str, Any]:
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
    for j, (mode, guides) in enumerate(_clip_guides(clip, grey, cfg, guide_modes, foreign).items()):
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
                   seed: int = 0, reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A colour photo through the video path: Y' (BT.601) stored as 8-bit limited range, the
    model at the working size, chroma composed with the original luma as the pipeline does
    (4:4:4). Returns (grey RGB, colorized RGB), uint8. `guide_mode`: points:N from the truth, or
    reference:* with `reference` (an RGB photo) matched by features as `--reference` does."""
    h, w = rgb.shape[:2]
    y_code = np.round(16.0 + 219.0 * rgb_to_luma(rgb.astype(np.float32) / 255.0, "bt601")).astype(np.uint8)
    yn = normalize_y(y_code, 8, False)
    size = working_size(w, h, cfg.working_size)
    small = normalize_y(cv2.resize(y_code, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR),
                        8, False)
    guide = None
    if guide_mode.startswith("reference:") and reference is not None:
        ref = reference_photo(reference, guide_mode, cfg.working_size)
        feats, pad = colorizer.features(small[None], pad_to=1)
        guide = carry(feats[0], pad, reference_of(colorizer, ref.grey, ref.guide), size, strict=True)[None]
    elif guide_mode:
        ab_true = rgb_to_ab(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)) / AB_SCALE
        guide = true_guide(ab_true.astype(np.float32), guide_mode, seed)[None]
    ab = colorizer.predict(small[None], pad_to=1, guide=guide, second_scale=cfg.second_scale)[0]
    ab = apply_saturation(ab, cfg.saturation, None if guide is None else guide[0, ..., 2])
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
    files = list_images([folder])
    if not files:
        raise BadInputError(f"no photos (webp, jpg, png, bmp) in {folder}")
    modes = [m for m in guide_modes if m.startswith("points:") or m in ("reference:crop", "reference:other")]
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
            ref = None
            if m == "reference:crop":
                ref = crop_view(orig, seed=i)
            elif m == "reference:other":  # the next photo of the folder: something else entirely
                other = cv2.imread(str(files[(i + 1) % len(files)]), cv2.IMREAD_COLOR)
                ref = None if other is None else np.ascontiguousarray(other[..., ::-1])
            _, gcol = colorize_photo(orig, cfg, colorizer, m, seed=i, reference=ref)
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
    video_inputs = [c for c in inputs if not c.is_dir()]
    with tempfile.TemporaryDirectory(prefix="vidcolor-eval-") as tmp:
        for i, (clip, name) in enumerate(zip(inputs, _unique_names(inputs), strict=True)):
            foreign = None
            if "reference:other" in guide_modes and not clip.is_dir() and len(video_inputs) > 1:
                # A frame of another clip: something else entirely, for the gate.
                other = video_inputs[(video_inputs.index(clip) + 1) % len(video_inputs)]
                foreign = _other_frame(other, cfg.video_stream)
            sheet = report_dir / f"{name}_sheet.png" if report_dir is not None else None
            if clip.is_dir():
                r = evaluate_photos(clip, cfg, colorizer, sheet, guide_modes)
                photo_results.append(r)
            else:
                r = evaluate_clip(clip, cfg, colorizer, Path(tmp) / str(i), max_frames, sheet, guide_modes, foreign)
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
                "with the true colours: first-frame = the clip's first picture (a black leader frame skipped),",
                "points:N = N random true-colour points on it (clips) or the photo. Reference modes pass a",
                "colour photo as `--reference` does: reference:last = the clip's last frame, reference:crop =",
                "a mirrored crop of 70 % of the photo, reference:other = something else (a frame of the next",
                "clip, the next photo).",
                "",
                *(f"![{r['clip']}]({r['sheet']})" for r in [*results, *photo_results] if "sheet" in r),
                "",
            ]
            (report_dir / "report.md").write_text("\n".join(md))
        except OSError as err:
            raise OutputError(f"cannot write the report in {report_dir}: {err.strerror or err}") from err
        log.info("report written to %s", report_dir)
    return table
