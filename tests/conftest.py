"""Shared fixtures: small clips generated with PyAV, and a tiny random generator.

Clips are synthetic but structured (gradients, moving shapes, a scene cut) so smoothing,
chunking and colour checks have something real to act on.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidcolor.config import JobConfig
from vidcolor.model import EffUnetGenerator, GeneratorConfig, UnetGenerator, init_weights, save_generator

torch.set_num_threads(int(os.environ.get("VIDCOLOR_TEST_THREADS", "2")))
# Converted OpenVINO models go to a cache of the test run's own, not the user's (inherited by
# the Ray workers the tests start).
os.environ.setdefault("VIDCOLOR_CACHE_DIR", tempfile.mkdtemp(prefix="vidcolor-test-cache-"))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def scene(i: int, w: int, h: int, cut_at: int | None = None) -> np.ndarray:
    """An RGB frame: a gradient background with a square moving right; a different scene
    (other colours, other layout) from `cut_at` on."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    second = cut_at is not None and i >= cut_at
    if not second:
        r = 40 + 150 * xx / max(w - 1, 1)
        g = 60 + 120 * yy / max(h - 1, 1)
        b = np.full_like(r, 170)
    else:
        r = np.full_like(xx, 200)
        g = 200 - 150 * xx / max(w - 1, 1)
        b = 30 + 60 * yy / max(h - 1, 1)
    img = np.stack([r, g, b], -1)
    s = max(2, min(w, h) // 4)
    x0 = (i * max(1, w // 32)) % max(1, w - s)
    y0 = max(0, h // 2 - s // 2)
    img[y0 : y0 + s, x0 : x0 + s] = (230, 40, 40) if not second else (20, 20, 90)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    width: int = 96,
    height: int = 64,
    frames: int = 24,
    fps: int = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    grey: bool = True,
    audio_tracks: int = 0,
    audio_codec: str = "aac",
    vfr: bool = False,
    cut_at: int | None = None,
    rotation: int = 0,
    gop: int = 12,
    subtitles: bool = False,
    frame_fn: Callable[[int], np.ndarray] | None = None,
) -> Path:
    """Write a test clip. grey=True stores neutral chroma (how B&W film is usually stored).
    `frame_fn(i)` gives frame i as RGB uint8 instead of `scene`."""
    out = av.open(str(path), "w")
    tb = Fraction(1, fps * 100)
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
    vs.time_base = tb
    vs.codec_context.time_base = tb
    if codec in ("libx264", "libx265"):
        vs.codec_context.options = {"crf": "10", "preset": "ultrafast", "g": str(gop), "keyint_min": str(gop),
                                    "sc_threshold": "0"}
        vs.codec_context.gop_size = gop
    elif codec in ("mpeg4", "mjpeg", "ffv1"):
        vs.codec_context.gop_size = gop
    if rotation:
        vs.set_display_rotation(rotation)
    astreams = []
    for k in range(audio_tracks):
        a = out.add_stream(audio_codec, rate=48000)
        a.layout = "stereo" if k == 0 else "mono"
        astreams.append(a)
    pts = 0
    rng = np.random.default_rng(1)
    for i in range(frames):
        rgb = scene(i, width, height, cut_at) if frame_fn is None else frame_fn(i)
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        if grey and not pix_fmt.startswith("gray"):
            # Neutral chroma, luma as an encoder computes it: a real B&W transfer.
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            mid = 128 if "10" not in pix_fmt else 512
            dtype = np.uint8 if "10" not in pix_fmt else np.uint16
            for pi in (1, 2):
                plane = f.planes[pi]
                arr = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // np.dtype(dtype).itemsize)
                arr[:, : plane.width] = mid
        f.pts = pts
        f.time_base = tb
        for p in vs.encode(f):
            out.mux(p)
        step = int(tb.denominator // fps)
        pts += step if not vfr else int(step * (1 + (rng.random() * 1.5 if i % 3 else 0)))
    for p in vs.encode(None):
        out.mux(p)
    for k, a in enumerate(astreams):
        n = int(48000 * frames / fps)
        t = np.arange(n) / 48000.0
        chans = 2 if k == 0 else 1
        samples = (0.2 * np.sin(2 * np.pi * (440 + 110 * k) * t)).astype(np.float32)
        data = np.tile(samples, (chans, 1))
        fmt = a.codec_context.format.name if a.codec_context.format else "fltp"
        for s0 in range(0, n, 1024):
            chunk = np.ascontiguousarray(data[:, s0 : s0 + 1024])
            af = av.AudioFrame.from_ndarray(chunk if fmt.endswith("p") else chunk.T.reshape(1, -1).copy(),
                                            format=fmt, layout=a.layout.name)
            af.sample_rate = 48000
            af.pts = s0
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return path


def decode_all(path: Path, stream: int = 0) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=stream))


def plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    from vidcolor.video import read_plane

    return read_plane(frame, i)


def packets(path: Path, kind: str = "audio") -> list[list[tuple[bytes, int | None]]]:
    """Per stream of `kind`: the (bytes, pts in seconds*1e6) of every non-empty packet."""
    out = []
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        per = {s.index: [] for s in streams}
        if streams:
            for p in c.demux(streams):
                if p.size:
                    t = None if p.pts is None else round(float(p.pts * p.time_base) * 1e6)
                    per[p.stream.index].append((bytes(p), t))
        out = [per[s.index] for s in streams]
    return out


def chunks_done(manifest: Path) -> int:
    """Finished chunks in a job's manifest; 0 while it is missing or being replaced."""
    import json

    try:
        return len(json.loads(manifest.read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random U-Net (pix2pix init) with a tint, so colour is clearly non-neutral.
    (A random net with large weights is chaotic: bf16 rounding differences between kernels grow
    into visible colour changes, which a trained model does not do.)"""
    torch.manual_seed(0)
    net = UnetGenerator(GeneratorConfig(ngf=8, num_downs=5))
    init_weights(net, gain=0.05)
    with torch.no_grad():
        net.outer[1].bias.copy_(torch.tensor([0.25, -0.2]))  # a clear tint, so colour is visible
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_generator(net, path, {"note": "random test generator"})
    return path


@pytest.fixture(scope="session")
def tiny_guided_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random EfficientNet U-Net that takes a colour guide (untrained: its output depends
    on the guide, not in a useful way; tests check where guides reach, not how well they work)."""
    torch.manual_seed(0)
    net = EffUnetGenerator(GeneratorConfig(arch="effnet_unet", ngf=4, num_downs=5, guide=True))
    with torch.no_grad():
        net.head.weight.normal_(0.0, 0.05)  # zero-initialised for training; a test needs output
        net.head.bias.copy_(torch.tensor([0.25, -0.2]))  # a clear tint, so colour is visible
    path = tmp_path_factory.mktemp("weights") / "tiny_guided.pt"
    save_generator(net.eval(), path, {"note": "random guided test generator"})
    return path


@pytest.fixture
def cfg(tiny_weights: Path) -> JobConfig:
    return JobConfig(weights=str(tiny_weights), working_size=64, batch_size=4, preset="ultrafast",
                     chunk_seconds=1000.0)
