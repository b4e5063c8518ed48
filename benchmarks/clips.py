"""Input clips for the benchmarks: a trimmed (greyed) copy of a real clip, and generated grey
clips at a chosen size and length.

Generated clips look like scanned B&W film as far as the codecs care: a textured background
that pans, a few moving shapes, and film grain, stored as yuv420p with neutral chroma (how B&W
film is usually delivered), with an AAC stereo track so the audio copy path is exercised.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vidcolor.video import read_plane, write_plane

log = logging.getLogger("bench")

AUDIO_RATE = 48000


def _video_stream(out: av.container.OutputContainer, width: int, height: int, rate: Fraction,
                  time_base: Fraction, crf: int, preset: str, gop: int) -> av.VideoStream:
    vs = out.add_stream("libx264", rate=rate)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.time_base = time_base
    vs.codec_context.time_base = time_base
    vs.codec_context.gop_size = gop
    vs.codec_context.options = {"crf": str(crf), "preset": preset, "g": str(gop)}
    return vs


def _grey_frame(y: np.ndarray) -> av.VideoFrame:
    h, w = y.shape
    f = av.VideoFrame(w, h, "yuv420p")
    write_plane(f, 0, y)
    neutral = np.full(((h + 1) // 2, (w + 1) // 2), 128, np.uint8)
    write_plane(f, 1, neutral)
    write_plane(f, 2, neutral)
    return f


class _Tone:
    """A stereo AAC track written in step with the video, so the file is interleaved."""

    def __init__(self, out: av.container.OutputContainer) -> None:
        self.stream = out.add_stream("aac", rate=AUDIO_RATE)
        self.stream.layout = "stereo"
        self.out = out
        self.written = 0
        self.rng = np.random.default_rng(7)

    def until(self, seconds: float) -> None:
        target = int(seconds * AUDIO_RATE)
        fmt = self.stream.codec_context.format.name if self.stream.codec_context.format else "fltp"
        while self.written + 1024 <= target:
            t = (self.written + np.arange(1024)) / AUDIO_RATE
            tone = 0.15 * np.sin(2 * np.pi * 220 * t) + 0.02 * self.rng.standard_normal(1024)
            data = np.stack([tone, tone]).astype(np.float32)
            if not fmt.endswith("p"):
                data = data.T.reshape(1, -1).copy()
            af = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
            af.sample_rate = AUDIO_RATE
            af.pts = self.written
            for p in self.stream.encode(af):
                self.out.mux(p)
            self.written += 1024

    def close(self) -> None:
        for p in self.stream.encode(None):
            self.out.mux(p)


def make_grey_clip(path: Path, width: int, height: int, frames: int, fps: int = 24, *, audio: bool = True,
                   crf: int = 18, preset: str = "veryfast", gop_seconds: float = 5.0, seed: int = 0) -> Path:
    """Write a grey (neutral chroma) H.264 clip with film-like content; returns `path`."""
    rng = np.random.default_rng(seed)
    # Low-frequency texture, mirrored so the pan wraps without a hard edge.
    small = rng.random((max(2, height // 24), max(2, width // 24))).astype(np.float32)
    tex = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(0.2, 0.8, width, dtype=np.float32)[None, :]
    tex = 0.6 * ramp + 0.4 * tex
    bg = np.concatenate([tex, tex[:, ::-1]], axis=1)
    grain = [rng.normal(0.0, 0.02, (height, width)).astype(np.float32) for _ in range(8)]
    step = max(1, width // 320)
    r = max(4, min(width, height) // 10)
    rate = Fraction(fps)
    tb = Fraction(1, fps)
    gop = max(1, round(gop_seconds * fps))
    with av.open(str(path), "w") as out:
        vs = _video_stream(out, width, height, rate, tb, crf, preset, gop)
        tone = _Tone(out) if audio else None
        for i in range(frames):
            off = (i * step) % width
            img = bg[:, off : off + width].copy()
            for k in range(3):  # shapes crossing the frame at different speeds
                cx = int((i * (3 + 2 * k) * step + k * width // 3) % (width + 2 * r)) - r
                cy = int(height * (0.3 + 0.2 * k))
                cv2.circle(img, (cx, cy), r, 0.95 if k % 2 == 0 else 0.08, -1)
            img += grain[i % len(grain)]
            y = np.clip(16.0 + 219.0 * img, 16, 235).astype(np.uint8)
            f = _grey_frame(y)
            f.pts = i
            f.time_base = tb
            for p in vs.encode(f):
                out.mux(p)
            if tone is not None:
                tone.until((i + 1) / fps)
        for p in vs.encode(None):
            out.mux(p)
        if tone is not None:
            tone.close()
    return path


def trimmed_copy(src: Path, dest: Path, max_frames: int, mode: str = "grey", crf: int = 18,
                 preset: str = "veryfast") -> Path:
    """The first `max_frames` frames of `src` (0 = all) with the audio of that span.

    mode "grey": re-encode the luma with neutral chroma as H.264 (a B&W film as users have it;
    the source's colour, if any, is dropped). mode "copy": stream copy of the first packets in
    decode order, original codec kept (a colour source then stays colour)."""
    with av.open(str(src)) as c:
        vin = c.streams.video[0]
        others = [s for s in c.streams if s.type == "audio"]
        with av.open(str(dest), "w") as out:
            amap = {s.index: out.add_stream_from_template(s) for s in others}
            end_s: float | None = None
            if mode == "copy":
                vout = out.add_stream_from_template(vin)
                n = 0
                for p in c.demux(vin):
                    if not p.size:
                        continue
                    if max_frames and n >= max_frames:
                        break
                    if p.pts is not None and p.time_base:
                        t = float((p.pts + (p.duration or 0)) * p.time_base)
                        end_s = t if end_s is None else max(end_s, t)
                    p.stream = vout
                    out.mux(p)
                    n += 1
            else:
                rate = vin.average_rate or vin.guessed_rate or Fraction(25)
                tb = vin.time_base or Fraction(1, 90000)
                cc = vin.codec_context
                vout = _video_stream(out, cc.width, cc.height, Fraction(rate), tb, crf, preset,
                                     max(1, round(5 * float(rate))))
                vin.thread_type = "AUTO"
                n = 0
                for frame in c.decode(vin):
                    if max_frames and n >= max_frames:
                        break
                    if frame.format.name not in ("yuv420p", "yuvj420p"):
                        frame = frame.reformat(format="yuv420p")
                    g = _grey_frame(read_plane(frame, 0))
                    g.pts = frame.pts
                    g.time_base = tb
                    for p in vout.encode(g):
                        out.mux(p)
                    if frame.pts is not None:
                        end_s = float(frame.pts * tb) + 1.0 / float(rate)
                    n += 1
                for p in vout.encode(None):
                    out.mux(p)
            if amap:
                c.seek(0)
                for p in c.demux(others):
                    if not p.size:
                        continue
                    if end_s is not None and p.pts is not None and float(p.pts * p.time_base) >= end_s:
                        continue
                    p.stream = amap[p.stream.index]
                    out.mux(p)
    log.info("input clip: %s (%d frames of %s, %s)", dest.name, n, src.name, mode)
    return dest
