"""Carrying a keyframe's colours through its shot, two ways, measured without the network: each
frame matched to the keyframe directly (what vidcolor does) or by flow chained frame to frame
(issue 12's other option). The simulated user gives the first frame of each dev clip in its
true colours; its first shot is measured.

    python benchmarks/guide_propagation.py ../shared/data/eval/* [--out benchmarks/guide_propagation.json]

Both ways use the same gate (the keyframe's luma, carried the same way, against the frame's own
luma) and the same half-life, so only the mapping differs. Per clip and way: coverage (mean
confidence), the confidence-weighted ab error of the carried colours (Lab units), and the ab
error of the guide alone as a picture (uncovered pixels grey; what a guide adds over nothing),
over the whole shot and over its last quarter, where chained flow drifts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import av
import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from vidcolor.color import AB_SCALE, rgb_to_ab  # noqa: E402
from vidcolor.config import JobConfig  # noqa: E402
from vidcolor.evaluate import true_guide  # noqa: E402
from vidcolor.guide import GUIDE_TOL, HALF_LIFE_S, ShotGuide, frame_guide, shot_frames, upright  # noqa: E402
from vidcolor.pipeline import working_size  # noqa: E402
from vidcolor.temporal import backward_warp, flow_to_previous, new_flow  # noqa: E402
from vidcolor.video import frame_pts, probe  # noqa: E402

log = logging.getLogger("bench")


def first_shot(clip: Path, cfg: JobConfig) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """[(seconds, grey, true ab)] of the clip's first shot, at the working size."""
    info = probe(clip)
    size = working_size(info.width, info.height, cfg.working_size)
    pts_list = frame_pts(info)
    out = []
    with av.open(str(clip)) as c:
        rgbs = (f.to_ndarray(format="rgb24") for f in c.decode(video=0))
        for (pts, _, grey, starts), rgb in zip(shot_frames(info, pts_list, pts_list[0], size,
                                                           cfg.scene_cut_threshold), rgbs):
            if starts and out:
                break
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
            out.append(((pts - pts_list[0]) * float(info.time_base), upright(grey, info), rgb_to_ab(small)))
    return out


def chained(key: ShotGuide, frames: list[tuple[float, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """The keyframe's guide carried by flow chained frame to frame: a map of keyframe coordinates
    for each frame, advanced by each pair's flow; then the direct way's gate and half-life."""
    h, w = key.grey.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    where = np.dstack([gx, gy])  # keyframe coordinates of each pixel of the previous frame
    dis = new_flow()
    out = [key.guide]
    prev = frames[0][1]
    for seconds, grey, _ in frames[1:]:
        where = backward_warp(where, flow_to_previous(grey, prev, dis))
        prev = grey
        carried = cv2.remap(key.grey, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = cv2.GaussianBlur(np.abs(grey - carried), (0, 0), 1.0)
        weight = np.clip(1.0 - err / GUIDE_TOL, 0.0, 1.0) * 0.5 ** (seconds / HALF_LIFE_S)
        guide = cv2.remap(key.guide, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out.append(guide * weight[..., None])
    return out


def scores(guides: list[np.ndarray], frames: list[tuple[float, np.ndarray, np.ndarray]]) -> dict[str, float]:
    def one(part: slice) -> dict[str, float]:
        cov, err, alone = [], [], []
        for g, (_, _, ab) in zip(guides[part], frames[part]):
            c = g[..., 2]
            carried = g[..., :2] / np.maximum(c, 1e-6)[..., None]
            sq = ((carried - ab) ** 2).sum(-1)
            cov.append(float(c.mean()))
            if c.sum() > 0:
                err.append(float(np.sqrt((c * sq).sum() / c.sum())) * AB_SCALE)
            alone.append(float(np.sqrt(((g[..., :2] - ab) ** 2).sum(-1).mean())) * AB_SCALE)
        return {"coverage": float(np.mean(cov)), "ab_error": float(np.mean(err)) if err else float("nan"),
                "guide_alone_error": float(np.mean(alone))}

    n = len(guides)
    return {"all": one(slice(1, n)), "last_quarter": one(slice(max(1, n - n // 4), n))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=HERE / "guide_propagation.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = JobConfig()
    rows = {}
    for clip in args.clips:
        frames = first_shot(clip, cfg)
        if len(frames) < 2:
            log.info("%s: first shot is %d frame(s), skipped", clip.name, len(frames))
            continue
        key = ShotGuide(0, None, frames[0][1], true_guide(frames[0][2].astype(np.float32), "first-frame", 0), 0)
        dis = new_flow()
        direct = [frame_guide(key, grey, i, seconds, dis)[0] for i, (seconds, grey, _) in enumerate(frames)]
        rows[clip.stem] = {"frames": len(frames), "seconds": frames[-1][0],
                           "direct": scores(direct, frames), "chained": scores(chained(key, frames), frames)}
        r = rows[clip.stem]
        log.info("%-18s %4d frames  coverage direct %.2f chained %.2f  ab error %.1f / %.1f  alone %.1f / %.1f",
                 clip.stem, len(frames), r["direct"]["all"]["coverage"], r["chained"]["all"]["coverage"],
                 r["direct"]["all"]["ab_error"], r["chained"]["all"]["ab_error"],
                 r["direct"]["all"]["guide_alone_error"], r["chained"]["all"]["guide_alone_error"])
    mean = {way: {part: {k: float(np.nanmean([r[way][part][k] for r in rows.values()]))
                         for k in ("coverage", "ab_error", "guide_alone_error")}
                  for part in ("all", "last_quarter")} for way in ("direct", "chained")}
    for part in ("all", "last_quarter"):
        print(f"mean of {len(rows)} ({part}): " + ", ".join(
            f"{way}: coverage {mean[way][part]['coverage']:.3f}, ab error {mean[way][part]['ab_error']:.2f}, "
            f"guide alone {mean[way][part]['guide_alone_error']:.2f}" for way in ("direct", "chained")))
    args.out.write_text(json.dumps({"working_size": cfg.working_size, "guide_tol": GUIDE_TOL,
                                    "half_life_s": HALF_LIFE_S, "clips": rows, "mean": mean}, indent=2) + "\n")


if __name__ == "__main__":
    main()
