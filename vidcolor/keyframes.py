"""`vidcolor keyframes`: the first frame of every shot, for the user to colour by hand.

Writes `t<seconds>.png` (the frame in grey, RGB, at the film's displayed size) and beside it
`t<seconds>.auto.png` (the model's own colour, a starting point). The user colours any of the
grey ones (a whole frame or a few strokes) and passes the folder to `vidcolor colorize --guide`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .color import lab_to_rgb, normalize_y, working_size
from .config import JobConfig
from .errors import OutputError
from .guide import AUTO_SUFFIX, keyframe_name, shot_frames, upright
from .model import Colorizer
from .video import SourceInfo, frame_pts, probe

log = logging.getLogger(__name__)


def write_keyframes(src: Path, out_dir: Path, cfg: JobConfig, colorizer: Colorizer | None = None) -> list[Path]:
    """Scan `src` for shots (the smoother's cut test) and write each shot's first frame, grey
    and auto-coloured, into `out_dir`. Returns the grey keyframe paths."""
    info = probe(src, cfg.video_stream)
    colorizer = colorizer or Colorizer.for_job(cfg)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {out_dir}: {err.strerror or err}") from err
    pts_list = frame_pts(info)
    size = working_size(info.width, info.height, cfg.working_size)
    written = []
    frames = shot_frames(info, pts_list, pts_list[0] if pts_list else 0, size, cfg.scene_cut_threshold,
                         cfg.deinterlace)
    for pts, y, grey, starts in frames:
        if starts:
            seconds = (pts - pts_list[0]) * float(info.time_base)
            written.append(_write_pair(out_dir / keyframe_name(seconds), y, grey, info, colorizer, cfg.second_scale))
    log.info("%d shot(s): keyframes in %s", len(written), out_dir)
    return written


def _write_pair(path: Path, y: np.ndarray, grey: np.ndarray, info: SourceInfo, colorizer: Colorizer,
                second_scale: float) -> Path:
    yn = upright(normalize_y(y, info.bits, info.full_range), info)
    grey_u8 = np.round(yn * 255).astype(np.uint8)
    ab = colorizer.predict(upright(grey, info)[None], second_scale=second_scale)[0]
    ab = cv2.resize(ab, (yn.shape[1], yn.shape[0]), interpolation=cv2.INTER_LINEAR)
    auto = np.round(lab_to_rgb(yn, ab) * 255).astype(np.uint8)
    auto_path = path.with_name(path.name[: -len(".png")] + AUTO_SUFFIX)
    # Grey as three equal channels: an image editor keeps it a colour image when painted on.
    for p, img in ((path, cv2.merge([grey_u8] * 3)), (auto_path, auto[..., ::-1])):
        if not cv2.imwrite(str(p), img):
            raise OutputError(f"cannot write {p}")
    return path
