"""What a film file carries besides one progressive picture: interlacing (kept, or removed with
--deinterlace), several video streams, subtitles, metadata and chapters; and Ctrl-C on a real
process. ../shared/DESIGN.md decisions 10 and 11."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import chunks_done, decode_all, make_clip, packets, plane

from vidcolor.cli import main
from vidcolor.pipeline import job_dir_for

MS = Fraction(1, 1000)
TT, BB, PROGRESSIVE = 2, 3, 1  # AVFieldOrder


def colorize(capsys: pytest.CaptureFixture[str], src: Path, out: Path, weights: Path, *extra: str) -> tuple[int, str]:
    """`vidcolor colorize` in-process with fast settings; (exit code, stderr)."""
    capsys.readouterr()
    rc = main(["colorize", str(src), "-o", str(out), "--workers", "0", "--weights", str(weights),
               "--working-size", "64", "--preset", "ultrafast", "-q", *extra])
    return rc, capsys.readouterr().err


def assert_refused(rc: int, err: str, code: int, out: Path, *words: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, f"exit {rc}, want {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("vidcolor: error:"), err
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    assert not out.exists()
    assert not list(out.parent.glob(".*.part")) and not job_dir_for(out).exists()


def lumas(path: Path, stream: int = 0) -> list[np.ndarray]:
    return [plane(f, 0) for f in decode_all(path, stream)]


def field_order(path: Path) -> int:
    with av.open(str(path)) as c:
        return c.streams.video[0].codec_context.field_order


def pts_seconds(path: Path, stream: int = 0) -> list[float]:
    return [float(f.pts * f.time_base) for f in decode_all(path, stream)]


# --- interlaced sources ----------------------------------------------------------------------


def interlaced_clip(path: Path, order: str, frames: int = 8, lossless: bool = False, fps: int = 25,
                    keyint: int = 250) -> Path:
    """A 96x64 H.264 clip coded interlaced (x264 field/MBAFF coding), fields from different
    moments: a bright bar moves 6 px per field, so every frame is visibly combed."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
    params = f"interlaced=1:{order}=1:keyint={keyint}:min-keyint={keyint}:scenecut=0" + (":qp=0" if lossless else "")
    vs.codec_context.options = {"preset": "ultrafast", "crf": "8", "x264-params": params}
    yy, xx = np.mgrid[0:64, 0:96]
    first, second = (0, 1) if order == "tff" else (1, 0)  # row parity shown first / second
    for i in range(frames):
        y = (40 + xx + yy // 2).astype(np.uint8)
        for parity, t in ((first, 2 * i), (second, 2 * i + 1)):
            rows = slice(parity, None, 2)
            bar = (xx[rows] >= (6 * t) % 90) & (xx[rows] < (6 * t) % 90 + 10)
            y[rows][bar] = 230
        f = av.VideoFrame.from_ndarray(y, format="gray").reformat(format="yuv420p")
        f.pts = i
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    out.close()
    return path


def combing(y: np.ndarray) -> float:
    """Mean distance of each odd row from the mean of its neighbours (high when fields differ)."""
    y = y.astype(np.float32)
    return float(np.abs(y[1:-1:2] - (y[0:-2:2] + y[2::2]) / 2).mean())


@pytest.mark.parametrize("order, encoder, ext, want", [
    ("tff", "h264", ".mkv", TT),
    ("bff", "h264", ".mp4", BB),
    ("tff", "ffv1", ".mkv", TT),
])
def test_interlaced_stays_interlaced(tmp_path, capsys, tiny_weights, order, encoder, ext, want):
    """The field order is kept: H.264 is coded interlaced again (the decoder sees interlaced
    pictures in that order); FFV1 (frame-coded, lossless) keeps every line and the tag."""
    src = interlaced_clip(tmp_path / "in.mp4", order)
    assert field_order(src) == want
    out = tmp_path / f"out{ext}"
    rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", encoder)
    assert rc == 0, err
    assert field_order(out) == want
    frames = decode_all(out)
    assert len(frames) == 8 and pts_seconds(out) == pts_seconds(src)
    if encoder == "h264":
        assert all(f.interlaced_frame for f in frames)
    else:
        for a, b in zip(lumas(src), lumas(out)):
            np.testing.assert_array_equal(a, b)


def test_interlaced_height_not_divisible_by_4(tmp_path, capsys, tiny_weights):
    """x264 cannot code interlaced 4:2:0 at a height that is not a multiple of 4 (nor flag it
    with fake-interlaced): such a source is coded progressive instead of failing. FFV1 keeps
    the tag (here MPEG-2, bottom field first, 64x50)."""
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("mpeg2video", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 50, "yuv420p"
        vs.codec_context.options = {"flags": "+ildct+ilme", "qscale": "2"}
        yy, xx = np.mgrid[0:50, 0:64]
        for i in range(6):
            f = av.VideoFrame.from_ndarray((40 + xx + yy + 9 * i).astype(np.uint8), format="gray")
            f = f.reformat(format="yuv420p")
            f.pts = i
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
    assert field_order(src) == BB and all(f.interlaced_frame for f in decode_all(src))
    rc, err = colorize(capsys, src, tmp_path / "out.mp4", tiny_weights)
    assert rc == 0, err
    assert len(decode_all(tmp_path / "out.mp4")) == 6
    rc, err = colorize(capsys, src, tmp_path / "out.mkv", tiny_weights, "--encoder", "ffv1")
    assert rc == 0, err
    assert field_order(tmp_path / "out.mkv") == BB


@pytest.mark.parametrize("order", ["tff", "bff"])
def test_deinterlace_makes_progressive(tmp_path, capsys, tiny_weights, order):
    """--deinterlace: yadif keeps the field shown first line for line, interpolates the other,
    the combing is gone, the timing is unchanged and the output says it is progressive."""
    src = interlaced_clip(tmp_path / "in.mp4", order, lossless=True)
    out = tmp_path / "out.mkv"
    rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", "ffv1", "--deinterlace")
    assert rc == 0, err
    assert field_order(out) == PROGRESSIVE
    assert not any(f.interlaced_frame for f in decode_all(out))
    assert pts_seconds(out) == pts_seconds(src)
    before, after = lumas(src), lumas(out)
    assert len(after) == len(before) == 8
    kept, rebuilt = (slice(0, None, 2), slice(1, None, 2)) if order == "tff" else (slice(1, None, 2),
                                                                                   slice(0, None, 2))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(b[kept], a[kept])
        assert not np.array_equal(b[rebuilt], a[rebuilt])
        assert combing(b) < combing(a) / 3, (combing(a), combing(b))
    if order == "tff":  # h264 output of the same: coded progressive, tagged progressive
        out2 = tmp_path / "out.mp4"
        rc, err = colorize(capsys, src, out2, tiny_weights, "--deinterlace")
        assert rc == 0, err
        assert field_order(out2) == PROGRESSIVE and not any(f.interlaced_frame for f in decode_all(out2))


def test_deinterlace_is_seamless_across_chunks(tmp_path, capsys, tiny_weights):
    """yadif looks one frame back and one ahead: the warm-up frames before a chunk and the
    keyframe after it give it both, so 6 chunks give the same pictures as one."""
    src = interlaced_clip(tmp_path / "in.mp4", "tff", frames=12, lossless=True, fps=4, keyint=2)
    outs = []
    for name, extra in (("one", ()), ("six", ("--chunk-seconds", "0.5"))):
        out = tmp_path / f"{name}.mkv"
        rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", "ffv1", "--deinterlace", *extra)
        assert rc == 0, err
        outs.append(lumas(out))
    assert len(outs[0]) == len(outs[1]) == 12
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


# --- several video streams -------------------------------------------------------------------


def two_video_streams(path: Path) -> Path:
    """MKV with two video streams of different content (H.264 ramp, FFV1 checkerboard) and audio."""
    out = av.open(str(path), "w")
    a = out.add_stream("libx264", rate=24)
    a.width, a.height, a.pix_fmt = 64, 48, "yuv420p"
    a.codec_context.options = {"preset": "ultrafast", "crf": "10"}
    b = out.add_stream("ffv1", rate=24)
    b.width, b.height, b.pix_fmt = 64, 48, "yuv420p"
    au = out.add_stream("aac", rate=48000)
    au.layout = "mono"
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(6):
        ya = (30 + 2 * xx + yy + 5 * i).astype(np.uint8)
        yb = np.where(((xx // 8 + yy // 8 + i) % 2) == 0, 60, 190).astype(np.uint8)
        for s, y in ((a, ya), (b, yb)):
            f = av.VideoFrame.from_ndarray(y, format="gray").reformat(format="yuv420p")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
    for s in (a, b):
        for p in s.encode(None):
            out.mux(p)
    for s0 in range(0, 12000, 1024):
        af = av.AudioFrame.from_ndarray(np.zeros((1, min(1024, 12000 - s0)), np.float32), format="fltp",
                                        layout="mono")
        af.sample_rate, af.pts = 48000, s0
        for p in au.encode(af):
            out.mux(p)
    for p in au.encode(None):
        out.mux(p)
    out.close()
    return path


def test_video_stream_choice(tmp_path, capsys, tiny_weights):
    src = two_video_streams(tmp_path / "two.mkv")
    first, second = lumas(src, 0), lumas(src, 1)
    assert not np.array_equal(first[0], second[0])
    for extra, want in (((), first), (("--video-stream", "1"), second)):
        out = tmp_path / f"out{len(extra)}.mkv"
        rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", "ffv1", *extra)
        assert rc == 0, err
        got = lumas(out)
        assert len(got) == len(want) == 6
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        with av.open(str(out)) as c:  # one video stream (the chosen one), the audio copied
            assert [s.type for s in c.streams] == ["video", "audio"]
        assert packets(out) == packets(src)
    out = tmp_path / "bad.mkv"
    rc, err = colorize(capsys, src, out, tiny_weights, "--video-stream", "2")
    assert_refused(rc, err, 2, out, "2 video stream", "--video-stream 2")


# --- subtitles, metadata, chapters -----------------------------------------------------------


SUBS = [(0, 150, "Hello"), (120, 90, "<i>two</i> lines\nof text"), (300, 40, "Ünïcode ✓")]  # ms
CHAPTERS = [(0, 200, "Opening"), (200, 500, "The end")]  # ms


def rich_source(path: Path, *, subtitles: bool = True) -> Path:
    """A grey clip with container metadata, chapters, an audio track with a language, and
    (MKV) SRT subtitles muxed packet by packet (PyAV's srt encoder needs an ASS header)."""
    make_clip(path.with_suffix(".tmp.mp4"), width=64, height=48, frames=12, audio_tracks=1)
    out = av.open(str(path), "w")
    out.metadata.update({"title": "A Grey Film", "artist": "Somebody", "comment": "kept?"})
    with av.open(str(path.with_suffix(".tmp.mp4"))) as src:
        v = out.add_stream_from_template(src.streams.video[0])
        a = out.add_stream_from_template(src.streams.audio[0])
        a.metadata["language"] = "fra"
        v.metadata["language"] = "eng"
        s = None
        if subtitles:
            s = out.add_mux_stream("subrip")
            s.time_base = MS
            s.metadata["language"] = "deu"
        out.set_chapters([{"id": i + 1, "start": st, "end": en, "time_base": MS, "metadata": {"title": t}}
                          for i, (st, en, t) in enumerate(CHAPTERS)])
        out.start_encoding()
        for p in src.demux():
            if p.size:
                p.stream = v if p.stream.type == "video" else a
                out.mux(p)
        for pts, dur, text in SUBS if s is not None else []:
            p = av.Packet(text.encode())
            p.pts = p.dts = pts
            p.duration, p.time_base, p.stream = dur, MS, s
            out.mux(p)
    out.close()
    path.with_suffix(".tmp.mp4").unlink()
    return path


def subtitle_packets(path: Path) -> list[tuple[bytes, float, float]]:
    with av.open(str(path)) as c:
        return [(bytes(p), float(p.pts * p.time_base), float(p.duration * p.time_base))
                for p in c.demux(c.streams.subtitles[0]) if p.size]


def video_durations(path: Path) -> list[float]:
    """Duration of each video packet but the last (whose duration the encoder guesses), in s."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [float(p.duration * p.time_base) for p in c.demux(s) if p.size][:-1]


def chapters(path: Path) -> list[tuple[float, float, str]]:
    with av.open(str(path)) as c:
        return [(round(float(ch["start"] * ch["time_base"]), 3), round(float(ch["end"] * ch["time_base"]), 3),
                 ch["metadata"].get("title", "")) for ch in c.chapters()]


def test_subtitles_kept_in_mkv(tmp_path, capsys, tiny_weights):
    src = rich_source(tmp_path / "in.mkv")
    want = subtitle_packets(src)
    assert [t for t, _, _ in want] == [t.encode() for _, _, t in SUBS]
    out = tmp_path / "out.mkv"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert rc == 0, err
    assert subtitle_packets(out) == want  # bytes, start and duration
    with av.open(str(out)) as c:
        sub = c.streams.subtitles[0]
        assert sub.codec_context.name in ("subrip", "srt") and sub.metadata.get("language") == "deu"


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_srt_into_mp4_is_refused(tmp_path, capsys, tiny_weights, ext):
    """FFmpeg's mp4/mov muxers take only mov_text subtitles: refused up front, before any work."""
    src = rich_source(tmp_path / "in.mkv")
    out = tmp_path / f"out{ext}"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_refused(rc, err, 3, out, "cannot hold subtitle stream", "srt", ".mkv")


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_metadata_and_chapters_kept(tmp_path, capsys, tiny_weights, ext):
    src = rich_source(tmp_path / f"in{ext}", subtitles=False)
    assert chapters(src) == [(s / 1000, e / 1000, t) for s, e, t in CHAPTERS]
    out = tmp_path / f"out{ext}"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert rc == 0, err
    assert chapters(out) == chapters(src)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        meta = {k.lower(): v for k, v in b.metadata.items()}
        for key, value in a.metadata.items():
            if key.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
                assert meta.get(key.lower()) == value, (key, value, b.metadata)
        assert meta["title"] == "A Grey Film"
        assert b.streams.audio[0].metadata.get("language") == "fra"
        assert b.streams.video[0].metadata.get("language") == "eng"
    assert packets(out) == packets(src)
    # Packet durations are rescaled with the pts when the segments' time base differs from the
    # source's (MKV's 1 ms: the MOV segments use 1/16000), not read in the wrong unit.
    assert np.allclose(video_durations(out), video_durations(src), atol=0.0011)


# --- Ctrl-C ----------------------------------------------------------------------------------


def test_ctrl_c_keeps_chunks_then_resumes(tmp_path, tiny_weights):
    """SIGINT to a real process once a chunk is done: exit 130, one line saying what was kept,
    no output; the rerun does only the rest and writes the same bytes as an uninterrupted run."""
    clip = make_clip(tmp_path / "in.mp4", width=96, height=64, frames=48, fps=4, gop=2, audio_tracks=1)
    # 24 chunks of 2 frames; --batch-size 64 pads each forward pass, so a chunk takes a while, and
    # many chunks leave the signal time to land mid-job (6 chunks could all finish first).
    opts = {"weights": str(tiny_weights), "working_size": 64, "preset": "ultrafast", "chunk_seconds": 0.5,
            "batch_size": 64}
    args = ["colorize", str(clip), "--weights", str(tiny_weights), "--working-size", "64", "--preset",
            "ultrafast", "--chunk-seconds", "0.5", "--batch-size", "64", "--workers", "0", "-q"]
    full = tmp_path / "full.mp4"
    assert main([*args, "-o", str(full)]) == 0
    out = tmp_path / "out.mp4"
    manifest = job_dir_for(out) / "manifest.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # The child gets the default SIGINT handler even when this run inherited "ignore" (a shell
    # starts background jobs that way, and Python then never raises KeyboardInterrupt).
    proc = subprocess.Popen([sys.executable, "-m", "vidcolor.cli", *args, "-o", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if chunks_done(manifest) >= 1:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stderr, stdout)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    kept = len(json.loads(manifest.read_text())["done"])
    assert lines[0].startswith("vidcolor: error: interrupted:"), lines[0]
    assert f"{kept}/24 chunks kept" in lines[0] and "run the same command again" in lines[0], lines[0]
    assert 1 <= kept < 24
    assert not out.exists() and not list(tmp_path.glob(".*.part"))
    from vidcolor import batch

    res = batch.colorize_many([clip], output=out, out_dir=None, config=None, overrides=opts, progress=False,
                              workers=0)[0]
    assert res.chunks_total == 24 and res.chunks_run == 24 - kept
    assert out.read_bytes() == full.read_bytes()
    assert not job_dir_for(out).exists()
