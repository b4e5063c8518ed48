"""End-to-end properties of a colorize job on clips the tests generate (in-process executor)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import decode_all, make_clip, packets, plane

import vidcolor
from vidcolor.config import JobConfig
from vidcolor.errors import WeightsError
from vidcolor.pipeline import run_job


def run(src: Path, out: Path, cfg: JobConfig, **kw: object) -> vidcolor.JobResult:
    return run_job(src, out, dataclasses.replace(cfg, **kw), overwrite=True)


def times(path: Path) -> list[float]:
    return [float(f.pts * f.time_base) for f in decode_all(path)]


@pytest.mark.parametrize("vfr", [False, True], ids=["cfr", "vfr"])
def test_frame_count_and_pts_equal_source(tmp_path: Path, cfg: JobConfig, vfr: bool) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=30, vfr=vfr)
    out = tmp_path / "out.mp4"
    res = run(src, out, cfg)
    a, b = decode_all(src), decode_all(out)
    assert res.frames == len(a) == len(b) == 30
    assert [f.pts for f in a] == [f.pts for f in b]  # same time_base in MP4: exact
    with av.open(str(src)) as c1, av.open(str(out)) as c2:
        assert c1.streams.video[0].time_base == c2.streams.video[0].time_base


def test_audio_packets_byte_identical_two_tracks(tmp_path: Path, cfg: JobConfig) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=24, audio_tracks=2)
    out = tmp_path / "out.mp4"
    run(src, out, cfg)
    a, b = packets(src), packets(out)
    assert len(a) == len(b) == 2
    for ta, tb in zip(a, b):
        assert len(ta) == len(tb) > 10
        assert [p for p, _ in ta] == [p for p, _ in tb]  # bytes
        assert [t for _, t in ta] == [t for _, t in tb]  # timestamps


def test_luma_bytes_unchanged_and_chroma_coloured_ffv1(tmp_path: Path, cfg: JobConfig) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=12)
    out = tmp_path / "out.mkv"
    run(src, out, cfg, encoder="ffv1")
    a, b = decode_all(src), decode_all(out)
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        assert np.array_equal(plane(fa, 0), plane(fb, 0))
        assert np.abs(plane(fa, 1).astype(int) - 128).max() <= 1  # source chroma is neutral
        # the tiny model predicts a clear tint: chroma is far from neutral
        assert np.abs(plane(fb, 1).astype(int) - 128).mean() > 3
        assert np.abs(plane(fb, 2).astype(int) - 128).mean() > 3
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"


def test_colour_does_not_depend_on_batch_size(tmp_path: Path, cfg: JobConfig) -> None:
    """10 frames in batches of 1, 3 (3+3+3+1) and 8 (8+2). For a given batch size, a frame's
    colour is exact whatever shares its batch (partial batches are padded); across batch sizes,
    convolution kernels differ in bf16 rounding, so allow one code value."""
    src = make_clip(tmp_path / "in.mp4", frames=10)
    outs = []
    for bs in (1, 3, 8):
        out = tmp_path / f"out{bs}.mkv"
        run(src, out, cfg, encoder="ffv1", batch_size=bs, smoothing=False)
        outs.append([(plane(f, 1).astype(int), plane(f, 2).astype(int)) for f in decode_all(out)])
    for other in outs[1:]:
        for (u0, v0), (u1, v1) in zip(outs[0], other):
            assert np.abs(u0 - u1).max() <= 1 and np.abs(v0 - v1).max() <= 1


def test_colour_does_not_depend_on_batch_companions() -> None:
    """Fixed batch size: the same frame in any position, with any neighbours, is bit-identical."""
    import torch

    from vidcolor.model import Colorizer, GeneratorConfig, UnetGenerator, init_weights

    torch.manual_seed(0)
    net = UnetGenerator(GeneratorConfig(ngf=8, num_downs=5))
    init_weights(net, gain=0.3)
    c = Colorizer(net, "cpu", "bf16")
    rng = np.random.default_rng(0)
    x = rng.random((12, 64, 96)).astype(np.float32)
    ref = c.predict(x[:1], pad_to=4)[0]
    for companions in ([5, 6, 7], [1, 2], [], [9, 3, 11]):
        for pos in range(len(companions) + 1):
            idx = [*companions[:pos], 0, *companions[pos:]]
            out = c.predict(x[idx], pad_to=4)
            assert np.array_equal(out[pos], ref)


@pytest.mark.parametrize(("w", "h"), [(161, 91), (641, 361)])
def test_odd_frame_sizes(tmp_path: Path, cfg: JobConfig, w: int, h: int) -> None:
    src = make_clip(tmp_path / "in.mkv", width=w, height=h, frames=4, codec="ffv1")
    out = tmp_path / "out.mkv"
    run(src, out, cfg, encoder="ffv1")
    a, b = decode_all(src), decode_all(out)
    assert len(b) == 4 and (b[0].width, b[0].height) == (w, h)
    assert all(np.array_equal(plane(x, 0), plane(y, 0)) for x, y in zip(a, b))


def test_rotation_metadata_kept(tmp_path: Path, cfg: JobConfig) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=6, rotation=90)
    out = tmp_path / "out.mp4"
    run(src, out, cfg)
    assert decode_all(src)[0].rotation == decode_all(out)[0].rotation == 90


def test_ten_bit_source_luma_exact(tmp_path: Path, cfg: JobConfig) -> None:
    src = make_clip(tmp_path / "in.mkv", frames=4, codec="ffv1", pix_fmt="yuv420p10le")
    out = tmp_path / "out.mkv"
    run(src, out, cfg, encoder="ffv1")
    a, b = decode_all(src), decode_all(out)
    assert b[0].format.name == "yuv420p10le"
    assert all(np.array_equal(plane(x, 0), plane(y, 0)) for x, y in zip(a, b))
    assert np.abs(plane(b[0], 1).astype(int) - 512).mean() > 8


def test_true_grey_pixel_format(tmp_path: Path, cfg: JobConfig) -> None:
    src = make_clip(tmp_path / "in.mkv", frames=4, codec="ffv1", pix_fmt="gray")
    out = tmp_path / "out.mkv"
    run(src, out, cfg, encoder="ffv1")
    a, b = decode_all(src), decode_all(out)
    assert b[0].format.name == "yuv420p" and len(b) == 4
    assert all(np.array_equal(plane(x, 0), plane(y, 0)) for x, y in zip(a, b))


@pytest.mark.parametrize(("encoder", "suffix", "codec"), [("h265", ".mp4", "hevc"), ("prores", ".mov", "prores"),
                                                         ("h264", ".mkv", "h264")])
def test_encoders(tmp_path: Path, cfg: JobConfig, encoder: str, suffix: str, codec: str) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=8, audio_tracks=1)
    out = tmp_path / f"out{suffix}"
    run(src, out, cfg, encoder=encoder)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == codec
        assert len(c.streams.audio) == 1
    assert len(decode_all(out)) == 8
    # MP4/MOV keep every timestamp; Matroska cannot store negative ones (the AAC priming packet),
    # so its muxer shifts all streams by one constant: A/V sync is what must survive.
    shift_v = np.array(times(out)) - np.array(times(src))
    a_src, a_out = packets(src)[0], packets(out)[0]
    shift_a = (a_out[0][1] - a_src[0][1]) / 1e6
    assert np.allclose(shift_v, shift_a, atol=1.5e-3)  # MKV stores milliseconds
    if suffix != ".mkv":
        assert np.allclose(shift_v, 0.0, atol=1e-6)


def test_python_api_and_overwrite_guard(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=6)
    out = tmp_path / "out.mp4"
    res = vidcolor.colorize(src, out, weights=str(tiny_weights), working_size=64, preset="ultrafast")
    assert res.frames == 6 and out.exists()
    with pytest.raises(vidcolor.VidcolorError, match="exists"):
        vidcolor.colorize(src, out, weights=str(tiny_weights))
    assert not list(tmp_path.glob(".*"))  # no temporary files or job folders left behind


def test_missing_weights_is_an_error_not_random_colour(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=4)
    with pytest.raises(WeightsError, match="not found"):
        vidcolor.colorize(src, tmp_path / "out.mp4", weights=str(tmp_path / "nope.pt"))
    assert not (tmp_path / "out.mp4").exists()


def test_smoothing_off_and_on_both_keep_luma(tmp_path: Path, cfg: JobConfig) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=12, cut_at=6)
    a = decode_all(src)
    for smoothing in (False, True):
        out = tmp_path / f"out{smoothing}.mkv"
        run(src, out, cfg, encoder="ffv1", smoothing=smoothing)
        b = decode_all(out)
        assert all(np.array_equal(plane(x, 0), plane(y, 0)) for x, y in zip(a, b))
