"""Colour guides: a hand-coloured keyframe, or a few colour points, that a whole shot follows.

The generator takes the guide as extra input (Zhang et al. 2017): ab of the hinted pixels times
a confidence, and the confidence. A guide belongs to one shot, from its keyframe to the next
cut. Every frame of the shot is matched to the keyframe directly (optical flow from the frame
to the keyframe, on the small grey frames), and the keyframe's colours are warped onto it with
a confidence that falls with the warp's luma error and with the time since the keyframe.
Matching each frame to the keyframe, rather than chaining flow frame to frame, makes a frame's
guide independent of where its chunk starts: chunked, resumed and Ray runs give the same frames.

Sources: a folder written by `vidcolor keyframes` (grey PNGs named by time; the user colours
some; pixels left grey are no hint), or a TOML file of points (time or frame, x, y, colour).
Reference photos (`--reference`) are guides for the whole film: every frame is matched to them
by what things are (match.py), not by flow. A keyframe is such a reference, too, for the frames
of the shots around it that no keyframe covers (shot / reverse shot, a cutaway and back): they
take its colour where they match it, strictly gated like a reference photo.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .color import AB_SCALE, rgb_to_ab, rgb_to_luma, small_grey, working_size
from .errors import BadInputError
from .plan import Chunk
from .temporal import backward_warp, flow_to_previous, is_cut, new_flow
from .video import SourceInfo, decode_chunk, read_chunk

log = logging.getLogger(__name__)

# Luma error (0..1) of the warped keyframe at which its colour stops counting (confidence falls
# linearly to 0 there). Measured with the network, first 300 frames of each dev clip's first
# shot, true first frame as guide, ab error (Lab units; no guide 18.1): 0.06: 6.82, 0.1: 6.50,
# 0.15: 6.46, 0.25: 6.56. 0.1: nearly all the gain, and less of a mis-warp's wrong colour.
GUIDE_TOL = 0.1
# A guide's confidence halves every this many seconds after its keyframe. The luma-match gate
# already drops what moved away; a short half-life threw away good colour on long static shots
# (first-frame guide on vtest, 80 s in one shot: +3.0 dB over no guide at 4 s, +8.0 dB at 30 s).
HALF_LIFE_S = 30.0
NEUTRAL_CHROMA = 6.0  # ab units: keyframe pixels with less chroma than this were "left grey"
POINT_RADIUS = 2  # px at working resolution: a point hint is a (2r+1)^2 patch
SCAN_WINDOW = 96  # frames read at a time while looking for a shot's end
KEYFRAME_NAME = re.compile(r"^t(\d+(?:\.\d+)?)\.png$")
AUTO_SUFFIX = ".auto.png"
REFERENCE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
# A frame no keyframe covers is matched to this many keyframes nearest in time (the shots of the
# same scene; a film keyed shot by shot has hundreds, and matching all would cost each frame).
NEAR_KEYFRAMES = 4
# follow_keyframe: the window (px at the working size) over which hinted pixels are counted; a
# 5x5 point hint covers 25/81 of it, a painted area all of it.
FOLLOW_WINDOW = 9


@dataclass(frozen=True)
class ShotGuide:
    """A colour guide for one shot, at the working resolution, upright."""

    pts: int  # the keyframe
    end_pts: int | None  # the first frame of the next shot (or next keyframe); None: the film's end
    grey: np.ndarray  # keyframe luma [0, 1], HxW float32
    guide: np.ndarray  # HxWx3 float32: a * conf, b * conf (ab / AB_SCALE), conf in [0, 1]
    # The first frame the guide colours: its shot's first frame when the keyframe is mid-shot
    # (a hint at 12.5 s colours the shot from its cut on), else the keyframe (see shot_start).
    start_pts: int

    def covers(self, pts: int) -> bool:
        return pts >= self.start_pts and (self.end_pts is None or pts < self.end_pts)


@dataclass(frozen=True)
class ReferencePhoto:
    """A colour photograph of a similar scene (`--reference`) at the working size: it colours
    every frame whose content matches it in the encoder's features (match.py), gated by the
    similarity: no match, no colour."""

    name: str
    grey: np.ndarray  # luma [0, 1], HxW float32, short side = the working size
    guide: np.ndarray  # HxWx3 float32: a * conf, b * conf, conf (1 everywhere: every pixel is a hint)


Guide = ShotGuide | ReferencePhoto


def chunk_guides(guides: Sequence[Guide], chunk: Chunk) -> tuple[Guide, ...]:
    """The guides a chunk needs (warm-up included): the shots that overlap it (a chunk that
    starts mid-shot gets its shot's guide), every reference photo, and the keyframes nearest to
    its frames (near_keyframes: those in it and the NEAR_KEYFRAMES on either side)."""
    # A frame's nearest keyframes before the chunk are among those nearest to its first frame,
    # those after it among those nearest to its end (one more each: ties).
    near = {id(g) for g in near_keyframes(guides, chunk.warmup_pts, NEAR_KEYFRAMES + 1)}
    if chunk.end_pts is not None:
        near |= {id(g) for g in near_keyframes(guides, chunk.end_pts, NEAR_KEYFRAMES + 1)}
    return tuple(g for g in guides if isinstance(g, ReferencePhoto) or id(g) in near or (
        (chunk.end_pts is None or g.start_pts < chunk.end_pts) and (g.end_pts is None or g.end_pts > chunk.warmup_pts)))


def near_keyframes(guides: Sequence[Guide], pts: int, n: int = NEAR_KEYFRAMES) -> list[ShotGuide]:
    """The n keyframes nearest to pts in time (ties: the earlier), in time order."""
    shots = [g for g in guides if isinstance(g, ShotGuide)]
    return sorted(sorted(shots, key=lambda g: (abs(g.pts - pts), g.pts))[:n], key=lambda g: g.pts)


def active_guide(guides: Sequence[Guide], pts: int) -> ShotGuide | None:
    """The keyframe guide covering pts (shots and keyframes' stretches do not overlap; if they
    ever did, the latest keyframe wins)."""
    best = None
    for g in guides:
        if isinstance(g, ShotGuide) and g.covers(pts) and (best is None or g.pts > best.pts):
            best = g
    return best


def guides_hash(guides: Sequence[Guide]) -> str:
    """Content hash for the job fingerprint: a changed guide or reference must not resume an
    old render."""
    h = hashlib.sha256()
    for g in guides:
        if isinstance(g, ShotGuide):
            h.update(f"{g.start_pts}:{g.pts}:{g.end_pts}:".encode())
        else:
            h.update(f"reference:{g.name}:".encode())
            h.update(np.ascontiguousarray(g.grey, np.float32).tobytes())
        h.update(np.ascontiguousarray(g.guide, np.float32).tobytes())
    return h.hexdigest()


def frame_guide(g: ShotGuide, grey: np.ndarray, pts: int, seconds: float,
                dis: cv2.DISOpticalFlow | None = None,
                matched: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The guide of one frame of g's shot: the keyframe's colours warped onto it. `seconds`:
    time from the keyframe (negative before it: the flow runs either way). `matched`: the
    keyframe's colours carried by feature matching (match.carry), which fill in where the flow
    is unsure: whatever moved, turned or came back into view. Returns (guide, carried): the
    network's guide, and the part the flow carried (same layout), which the output then
    follows pixel for pixel (follow_keyframe)."""
    decay = 0.5 ** (abs(seconds) / HALF_LIFE_S)
    if pts == g.pts:
        return g.guide, g.guide
    flow = flow_to_previous(grey, g.grey, dis)  # from this frame into the keyframe
    err = cv2.GaussianBlur(np.abs(grey - backward_warp(g.grey, flow)), (0, 0), 1.0)
    gate = np.clip(1.0 - err / GUIDE_TOL, 0.0, 1.0)
    # The guide is premultiplied (ab * conf, conf), so bilinear warping keeps ab right at the
    # edges of hinted areas, and the two sources add up by confidence.
    carried = backward_warp(g.guide, flow) * gate[..., None]
    out = carried.copy()
    if matched is not None:
        out += (1.0 - out[..., 2:3]) * matched
    return out * decay, carried * decay


def follow_keyframe(ab: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """The network's ab (HxWx2) pulled to the keyframe colours the flow carried (HxWx3,
    premultiplied, from frame_guide), by their confidence times the share of hinted pixels
    around each one (FOLLOW_WINDOW): the keyframe comes out as painted, and the frames after it
    keep its colours where the flow is sure, rather than the network's softened copy of them.
    Isolated points (10 hints) are left to the network and spread_hints, which reach beyond them.
    Measured (shipped generator, dev clips, the true first picture as keyframe): +1.2 dB, every
    clip gaining (MODEL_CARD.md, session 9)."""
    conf = carried[..., 2]
    if not conf.any():
        return ab
    density = cv2.blur((conf > 0).astype(np.float32), (FOLLOW_WINDOW, FOLLOW_WINDOW))
    return (ab * (1.0 - conf * density)[..., None] + carried[..., :2] * density[..., None]).astype(ab.dtype)


def guide_from_colour_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A coloured keyframe (HxWx3 uint8 RGB, full size) -> guide at `size` (w, h). Pixels with
    less chroma than NEUTRAL_CHROMA are no hint; the rest give their ab at confidence 1."""
    ab = rgb_to_ab(rgb.astype(np.float32) / 255.0)
    conf = (np.hypot(ab[..., 0], ab[..., 1]) * AB_SCALE >= NEUTRAL_CHROMA).astype(np.float32)
    full = np.concatenate([ab * conf[..., None], conf[..., None]], axis=-1)
    return cv2.resize(full, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def guide_from_points(points: Sequence[tuple[float, float, float, float]], size: tuple[int, int]) -> np.ndarray:
    """Points (x, y as fractions of the frame, a, b / AB_SCALE) -> guide at `size` (w, h)."""
    w, h = size
    guide = np.zeros((h, w, 3), np.float32)
    r = POINT_RADIUS
    for fx, fy, a, b in points:
        x, y = min(w - 1, int(fx * w)), min(h - 1, int(fy * h))
        guide[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = (a, b, 1.0)
    return guide


def true_colour_points(ab: np.ndarray, n: int, seed: int) -> list[tuple[float, float, float, float]]:
    """n random points of a true ab image (HxWx2), each with the mean colour of its patch: a
    simulated user (for `vidcolor eval --guide points:N`)."""
    rng = np.random.default_rng(seed)
    h, w = ab.shape[:2]
    r = POINT_RADIUS
    out = []
    for y, x in zip(rng.integers(0, h, n), rng.integers(0, w, n)):
        a, b = ab[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].reshape(-1, 2).mean(0)
        out.append(((x + 0.5) / w, (y + 0.5) / h, float(a), float(b)))
    return out


# --- reading the film ---------------------------------------------------------------------


def luma_frames(info: SourceInfo, pts_list: Sequence[int], start_pts: int,
                deinterlace: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, Y plane) from start_pts on, read a window of frames at a time (never the whole
    film's packets at once), decoded exactly as the pipeline decodes them."""
    i = bisect.bisect_left(pts_list, start_pts)
    while i < len(pts_list):
        j = min(i + SCAN_WINDOW, len(pts_list))
        end = pts_list[j] if j < len(pts_list) else None
        src = read_chunk(info, pts_list[max(0, i - 1)] if deinterlace else pts_list[i], end, from_start=i == 0)
        yield from decode_chunk(src, info, pts_list[i], end, deinterlace=deinterlace)
        i = j


def upright(a: np.ndarray, info: SourceInfo) -> np.ndarray:
    """The picture as displayed (rotation applied): what the model sees and keyframes show."""
    k = (info.rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(a, k)) if k else a


def shot_frames(info: SourceInfo, pts_list: Sequence[int], start_pts: int, work_size: tuple[int, int],
                cut_threshold: float, deinterlace: bool = False
                ) -> Iterator[tuple[int, np.ndarray, np.ndarray, bool]]:
    """(pts, Y plane, small grey, starts a shot) from start_pts on: the smoother's cut test on
    each pair of frames (the first frame starts a shot)."""
    dis = new_flow()
    prev = None
    for pts, y in luma_frames(info, pts_list, start_pts, deinterlace):
        grey = small_grey(y, work_size, info)
        yield pts, y, grey, prev is None or is_cut(grey, prev, cut_threshold, dis)
        prev = grey


def shot_start(info: SourceInfo, pts_list: Sequence[int], kpts: int, prev_key: int | None,
               work_size: tuple[int, int], cut_threshold: float, deinterlace: bool = False) -> int:
    """The first frame a keyframe's guide colours: the last cut at or before kpts (looking back
    no further than the previous keyframe), the film's first frame if the first shot has no cut
    before kpts, or kpts itself when the previous keyframe shares the shot (its guide covers the
    frames between). The pair just before kpts is tested first: keyframes written by `vidcolor
    keyframes` start their shot, so that one pair usually decides."""
    k = bisect.bisect_left(pts_list, kpts)
    lo = 0 if prev_key is None else bisect.bisect_left(pts_list, prev_key)
    hi, window = k, 1
    while hi > lo:
        j = max(lo, hi - window)
        frames = shot_frames(info, pts_list, pts_list[j], work_size, cut_threshold, deinterlace)
        cuts = [p for n, (p, _, _, starts) in zip(range(hi - j + 1), frames) if starts and n > 0]
        if cuts:
            return cuts[-1]
        hi, window = j, SCAN_WINDOW
    return pts_list[0] if prev_key is None and pts_list else kpts


def build_shot_guides(info: SourceInfo, pts_list: Sequence[int], keyed: Sequence[tuple[int, np.ndarray]],
                      work_size: tuple[int, int], cut_threshold: float, deinterlace: bool = False
                      ) -> list[ShotGuide]:
    """Keyframe pts + guide (upright, working size) -> ShotGuides: reads the keyframe's luma,
    finds the shot's start (see shot_start) and scans forward to its end (the next cut, or the
    next keyframe)."""
    keyed = sorted(keyed, key=lambda kv: kv[0])
    out = []
    for n, (kpts, guide) in enumerate(keyed):
        next_key = keyed[n + 1][0] if n + 1 < len(keyed) else None
        key_grey = end = None
        for p, _, grey, starts in shot_frames(info, pts_list, kpts, work_size, cut_threshold, deinterlace):
            if key_grey is None:
                key_grey = upright(grey, info)
            elif starts or (next_key is not None and p >= next_key):
                end = p
                break
        if key_grey is None:
            raise BadInputError(f"guide: no frame decodes at the keyframe at pts {kpts}")
        start = shot_start(info, pts_list, kpts, keyed[n - 1][0] if n else None, work_size, cut_threshold,
                           deinterlace)
        out.append(ShotGuide(kpts, end, key_grey, guide, start))
    return out


# --- guide files ----------------------------------------------------------------------------


def keyframe_name(seconds: float) -> str:
    return f"t{seconds:010.3f}.png"


def _frame_at(pts_list: Sequence[int], info: SourceInfo, seconds: float, what: str) -> int:
    first = pts_list[0]
    duration = (pts_list[-1] - first) * float(info.time_base)
    frame_s = float(1 / info.rate) if info.rate else 0.1
    if not -frame_s / 2 <= seconds <= duration + frame_s / 2:
        raise BadInputError(f"guide: {what} is at {seconds:.3f} s, outside the film (0 to {duration:.3f} s)")
    target = first + seconds / float(info.time_base)
    i = bisect.bisect_left(pts_list, target)
    return min(pts_list[max(0, i - 1) : i + 1], key=lambda p: abs(p - target))


def read_guide(path: Path, info: SourceInfo, pts_list: Sequence[int], work_size: tuple[int, int]
               ) -> list[tuple[int, np.ndarray]]:
    """A guide folder or hints file -> (keyframe pts, guide) pairs, checked against the film
    (its frame timestamps `pts_list`) before any work starts. Any mismatch is a one-line BadInputError."""
    if not pts_list:
        raise BadInputError(f"no video frames in {info.path}")
    w, h = info.width, info.height
    if (info.rotation // 90) % 2:
        w, h = h, w
    uw, uh = (work_size[1], work_size[0]) if (info.rotation // 90) % 2 else work_size
    if path.is_dir():
        return _read_keyframe_folder(path, info, pts_list, (w, h), (uw, uh))
    if path.is_file() and path.suffix.lower() == ".toml":
        return _read_hints(path, info, pts_list, (w, h), (uw, uh))
    if not path.exists():
        raise BadInputError(f"guide not found: {path}")
    raise BadInputError(f"guide {path}: expected a folder of keyframes or a .toml hints file")


def _read_keyframe_folder(folder: Path, info: SourceInfo, pts_list: Sequence[int], film: tuple[int, int],
                          work: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    keyed: dict[int, np.ndarray] = {}
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png")
    for name in names:
        if name.endswith(AUTO_SUFFIX):
            continue  # the model's own colour, written beside each keyframe as a starting point
        m = KEYFRAME_NAME.match(name)
        if not m:
            raise BadInputError(f"guide: {folder / name} is not named like a keyframe (t<seconds>.png, "
                                "as `vidcolor keyframes` writes them)")
        img = cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise BadInputError(f"guide: cannot read the image {folder / name}")
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise BadInputError(f"guide: {folder / name} is not a colour image (save it as RGB)")
        if (img.shape[1], img.shape[0]) != film:
            raise BadInputError(f"guide: {folder / name} is {img.shape[1]}x{img.shape[0]}, the film is "
                                f"{film[0]}x{film[1]}")
        if img.dtype != np.uint8:
            img = (img.astype(np.float32) / np.iinfo(img.dtype).max * 255).round().astype(np.uint8)
        rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
        guide = guide_from_colour_image(rgb, work)
        pts = _frame_at(pts_list, info, float(m.group(1)), name)
        if guide[..., 2].max() <= 0:
            log.info("guide: %s has no colour yet; its shot stays automatic", name)
            continue
        keyed[pts] = guide
    if not names:
        raise BadInputError(f"guide: no keyframe images (t<seconds>.png) in {folder}")
    return sorted(keyed.items())


def _read_hints(path: Path, info: SourceInfo, pts_list: Sequence[int], film: tuple[int, int],
                work: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BadInputError(f"guide: cannot read hints file {path}: {err}") from err
    hints = doc.get("hint")
    if not isinstance(hints, list) or not hints:
        raise BadInputError(f"guide: {path} has no [[hint]] entries (time or frame, x, y, color)")
    by_frame: dict[int, list[tuple[float, float, float, float]]] = {}
    for i, hint in enumerate(hints, 1):
        where = f"{path} hint {i}"
        if not isinstance(hint, dict):
            raise BadInputError(f"guide: {where} is not a table")
        if ("time" in hint) == ("frame" in hint):
            raise BadInputError(f"guide: {where} needs exactly one of time (seconds) or frame (index)")
        if "frame" in hint:
            idx = hint["frame"]
            if not isinstance(idx, int) or not 0 <= idx < len(pts_list):
                raise BadInputError(f"guide: {where}: frame {idx!r} is outside the film (0..{len(pts_list) - 1})")
            pts = pts_list[idx]
        else:
            t = hint["time"]
            if not isinstance(t, (int, float)):
                raise BadInputError(f"guide: {where}: time must be a number of seconds")
            pts = _frame_at(pts_list, info, float(t), where)
        x, y = hint.get("x"), hint.get("y")
        if not all(isinstance(v, (int, float)) for v in (x, y)) or not (0 <= x < film[0] and 0 <= y < film[1]):
            raise BadInputError(f"guide: {where}: x, y ({x!r}, {y!r}) must lie in the {film[0]}x{film[1]} frame")
        rgb = _parse_colour(hint.get("color"), where)
        ab = rgb_to_ab(rgb[None, None])[0, 0]
        by_frame.setdefault(pts, []).append(((x + 0.5) / film[0], (y + 0.5) / film[1], float(ab[0]), float(ab[1])))
    return sorted((pts, guide_from_points(pts_hints, work)) for pts, pts_hints in by_frame.items())


REFERENCE_MIN_SIDE = 64  # px: a smaller photo shows too little to match anything
REFERENCE_MIN_COLOUR = 0.05  # share of a reference's pixels that must carry colour


def read_references(path: Path, short_side: int) -> list[ReferencePhoto]:
    """`--reference`: one colour photo or a folder of them (PNG, JPEG, WebP, BMP; any size),
    scaled to the working size. Unreadable, grey or tiny photos are a one-line BadInputError."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in REFERENCE_EXTS)
        if not files:
            raise BadInputError(f"reference: no photos (png, jpg, webp, bmp) in {path}")
    elif path.is_file():
        files = [path]
    else:
        raise BadInputError(f"reference not found: {path}")
    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise BadInputError(f"reference: cannot read the image {f}")
        h, w = img.shape[:2]
        if min(h, w) < REFERENCE_MIN_SIDE:
            raise BadInputError(f"reference: {f} is {w}x{h}; a reference needs at least {REFERENCE_MIN_SIDE} px "
                                "on its short side")
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if guide_from_colour_image(rgb, (64, 64))[..., 2].mean() < REFERENCE_MIN_COLOUR:
            raise BadInputError(f"reference: {f} has no colour (a black-and-white photo cannot colour the film)")
        out.append(reference_photo(rgb, f.name, short_side))
    return out


def reference_photo(rgb: np.ndarray, name: str, short_side: int) -> ReferencePhoto:
    """An RGB uint8 photo (any size) as a reference at the working size. Every pixel is a hint,
    grey ones too: in a photo, a grey wall says the wall is grey (in a hand-coloured keyframe,
    grey means "left alone")."""
    h, w = rgb.shape[:2]
    size = working_size(w, h, short_side)
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR)
    ab = rgb_to_ab(small.astype(np.float32) / 255.0)
    guide = np.concatenate([ab, np.ones((*ab.shape[:2], 1), np.float32)], -1).astype(np.float32)
    return ReferencePhoto(name, rgb_to_luma(small.astype(np.float32) / 255.0), guide)


def _parse_colour(value: object, where: str) -> np.ndarray:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return np.array([int(value[i : i + 2], 16) for i in (1, 3, 5)], np.float32) / 255.0
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return np.array(value, np.float32) / 255.0
    raise BadInputError(f"guide: {where}: color must be \"#rrggbb\" or [r, g, b] (0-255), got {value!r}")
