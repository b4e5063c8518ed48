"""Bad input, odd geometry and faults: one clear line on stderr, the right exit code, and nothing
left under the output name (nor a `.NAME.part` beside it). ../shared/DESIGN.md decision 11."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED, decode_all, make_clip, packets, plane

from vidcolor.cli import main
from vidcolor.model import GeneratorConfig, UnetGenerator, init_weights

BAD_AVI = SHARED / "bad" / "Megamind_bugy.avi"


# --- helpers --------------------------------------------------------------------------------


def colorize(capsys: pytest.CaptureFixture[str], src: Path, out: Path, weights: Path, *extra: str) -> tuple[int, str]:
    """Run `vidcolor colorize` in-process, fast settings; returns (exit code, stderr)."""
    capsys.readouterr()
    rc = main(["colorize", str(src), "-o", str(out), "--workers", "0", "--weights", str(weights),
               "--working-size", "64", "--preset", "ultrafast", "-q", *extra])
    return rc, capsys.readouterr().err


def assert_failed(rc: int, err: str, code: int, out: Path, *words: str, job_folder: bool = False) -> str:
    """The exit code, one line naming the problem, no traceback, nothing under the output name."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, f"exit {rc}, want {code}: {err}"
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    line = lines[0]
    assert line.startswith("vidcolor: error:"), line
    assert "Traceback" not in err and "internal error" not in err
    print(f"exit {rc}: {line}")  # shown with pytest -rP: the messages users get
    for w in words:
        assert w.lower() in line.lower(), f"{w!r} not in {line!r}"
    assert not out.is_file() or out.is_symlink(), f"{out} was written"
    parent = out.parent if out.parent.is_dir() else None
    if parent is not None:
        assert not list(parent.glob(".*.part")), list(parent.glob(".*.part"))
        if not job_folder:
            assert not (parent / f".{out.name}.vidcolor").exists(), "job folder left behind"
    return line


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grey_clip(path: Path, *, width: int = 64, height: int = 48, frames: int = 6, codec: str = "libx264",
              audio_codec: str | None = None, sar: Fraction | None = None, fmt: str | None = None) -> Path:
    """A small grey clip, optionally with one mono audio track of any codec (make_clip only does
    float audio) and a sample aspect ratio on the video stream."""
    out = av.open(str(path), "w", format=fmt)
    vs = out.add_stream(codec, rate=24)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        vs.codec_context.options = {"preset": "ultrafast", "crf": "10"}
    if sar is not None:
        vs.codec_context.sample_aspect_ratio = sar
    a = None
    if audio_codec:
        a = out.add_stream(audio_codec, rate=8000)
        a.layout = "mono"
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(frames):
        y = ((xx * 3 + yy * 2 + i * 7) % 200 + 30).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(y, format="gray").reformat(format="yuv420p")
        f.pts = i
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    if a is not None:
        afmt = a.codec_context.format.name
        dtype = {"s16": np.int16, "s16p": np.int16, "u8": np.uint8, "u8p": np.uint8, "s32": np.int32,
                 "flt": np.float32, "fltp": np.float32}[afmt]
        n = 8000 * frames // 24
        for s0 in range(0, n, 512):
            af = av.AudioFrame.from_ndarray(np.zeros((1, min(512, n - s0)), dtype), format=afmt, layout="mono")
            af.sample_rate, af.pts = 8000, s0
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "in.mp4", width=64, height=48, frames=12)


# --- not a video -------------------------------------------------------------------------------


def _text(p: Path) -> None:
    p.write_text("this is not a video\n" * 20)


def _png(p: Path) -> None:
    cv2.imwrite(str(p), np.full((48, 64), 100, np.uint8))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _dir(p: Path) -> None:
    p.mkdir()


@pytest.mark.parametrize("name, make, words", [
    ("notes.txt", _text, ["not a readable video", "notes.txt"]),
    ("notes.mp4", _text, ["not a readable video", "notes.mp4"]),
    ("still.png", _png, ["still image", "still.png"]),
    ("empty.mp4", _empty, ["empty", "empty.mp4"]),
    ("missing.mp4", None, ["not found", "missing.mp4"]),
])
def test_not_a_video(tmp_path, capsys, tiny_weights, name, make, words):
    src = tmp_path / name
    if make:
        make(src)
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 2, out, *words)


def test_directory_input(tmp_path, capsys, tiny_weights):
    """-o wants one file; a folder (here one named like a video) is a usage error (exit 3)."""
    src = tmp_path / "folder.mp4"
    src.mkdir()
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 3, out, "--out-dir")
    capsys.readouterr()
    rc = main(["colorize", str(src), "--out-dir", str(tmp_path / "outs"), "--workers", "0", "--weights",
               str(tiny_weights), "-q"])
    assert_failed(rc, capsys.readouterr().err, 3, out, "no video files")


def test_audio_only(tmp_path, capsys, tiny_weights):
    src = tmp_path / "song.m4a"
    with av.open(str(src), "w") as c:
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        for s0 in range(0, 48000, 1024):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, s0
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 2, out, "no video stream", "song.m4a")


def test_garbage_video_packets(tmp_path, capsys, tiny_weights):
    """A well-formed MP4 whose video packets are noise: nothing decodes, so nothing to colorize."""
    src = make_clip(tmp_path / "noise.mp4", width=64, height=48, frames=12)
    data = bytearray(src.read_bytes())
    start = data.index(b"mdat") + 4
    size = int.from_bytes(data[start - 8 : start - 4], "big") - 8
    data[start : start + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    src.write_bytes(bytes(data))
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 2, out, "noise.mp4")
    assert "decod" in err or "no video frames" in err


def test_header_only(tmp_path, capsys, tiny_weights):
    """A container that declares a video stream but holds no frame at all."""
    src = tmp_path / "hollow.mkv"
    with av.open(str(src), "w") as c:
        vs = c.add_stream("ffv1", rate=24)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 2, out, "hollow.mkv")


# --- damaged files -------------------------------------------------------------------------------


def decoder_damage(path: Path) -> int:
    """Packets that fail to decode plus frames the decoder flags as corrupt."""
    n = 0
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        for p in c.demux(vs):
            try:
                n += sum(bool(f.is_corrupt) for f in p.decode())
            except av.error.FFmpegError:
                n += 1
    return n


def damage_warnings(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [int(m.group(1)) for r in caplog.records
            if (m := re.match(r"(\d+) damaged packets/frames", r.getMessage()))]


def assert_same_timing(src: Path, out: Path) -> None:
    """Every frame the decoder yields is in the output, and the output holds the source's set of
    frame times (in order): no drift, no frame dropped or doubled."""
    src_frames, out_frames = decode_all(src), decode_all(out)
    assert len(out_frames) == len(src_frames)
    src_t = sorted(float(f.pts * f.time_base) for f in src_frames)
    out_t = [float(f.pts * f.time_base) for f in out_frames]
    assert out_t == sorted(out_t)
    np.testing.assert_allclose(out_t, src_t, atol=1e-3)


def test_damaged_frames_counted(tmp_path, capsys, caplog, tiny_weights):
    """Garbled MPEG-4 packets: the decoder conceals them and flags the frames; the job finishes,
    warns with the count, and keeps every frame at its time."""
    good = make_clip(tmp_path / "good.avi", width=64, height=48, frames=24, codec="mpeg4", gop=12)
    src = tmp_path / "garbled.avi"
    rng = np.random.default_rng(0)
    with av.open(str(good)) as i, av.open(str(src), "w") as o:
        s = i.streams.video[0]
        os_ = o.add_stream_from_template(s)
        for k, p in enumerate(x for x in i.demux(s) if x.size):
            if k in (5, 6, 15):
                b = bytearray(bytes(p))
                b[len(b) // 4 :] = rng.integers(0, 256, len(b) - len(b) // 4, dtype=np.uint8).tobytes()
                q = av.Packet(bytes(b))
                q.pts, q.dts, q.time_base, q.is_keyframe = p.pts, p.dts, p.time_base, p.is_keyframe
                p = q
            p.stream = os_
            o.mux(p)
    damage = decoder_damage(src)
    assert damage > 0
    out = tmp_path / "o.mkv"
    with caplog.at_level(logging.WARNING, logger="vidcolor"):
        rc, err = colorize(capsys, src, out, tiny_weights)
    assert rc == 0, err
    assert damage_warnings(caplog) == [damage]
    assert_same_timing(src, out)


@pytest.mark.slow
@pytest.mark.skipif(not BAD_AVI.is_file(), reason=f"{BAD_AVI} not available")
def test_damaged_mpeg4_file(tmp_path, capsys, caplog, tiny_weights):
    """The broken Xvid sample (packed B-frames, excess bitstream): it colorizes, a warning counts
    whatever the decoder reports damaged (this FFmpeg conceals it all silently), and timing is
    kept although the decoder labels frames out of order (1, 2, 3, 5, 4, ...)."""
    out = tmp_path / "mega.mkv"
    with caplog.at_level(logging.WARNING, logger="vidcolor"):
        rc, err = colorize(capsys, BAD_AVI, out, tiny_weights, "--allow-colour-input")
    assert rc == 0, err
    damage = decoder_damage(BAD_AVI)
    assert damage_warnings(caplog) == ([damage] if damage else [])
    assert_same_timing(BAD_AVI, out)


def test_truncated_mp4_is_refused(tmp_path, capsys, tiny_weights):
    """An MP4 written the usual way keeps its index (moov) at the end: cut at 60% there is no index
    left to find a single frame with, so the only right answer is a clear error."""
    good = make_clip(tmp_path / "good.mp4", width=64, height=48, frames=12)
    data = good.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")
    src = tmp_path / "cut.mp4"
    src.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 2, out, "cut.mp4")


def test_truncated_mkv_keeps_surviving_frames(tmp_path, capsys, tiny_weights):
    """A cut Matroska file (a recording that stopped) still has its first clusters: colorize the
    frames that survive, at their times, rather than refusing the whole file."""
    good = make_clip(tmp_path / "good.mkv", width=64, height=48, frames=12, codec="ffv1")
    data = good.read_bytes()
    src = tmp_path / "cut.mkv"
    src.write_bytes(data[: int(len(data) * 0.6)])
    survivors = decode_all(src)
    assert 0 < len(survivors) < 12
    out = tmp_path / "o.mkv"
    rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", "ffv1")
    assert rc == 0, err
    got = decode_all(out)
    assert [float(f.pts * f.time_base) for f in got] == pytest.approx(
        [float(f.pts * f.time_base) for f in survivors], abs=1e-3)
    for a, b in zip(got, survivors, strict=True):
        assert np.array_equal(plane(a, 0), plane(b, 0))  # luma untouched


# --- odd and extreme geometry ----------------------------------------------------------------


@pytest.mark.parametrize("w, h, ext, encoder", [
    (1, 1, ".mkv", "ffv1"),
    (1, 1, ".mp4", "h264"),
    (2, 2, ".mkv", "ffv1"),
    (2, 2, ".mp4", "h264"),
    (33, 17, ".mkv", "ffv1"),
    (33, 17, ".mp4", "h264"),
])
def test_tiny_and_odd_sizes(tmp_path, capsys, tiny_weights, w, h, ext, encoder):
    src = make_clip(tmp_path / "src.mkv", width=w, height=h, frames=6, codec="ffv1")
    out = tmp_path / f"o{ext}"
    rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", encoder, "--crf", "0")
    assert rc == 0, err
    src_frames, got = decode_all(src), decode_all(out)
    assert len(got) == len(src_frames) == 6
    for a, b in zip(got, src_frames, strict=True):
        assert (a.width, a.height) == (w, h)
        assert np.array_equal(plane(a, 0), plane(b, 0))  # luma exact (ffv1, and x264 at crf 0)


def test_non_square_pixels_kept(tmp_path, capsys, tiny_weights):
    sar = Fraction(16, 11)
    src = grey_clip(tmp_path / "anamorphic.mp4", width=64, height=48, sar=sar)
    with av.open(str(src)) as c:
        assert c.streams.video[0].sample_aspect_ratio == sar
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert rc == 0, err
    with av.open(str(out)) as c:
        assert c.streams.video[0].sample_aspect_ratio == sar
        assert c.streams.video[0].codec_context.sample_aspect_ratio == sar


_RSS_PROBE = """
import sys
from vidcolor.cli import main

def hwm():  # this process's peak RSS in KiB (ru_maxrss would include the forking parent's)
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1])

before = hwm()
rc = main(sys.argv[1:])
print("RSS", before, hwm(), rc)
"""


@pytest.mark.slow
def test_4k_bounded_memory(tmp_path, tiny_weights):
    """3840x2160: decode, compose and encode full frames without holding the clip in memory.
    Its own process, so the peak RSS is this job's and not an earlier test's."""
    src = grey_clip(tmp_path / "uhd.mp4", width=3840, height=2160, frames=2)
    out = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-c", _RSS_PROBE, "colorize", str(src), "-o", str(out), "--workers", "0",
                        "--weights", str(tiny_weights), "--working-size", "64", "--preset", "ultrafast", "-q"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "2"})
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RSS")]
    assert r.returncode == 0 and line, r.stderr
    before, peak, rc = (int(x) for x in line[0].split()[1:])
    growth = (peak - before) / 2**20
    print(f"peak RSS {peak / 2**20:.2f} GiB, grew by {growth:.2f} GiB")
    assert rc == 0, r.stderr
    assert growth < 1.5, f"peak RSS grew by {growth:.2f} GiB"
    got = decode_all(out)
    assert len(got) == 2 and (got[0].width, got[0].height) == (3840, 2160)


def test_h265_tiny_frames_refused(tmp_path, capsys, tiny_weights):
    """libx265 corrupts its heap on some tiny sizes (the process aborts): refused with a hint."""
    src = make_clip(tmp_path / "src.mkv", width=33, height=17, frames=4, codec="ffv1")
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", "h265")
    assert_failed(rc, err, 3, out, "h265", "33x17", "ffv1")


def test_encoder_refusal_leaves_no_job_folder(tmp_path, capsys, tiny_weights):
    src = make_clip(tmp_path / "src.mkv", width=33, height=17, frames=4, codec="ffv1")
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", "h265")
    assert_failed(rc, err, 3, out, "h265")


# --- colour sources --------------------------------------------------------------------------


def test_colour_source_refused_then_allowed(tmp_path, capsys, tiny_weights):
    src = make_clip(tmp_path / "colour.mp4", width=64, height=48, frames=6, grey=False)
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 2, out, "already in colour", "--allow-colour-input", "colour.mp4")
    rc, err = colorize(capsys, src, out, tiny_weights, "--allow-colour-input")
    assert rc == 0, err
    assert len(decode_all(out)) == 6


# --- streams the output container cannot hold ------------------------------------------------


def test_audio_codec_mp4_cannot_hold(tmp_path, capsys, tiny_weights):
    """8-bit unsigned PCM has no MP4 sample entry: say which stream, suggest .mkv, write nothing."""
    src = grey_clip(tmp_path / "pcm.mov", audio_codec="pcm_u8")
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert_failed(rc, err, 3, out, "audio stream #1", "pcm_u8", ".mkv")
    rc, err = colorize(capsys, src, tmp_path / "o.mkv", tiny_weights)
    assert rc == 0, err
    assert packets(tmp_path / "o.mkv") == packets(src)


def test_pcm_s16_into_mp4_is_carried(tmp_path, capsys, tiny_weights):
    """16-bit PCM does fit in MP4 (ISO 23003-5 'ipcm'): copied as it is, nothing refused."""
    src = grey_clip(tmp_path / "pcm16.mov", audio_codec="pcm_s16le")
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, src, out, tiny_weights)
    assert rc == 0, err
    assert packets(out) == packets(src)


# --- output path faults ----------------------------------------------------------------------


def test_output_dir_missing(tmp_path, capsys, tiny_weights, clip):
    out = tmp_path / "nope" / "deeper" / "o.mp4"
    rc, err = colorize(capsys, clip, out, tiny_weights)
    assert_failed(rc, err, 5, out, "does not exist")
    assert not (tmp_path / "nope").exists()


def test_output_is_a_directory(tmp_path, capsys, tiny_weights, clip):
    out = tmp_path / "o.mp4"
    out.mkdir()
    rc, err = colorize(capsys, clip, out, tiny_weights, "--overwrite")
    assert_failed(rc, err, 5, out, "directory")
    assert out.is_dir() and not any(out.iterdir())


def test_output_parent_is_a_file(tmp_path, capsys, tiny_weights, clip):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "o.mp4"
    rc, err = colorize(capsys, clip, out, tiny_weights)
    assert_failed(rc, err, 5, out, "afile")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500")
def test_output_dir_not_writable(tmp_path, capsys, tiny_weights, clip):
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    out = d / "o.mp4"
    rc, err = colorize(capsys, clip, out, tiny_weights)
    assert_failed(rc, err, 5, out, "not writable")


@pytest.mark.parametrize("spelling", ["same", "symlink", "dotdot", "hardlink"])
def test_output_is_the_input(tmp_path, capsys, tiny_weights, clip, spelling):
    before = sha(clip)
    if spelling == "same":
        out = clip
    elif spelling == "symlink":
        out = tmp_path / "link.mp4"
        out.symlink_to(clip)
    elif spelling == "hardlink":
        out = tmp_path / "hard.mp4"
        os.link(clip, out)
    else:
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / clip.name
    rc, err = colorize(capsys, clip, out, tiny_weights, "--overwrite")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 5 and len(lines) == 1 and lines[0].startswith("vidcolor: error:"), err
    assert "is the input" in lines[0]
    assert sha(clip) == before
    assert not list(tmp_path.glob(".*.part")) and not list(tmp_path.glob(".*.vidcolor"))


def test_existing_output_kept_without_overwrite(tmp_path, capsys, tiny_weights, clip):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    rc, err = colorize(capsys, clip, out, tiny_weights)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 5 and len(lines) == 1 and lines[0].startswith("vidcolor: error:"), err
    assert "exists" in lines[0] and "--overwrite" in lines[0]
    assert out.read_bytes() == b"precious"
    assert not list(tmp_path.glob(".*.part")) and not list(tmp_path.glob(".*.vidcolor"))


# --- model weights ---------------------------------------------------------------------------


def _other_arch(p: Path, tiny: Path) -> None:
    """A checkpoint that claims the tiny architecture but carries tensors of a wider one."""
    blob = torch.load(tiny, weights_only=True)
    wide = UnetGenerator(GeneratorConfig(ngf=16, num_downs=5))
    blob["state_dict"] = {k: v.half() for k, v in wide.state_dict().items()}
    torch.save(blob, p)


def _other_depth(p: Path, tiny: Path) -> None:
    net = UnetGenerator(GeneratorConfig(ngf=8, num_downs=6))
    init_weights(net)
    blob = torch.load(tiny, weights_only=True)
    blob["state_dict"] = net.state_dict()
    torch.save(blob, p)


def _plain_state_dict(p: Path, tiny: Path) -> None:
    torch.save(torch.load(tiny, weights_only=True)["state_dict"], p)


@pytest.mark.parametrize("kind, words", [
    ("missing", ["not found"]),
    ("truncated", ["unreadable"]),
    ("random", ["unreadable"]),
    ("other_arch", ["do not match"]),
    ("other_depth", ["do not match"]),
    ("plain_state_dict", ["not a vidcolor generator checkpoint"]),
    ("directory", ["not found"]),
])
def test_bad_weights(tmp_path, capsys, tiny_weights, clip, kind, words):
    w = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        data = tiny_weights.read_bytes()
        w.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        w.write_bytes(np.random.default_rng(3).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    elif kind == "other_arch":
        _other_arch(w, tiny_weights)
    elif kind == "other_depth":
        _other_depth(w, tiny_weights)
    elif kind == "plain_state_dict":
        _plain_state_dict(w, tiny_weights)
    elif kind == "directory":
        w.mkdir()
    out = tmp_path / "o.mp4"
    rc, err = colorize(capsys, clip, out, w)
    assert_failed(rc, err, 4, out, str(w), *words)


# --- options, validated before any work --------------------------------------------------------


@pytest.mark.parametrize("args, toml, words", [
    (["--encoder", "divx"], None, ["unknown encoder", "divx"]),
    (["--crf", "99"], None, ["crf", "99"]),
    (["--smoothing-strength", "-0.5"], None, ["smoothing_strength", "-0.5"]),
    (["--working-size", "0"], None, ["working_size"]),
    ([], 'crf = 20\nfancy_mode = true\n', ["unknown config key", "fancy_mode"]),
    ([], 'crf = "twenty"\n', ["crf", "int"]),
    ([], 'crf = 20\nencoder = h264\n', ["not valid toml"]),
    ([], '\xff\xfe not text', ["not valid toml"]),
    ([], None, ["cannot read config"]),  # --config names a missing file
])
def test_bad_options(tmp_path, capsys, tiny_weights, clip, args, toml, words):
    out = tmp_path / "o.mp4"
    extra = list(args)
    if toml is not None or not args:
        cfgfile = tmp_path / "job.toml"
        if toml is not None:
            cfgfile.write_bytes(toml.encode("latin-1"))
        extra += ["--config", str(cfgfile)]
    capsys.readouterr()
    rc = main(["colorize", str(clip), "-o", str(out), "--workers", "0", "--weights", str(tiny_weights),
               "--preset", "ultrafast", "-q", *extra])
    err = capsys.readouterr().err
    assert_failed(rc, err, 3, out, *words)
    assert not (tmp_path / ".o.mp4.vidcolor").exists()


def test_unsupported_output_extension(tmp_path, capsys, tiny_weights, clip):
    out = tmp_path / "o.gif"
    rc, err = colorize(capsys, clip, out, tiny_weights)
    assert_failed(rc, err, 3, out, ".gif")


# --- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, leave: int) -> None:
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


@pytest.mark.parametrize("room", ["none", "segment_only"])
def test_disk_full(tmp_path, capsys, tiny_weights, small_tmpfs, room):
    """ENOSPC while writing the chunk segment, or later while joining the output: exit 5, a clear
    line, the input untouched, nothing under the output name (a part-file is removed)."""
    src = make_clip(tmp_path / "in.mkv", width=96, height=64, frames=12, codec="ffv1")
    before = sha(src)
    ref = tmp_path / "ref.mkv"
    rc, err = colorize(capsys, src, ref, tiny_weights, "--encoder", "ffv1")
    assert rc == 0, err
    size = ref.stat().st_size
    # "none": room for the job folder's manifest only. "segment_only": the segment fits, the
    # joined output (about as big again) does not.
    _fill(small_tmpfs, 8192 if room == "none" else size + size // 2 + 8192)
    out = small_tmpfs / "o.mkv"
    rc, err = colorize(capsys, src, out, tiny_weights, "--encoder", "ffv1")
    line = assert_failed(rc, err, 5, out, "no space left", job_folder=True)
    assert "o.mkv" in line or "seg_" in line
    assert sha(src) == before
