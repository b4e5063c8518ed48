"""Colour guides: keyframes per shot, hand-coloured keyframes and hint files steer their shot
only, luma stays exact, chunked and resumed runs equal one pass, bad guides are one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import decode_all, make_clip, plane, scene

from vidcolor import pipeline
from vidcolor.cli import main
from vidcolor.color import AB_SCALE, rgb_to_ab
from vidcolor.config import JobConfig
from vidcolor.data import sample_guide
from vidcolor.errors import ResumeError
from vidcolor.guide import FOLLOW_WINDOW, follow_keyframe
from vidcolor.model import Colorizer
from vidcolor.pipeline import open_manifest, run_job
from vidcolor.video import container_format, probe

FPS = 24
CUT = 12  # the synthetic clip changes scene at frame 12 (0.500 s)
FRAMES = 25  # (its moving square wraps round at frame 26: a layout change the cut test would call a cut)


@pytest.fixture
def film(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "film.mp4", width=128, height=96, frames=FRAMES, fps=FPS, cut_at=CUT, gop=6)


@pytest.fixture
def gcfg(tiny_guided_weights: Path) -> JobConfig:
    return JobConfig(weights=str(tiny_guided_weights), working_size=64, batch_size=4, preset="ultrafast",
                     encoder="ffv1", chunk_seconds=1000.0)


def _keys(film: Path, tmp_path: Path, gcfg: JobConfig) -> Path:
    keys = tmp_path / "keys"
    assert main(["keyframes", str(film), "--out-dir", str(keys), "--weights", gcfg.weights,
                 "--working-size", "64"]) == 0
    return keys


def _paint(path: Path, colour_bgr: tuple[int, int, int]) -> None:
    """What a user does in an editor: a few strokes of colour on the grey keyframe."""
    img = cv2.imread(str(path))
    img[20:70, 10:60] = colour_bgr
    cv2.imwrite(str(path), img)


def _chroma(path: Path) -> list[np.ndarray]:
    return [np.stack([plane(f, 1), plane(f, 2)]).astype(np.int16) for f in decode_all(path)]


def test_keyframes_one_per_shot(film: Path, tmp_path: Path, gcfg: JobConfig) -> None:
    keys = _keys(film, tmp_path, gcfg)
    assert sorted(p.name for p in keys.iterdir()) == [
        "t000000.000.auto.png", "t000000.000.png", "t000000.500.auto.png", "t000000.500.png"]
    grey = cv2.imread(str(keys / "t000000.000.png"), cv2.IMREAD_UNCHANGED)
    assert grey.shape == (96, 128, 3)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    auto = cv2.imread(str(keys / "t000000.500.auto.png"))
    assert auto.shape == (96, 128, 3) and np.abs(auto.astype(int) - auto.mean(-1, keepdims=True)).max() > 2


def test_guide_steers_its_shot_only_and_keeps_luma(film: Path, tmp_path: Path, gcfg: JobConfig) -> None:
    keys = _keys(film, tmp_path, gcfg)
    _paint(keys / "t000000.000.png", (40, 160, 60))  # green strokes on shot 1
    plain, guided = tmp_path / "plain.mkv", tmp_path / "guided.mkv"
    run_job(film, plain, gcfg)
    gcfg = dataclasses.replace(gcfg, guide=str(keys))
    # The keyframe's own guide (flow) ends at the cut; beyond it, the keyframe reaches other shots
    # only by feature matching (test_keyframe_colours_the_shots_that_match_it), off here.
    flow_only = Colorizer.for_job(gcfg)
    flow_only.can_match = False
    run_job(film, guided, gcfg, colorizer=flow_only)
    a, b = _chroma(plain), _chroma(guided)
    assert len(a) == len(b) == FRAMES
    assert all((a[i] != b[i]).any() for i in range(CUT))  # the whole first shot follows the guide
    assert all((a[i] == b[i]).all() for i in range(CUT, FRAMES))  # the cut ends it
    src_y = [plane(f, 0) for f in decode_all(film)]
    assert all((plane(f, 0) == y).all() for f, y in zip(decode_all(guided), src_y))


def test_painted_keyframe_comes_out_as_painted(film: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped model: where the user painted, the keyframe comes out in the painted colours
    (follow_keyframe); the network alone gives only a softened copy of fine detail."""
    cfg = JobConfig(working_size=96, batch_size=4, preset="ultrafast", encoder="ffv1", chunk_seconds=1000.0)
    keys = tmp_path / "keys"
    assert main(["keyframes", str(film), "--out-dir", str(keys), "--working-size", "96"]) == 0
    key = keys / "t000000.000.png"
    # Red and green stripes, 8 px wide, over pixels 20:70 x 8:64, lightness kept: detail finer
    # than the network's colour.
    img = cv2.imread(str(key))
    lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    stripes = np.where((np.arange(8, 64) // 8 % 2)[None, :, None] == 0, (50.0, 30.0), (-40.0, 35.0))
    lab[20:70, 8:64, 1:] = stripes
    cv2.imwrite(str(key), np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR) * 255, 0, 255).round().astype(np.uint8))
    painted = rgb_to_ab(cv2.imread(str(key))[..., ::-1].astype(np.float32) / 255) * AB_SCALE
    cfg = dataclasses.replace(cfg, guide=str(keys))

    def ab_error(path: Path) -> float:  # mean Lab ab distance from the paint, inside the stripes
        rgb = decode_all(path)[0].to_ndarray(format="rgb24").astype(np.float32) / 255
        err = np.linalg.norm(rgb_to_ab(rgb) * AB_SCALE - painted, axis=-1)
        return float(err[24:66, 12:60].mean())

    followed, alone = tmp_path / "followed.mkv", tmp_path / "alone.mkv"
    run_job(film, followed, cfg)
    monkeypatch.setattr(pipeline, "follow_keyframe", lambda ab, carried: ab)
    run_job(film, alone, cfg)
    assert ab_error(followed) < 3.0 < 10.0 < ab_error(alone), (ab_error(followed), ab_error(alone))


def test_follow_keyframe_leaves_points_to_the_network() -> None:
    """A painted area is followed by its confidence; a 5x5 point only by the share of its
    window it covers, and nothing outside the hints moves."""
    ab = np.zeros((40, 40, 2), np.float32)
    carried = np.zeros((40, 40, 3), np.float32)
    carried[:, :20] = (0.3 * 0.5, -0.2 * 0.5, 0.5)  # a painted half at confidence 0.5
    carried[28:33, 28:33] = (0.4, 0.1, 1.0)  # a point
    out = follow_keyframe(ab, carried)
    assert np.allclose(out[10, 5], (0.15, -0.1))  # halfway, inside the painted half
    assert np.allclose(out[30, 30], np.array([0.4, 0.1]) * 25 / FOLLOW_WINDOW**2)
    assert (out[:24, 21:] == 0).all()
    assert follow_keyframe(ab, np.zeros_like(carried)) is ab


def test_guided_chunks_equal_one_pass(film: Path, tmp_path: Path, gcfg: JobConfig) -> None:
    """A chunk that starts mid-shot gets its shot's guide: the frames equal a single pass."""
    keys = _keys(film, tmp_path, gcfg)
    _paint(keys / "t000000.000.png", (200, 60, 40))
    cfg = dataclasses.replace(gcfg, guide=str(keys))
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    # Without smoothing a frame's colour depends on its own guide alone: chunks are exactly one pass.
    run_job(film, one, dataclasses.replace(cfg, smoothing=False))
    r = run_job(film, many, dataclasses.replace(cfg, smoothing=False, chunk_seconds=0.25))
    assert r.chunks_total >= 4
    assert all((x == y).all() for x, y in zip(_chroma(one), _chroma(many), strict=True))
    # With smoothing, the warm-up frames settle the smoother at each seam as without a guide
    # (test_chunks: 2 code values at most).
    one, many = tmp_path / "one_s.mkv", tmp_path / "many_s.mkv"
    run_job(film, one, cfg)
    run_job(film, many, dataclasses.replace(cfg, chunk_seconds=0.25))
    assert max(int(np.abs(x - y).max()) for x, y in zip(_chroma(one), _chroma(many), strict=True)) <= 2


def test_changed_guide_refuses_resume(film: Path, tmp_path: Path, gcfg: JobConfig) -> None:
    info = probe(film)
    out = tmp_path / "out.mkv"
    open_manifest(film, out, info, gcfg, container_format(out), "w", False, "a" * 64)
    from vidcolor.pipeline import _unlock_job, job_dir_for

    _unlock_job(job_dir_for(out))
    with pytest.raises(ResumeError, match="colour guide"):
        open_manifest(film, out, info, gcfg, container_format(out), "w", False, "b" * 64)


def test_hints_file(film: Path, tmp_path: Path, gcfg: JobConfig) -> None:
    hints = tmp_path / "hints.toml"
    hints.write_text('[[hint]]\nframe = 15\nx = 40\ny = 50\ncolor = "#c83c28"\n\n'
                     '[[hint]]\ntime = 0.625\nx = 100\ny = 20\ncolor = [40, 80, 200]\n')
    plain, guided = tmp_path / "plain.mkv", tmp_path / "guided.mkv"
    run_job(film, plain, gcfg)
    run_job(film, guided, dataclasses.replace(gcfg, guide=str(hints)))
    a, b = _chroma(plain), _chroma(guided)
    assert all((a[i] == b[i]).all() for i in range(CUT))  # the shot before: untouched
    # The hinted frame is mid-shot: the guide colours its whole shot, from the cut on, the
    # frames before the hint too.
    assert all((a[i] != b[i]).any() for i in range(CUT, FRAMES))


def test_mid_shot_hint_chunks_equal_one_pass(film: Path, tmp_path: Path, gcfg: JobConfig) -> None:
    """A hint late in a shot reaches back to the cut in every chunk: chunks that hold only
    frames before the hinted one still get its guide, exactly as one pass does."""
    hints = tmp_path / "hints.toml"
    # Points on the still background: the moving square's pixels rightly lose their hint as it moves.
    hints.write_text("".join(f'[[hint]]\nframe = 21\nx = {x}\ny = {y}\ncolor = "#2850c8"\n\n'
                             for x, y in ((8, 8), (120, 8), (8, 88), (120, 88))))
    cfg = dataclasses.replace(gcfg, guide=str(hints), smoothing=False)
    plain, one, many = tmp_path / "plain.mkv", tmp_path / "one.mkv", tmp_path / "many.mkv"
    run_job(film, plain, dataclasses.replace(cfg, guide=""))
    run_job(film, one, cfg)
    r = run_job(film, many, dataclasses.replace(cfg, chunk_seconds=0.25))
    assert r.chunks_total >= 4
    a, b, c = _chroma(plain), _chroma(one), _chroma(many)
    assert all((x == y).all() for x, y in zip(b, c, strict=True))
    assert all((a[i] == b[i]).all() for i in range(CUT))
    assert all((a[i] != b[i]).any() for i in range(CUT, FRAMES))


def _run_cli(tmp_path: Path, film: Path, weights: str, guide: Path,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    out = tmp_path / "out.mp4"
    rc = main(["colorize", str(film), "-o", str(out), "--workers", "0", "--weights", weights, "-q",
               "--working-size", "64", "--guide", str(guide)])
    err = capsys.readouterr().err.strip()
    assert not out.exists() and not (tmp_path / ".out.mp4.vidcolor").exists()
    return rc, err


def _bad_keyframe(keys: Path, kind: str) -> None:
    if kind == "size":
        cv2.imwrite(str(keys / "t000000.000.png"), np.full((50, 60, 3), (0, 0, 200), np.uint8))
    elif kind == "name":
        cv2.imwrite(str(keys / "frame1.png"), np.full((96, 128, 3), 90, np.uint8))
    elif kind == "time":
        cv2.imwrite(str(keys / "t000099.000.png"), np.full((96, 128, 3), (0, 0, 200), np.uint8))
    elif kind == "unreadable":
        (keys / "t000000.000.png").write_bytes(b"not a png at all")
    elif kind == "grey_file":
        cv2.imwrite(str(keys / "t000000.000.png"), np.full((96, 128), 90, np.uint8))


@pytest.mark.parametrize(("kind", "words"), [
    ("size", "is 60x50, the film is 128x96"), ("name", "not named like a keyframe"),
    ("time", "outside the film"), ("unreadable", "cannot read"), ("grey_file", "not a colour image")])
def test_bad_keyframe_folder(film: Path, tmp_path: Path, gcfg: JobConfig, capsys: pytest.CaptureFixture[str],
                             kind: str, words: str) -> None:
    keys = _keys(film, tmp_path, gcfg)
    capsys.readouterr()
    _bad_keyframe(keys, kind)
    rc, err = _run_cli(tmp_path, film, gcfg.weights, keys, capsys)
    assert rc == 2 and words in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(("text", "words"), [
    ("", "no [[hint]]"), ('[[hint]]\nx = 1\ny = 1\ncolor = "#ff0000"\n', "exactly one of time"),
    ('[[hint]]\nframe = 480\nx = 1\ny = 1\ncolor = "#ff0000"\n', "outside the film"),
    ('[[hint]]\ntime = 0.5\nx = 500\ny = 1\ncolor = "#ff0000"\n', "must lie in the 128x96 frame"),
    ('[[hint]]\ntime = 0.5\nx = 1\ny = 1\ncolor = "red"\n', "color must be"),
    ("[[hint\n", "cannot read hints file")])
def test_bad_hints(film: Path, tmp_path: Path, gcfg: JobConfig, capsys: pytest.CaptureFixture[str],
                   text: str, words: str) -> None:
    hints = tmp_path / "hints.toml"
    hints.write_text(text)
    rc, err = _run_cli(tmp_path, film, gcfg.weights, hints, capsys)
    assert rc == 2 and words in err and len(err.splitlines()) == 1, err


def test_guide_needs_a_guided_model(film: Path, tmp_path: Path, tiny_weights: Path, gcfg: JobConfig,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    keys = _keys(film, tmp_path, gcfg)
    _paint(keys / "t000000.000.png", (40, 160, 60))
    capsys.readouterr()
    rc, err = _run_cli(tmp_path, film, str(tiny_weights), keys, capsys)
    assert rc == 4 and "takes no colour guide" in err


def test_missing_guide(film: Path, tmp_path: Path, gcfg: JobConfig, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run_cli(tmp_path, film, gcfg.weights, tmp_path / "nowhere", capsys)
    assert rc == 2 and "guide not found" in err


def test_sample_guide_draws_true_colours() -> None:
    rng = np.random.default_rng(0)
    ab = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 32), np.linspace(0.3, -0.3, 24)))[:, :, :].astype(np.float32)
    kinds = {"none": 0, "dense": 0, "points": 0}
    for _ in range(400):
        g = sample_guide(ab, rng, 0.45, 0.2)
        conf = g[2]
        assert g.shape == (3, 24, 32) and conf.min() >= 0 and conf.max() <= 1
        if conf.max() == 0:
            kinds["none"] += 1
        elif set(np.unique(conf)) <= {0.0, 1.0} and conf.mean() < 0.9:
            kinds["points"] += 1
            hinted = conf > 0
            # a hint's colour is the mean true colour of its small patch: close to the pixel's own
            assert np.abs(g[:2][:, hinted] - ab[:, hinted]).max() < 0.1
        else:
            kinds["dense"] += 1
    assert 140 < kinds["none"] < 220 and 50 < kinds["dense"] < 120 and kinds["points"] > 120


@pytest.mark.slow
def test_shipped_model_follows_a_coloured_keyframe(film: Path, tmp_path: Path) -> None:
    """The shipped (trained) model: a keyframe painted green turns its shot green."""
    cfg = JobConfig(working_size=96, batch_size=4, preset="ultrafast", encoder="ffv1", chunk_seconds=1000.0)
    keys = tmp_path / "keys"
    assert main(["keyframes", str(film), "--out-dir", str(keys), "--working-size", "96"]) == 0
    img = cv2.imread(str(keys / "t000000.000.png"))
    lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    lab[..., 1:] = (-40.0, 30.0)  # green, the whole frame, lightness kept
    bgr = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR) * 255, 0, 255).round().astype(np.uint8)
    cv2.imwrite(str(keys / "t000000.000.png"), bgr)
    plain, guided = tmp_path / "plain.mkv", tmp_path / "guided.mkv"
    run_job(film, plain, cfg)
    run_job(film, guided, dataclasses.replace(cfg, guide=str(keys)))
    a, b = _chroma(plain), _chroma(guided)
    for i in range(CUT):  # green: Cb and Cr both below neutral, far more than without the guide
        assert b[i][1].mean() < a[i][1].mean() - 8 and b[i][0].mean() < 128, i
    # (The second shot, a gradient and a square as well, matches the keyframe in grey: what a
    # keyframe does to other shots is test_keyframe_colours_the_shots_that_match_it's.)


def _jumping_object(i: int) -> np.ndarray:
    """A 192x128 frame: a smooth grey background and a checkered disc that jumps from the left
    edge (frame 0) to the right (frames 1 on): too far for optical flow to follow."""
    yy, xx = np.mgrid[0:128, 0:192]
    img = np.repeat((90 + 60 * yy / 127 + 20 * np.sin(xx / 23.0))[..., None], 3, -1)
    cx = 40 if i == 0 else 150
    disc = (xx - cx) ** 2 + (yy - 64) ** 2 < 24**2
    checker = ((xx // 6 + yy // 6) % 2).astype(bool)
    img[disc & checker] = 230
    img[disc & ~checker] = 25
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_colour_follows_an_object_that_jumps(tmp_path: Path) -> None:
    """The shipped model, a keyframe whose object is painted green: when the object jumps
    across the frame, the flow loses it and the feature match carries its colour there."""
    film = make_clip(tmp_path / "jump.mp4", width=192, height=128, frames=8, fps=FPS, gop=4,
                     frame_fn=_jumping_object)
    cfg = JobConfig(working_size=128, batch_size=4, preset="ultrafast", encoder="ffv1", chunk_seconds=1000.0,
                    smoothing=False)
    keys = tmp_path / "keys"
    assert main(["keyframes", str(film), "--out-dir", str(keys), "--working-size", "128"]) == 0
    key = keys / "t000000.000.png"
    img = cv2.imread(str(key))
    yy, xx = np.mgrid[0:128, 0:192]
    on_disc = (xx - 40) ** 2 + (yy - 64) ** 2 < 22**2
    lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    lab[on_disc, 1:] = (-50.0, 40.0)  # the user paints the disc green; the rest stays grey (no hint)
    cv2.imwrite(str(key), np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR) * 255, 0, 255).round().astype(np.uint8))
    plain, guided, flow_only = tmp_path / "plain.mkv", tmp_path / "guided.mkv", tmp_path / "flow.mkv"
    gcfg = dataclasses.replace(cfg, guide=str(keys))
    run_job(film, plain, cfg)
    run_job(film, guided, gcfg)
    flow_colorizer = Colorizer.for_job(gcfg)
    flow_colorizer.can_match = False  # the guide as before feature matching: flow alone
    run_job(film, flow_only, gcfg, colorizer=flow_colorizer)
    disc = ((xx - 150) ** 2 + (yy - 64) ** 2 < 18**2)[::2, ::2]  # where the disc is, at chroma size

    def cr_on_disc(path: Path) -> float:  # Cr falls as green rises
        return float(np.mean([c[1][disc].mean() for c in _chroma(path)[1:]]))

    plain_cr, matched_cr, flow_cr = cr_on_disc(plain), cr_on_disc(guided), cr_on_disc(flow_only)
    assert matched_cr < flow_cr - 5 and matched_cr < plain_cr - 5, (plain_cr, flow_cr, matched_cr)


def _chart(w: int, h: int) -> np.ndarray:
    """Another scene entirely: a ruled colour chart."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([np.full_like(xx, 150), xx * 255 // (w - 1), yy * 255 // (h - 1)], -1)
    img[::16] = 0
    img[:, ::16] = 255
    return img.astype(np.uint8)


@pytest.mark.slow
def test_keyframe_colours_the_shots_that_match_it(tmp_path: Path) -> None:
    """Shot / reverse shot: shots A, B, A again; only A's keyframe is coloured (red). The
    shipped model carries it to the return of A by feature matching; B, another scene entirely,
    is left as it was (the reference gate). One pass equals a chunked run."""
    w, h, n = 192, 128, 8
    film = make_clip(tmp_path / "film.mp4", width=w, height=h, frames=3 * n, fps=FPS, gop=4,
                     frame_fn=lambda i: _chart(w, h) if n <= i < 2 * n else scene(i, w, h))
    cfg = JobConfig(working_size=128, batch_size=4, preset="ultrafast", encoder="ffv1", chunk_seconds=1000.0,
                    smoothing=False)
    keys = tmp_path / "keys"
    assert main(["keyframes", str(film), "--out-dir", str(keys), "--working-size", "128"]) == 0
    assert len(list(keys.glob("t*[0-9].png"))) == 3  # one per shot; the user colours the first only
    key = keys / "t000000.000.png"
    lab = cv2.cvtColor(cv2.imread(str(key)).astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    lab[..., 1:] = (50.0, 30.0)  # red, the whole frame, lightness kept
    cv2.imwrite(str(key), np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR) * 255, 0, 255).round().astype(np.uint8))
    plain, guided, chunked = tmp_path / "plain.mkv", tmp_path / "guided.mkv", tmp_path / "chunked.mkv"
    gcfg = dataclasses.replace(cfg, guide=str(keys))
    run_job(film, plain, cfg)
    run_job(film, guided, gcfg)
    r = run_job(film, chunked, dataclasses.replace(gcfg, chunk_seconds=0.2))
    a, b, c = _chroma(plain), _chroma(guided), _chroma(chunked)
    assert r.chunks_total >= 3
    assert all((x == y).all() for x, y in zip(b, c, strict=True))
    for i in [*range(n), *range(2 * n, 3 * n)]:  # A and its return: red (Cr well up)
        assert b[i][1].mean() > a[i][1].mean() + 8, i
    moved = np.mean([np.abs(a[i] - b[i]).mean() for i in range(n, 2 * n)])
    assert moved < 1.5, moved
