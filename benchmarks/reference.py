"""The frame-by-frame reference pipeline, the way colorization tools work today (DeOldify's
video path and its many wrappers): extract every frame to a PNG file, colorize the PNGs one at
a time, encode the PNGs again, then mux the original audio back in a separate step.

It uses the same model, precision, working resolution and encoder settings as vidcolor, so the
speed difference comes from the pipeline alone: batch 1, RGB PNG round trips through the disk,
full-resolution Lab->RGB composition, four sequential passes, no overlap between stages.
"""

from __future__ import annotations

import shutil
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from vidcolor.color import lab_to_rgb, working_size
from vidcolor.config import JobConfig
from vidcolor.model import Colorizer


def run_reference(src: Path, work: Path, cfg: JobConfig, colorizer: Colorizer) -> dict[str, Any]:
    """Colorize `src` frame by frame through PNG files under `work`. Returns stage times (s),
    frame count, per-frame model times (batch 1) and the output path."""
    frames_dir, colour_dir = work / "ref_frames", work / "ref_colour"
    for d in (frames_dir, colour_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    stages: dict[str, float] = {}

    # 1. extract: every frame as an RGB PNG (what `ffmpeg -i in.mp4 frames/%06d.png` writes)
    t0 = time.perf_counter()
    with av.open(str(src)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        rate = Fraction(vs.average_rate or vs.guessed_rate or 25)
        width, height = vs.codec_context.width, vs.codec_context.height
        n = 0
        for frame in c.decode(vs):
            cv2.imwrite(str(frames_dir / f"{n:06d}.png"), frame.to_ndarray(format="bgr24"))
            n += 1
    stages["extract"] = time.perf_counter() - t0

    # 2. colorize one PNG at a time: read, grey, model (batch 1), ab up to full size, Lab->RGB, write
    t0 = time.perf_counter()
    size = working_size(width, height, cfg.working_size)
    model_s: list[float] = []
    for p in sorted(frames_dir.glob("*.png")):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) * (1.0 / 255.0)
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        tm = time.perf_counter()
        ab = colorizer.predict(small[None])[0]
        model_s.append(time.perf_counter() - tm)
        ab_full = cv2.resize(ab, (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = lab_to_rgb(grey, ab_full)
        out8 = (rgb * 255.0 + 0.5).astype(np.uint8)
        cv2.imwrite(str(colour_dir / p.name), cv2.cvtColor(out8, cv2.COLOR_RGB2BGR))
    stages["colorize"] = time.perf_counter() - t0

    # 3. encode the PNG sequence (same encoder, crf and preset as vidcolor)
    t0 = time.perf_counter()
    video_only = work / "ref_video.mp4"
    tb = Fraction(1, 1) / rate
    with av.open(str(video_only), "w") as out:
        s = out.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = tb
        s.codec_context.time_base = tb
        s.codec_context.options = {"crf": str(cfg.crf), "preset": cfg.preset}
        for i, p in enumerate(sorted(colour_dir.glob("*.png"))):
            rgb = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            f.time_base = tb
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    stages["encode"] = time.perf_counter() - t0

    # 4. mux the original audio back (stream copy), as a separate pass
    t0 = time.perf_counter()
    final = work / "ref_out.mp4"
    with av.open(str(video_only)) as vin, av.open(str(src)) as ain, av.open(str(final), "w") as out:
        vout = out.add_stream_from_template(vin.streams.video[0])
        amap = {s.index: out.add_stream_from_template(s) for s in ain.streams.audio}
        for pkt in vin.demux(vin.streams.video[0]):
            if pkt.size:
                pkt.stream = vout
                out.mux(pkt)
        if amap:
            for pkt in ain.demux(list(ain.streams.audio)):
                if pkt.size:
                    pkt.stream = amap[pkt.stream.index]
                    out.mux(pkt)
    stages["mux"] = time.perf_counter() - t0

    disk = sum(f.stat().st_size for d in (frames_dir, colour_dir) for f in d.iterdir())
    shutil.rmtree(frames_dir, ignore_errors=True)
    shutil.rmtree(colour_dir, ignore_errors=True)
    return {"frames": n, "stages": stages, "seconds": sum(stages.values()), "model_s": model_s,
            "png_bytes": disk, "output": str(final)}
