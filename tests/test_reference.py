"""Reference photos (`--reference`): matched to every frame by encoder features, static inputs
(chunked runs equal one pass, their content in the fingerprint), bad photos one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import decode_all, make_clip, plane, scene

from vidcolor.cli import main
from vidcolor.config import JobConfig
from vidcolor.guide import guides_hash, read_references
from vidcolor.pipeline import run_job

FPS = 24
FRAMES = 20


@pytest.fixture
def film(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "film.mp4", width=128, height=96, frames=FRAMES, fps=FPS, gop=6)


@pytest.fixture
def gcfg(tiny_guided_weights: Path) -> JobConfig:
    return JobConfig(weights=str(tiny_guided_weights), working_size=64, batch_size=4, preset="ultrafast",
                     encoder="ffv1", chunk_seconds=1000.0, smoothing=False)


def _photo(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def _chroma(path: Path) -> list[np.ndarray]:
    return [np.stack([plane(f, 1), plane(f, 2)]).astype(np.int16) for f in decode_all(path)]


def test_reference_colours_and_chunks_equal_one_pass(film: Path, tmp_path: Path, gcfg: JobConfig) -> None:
    # The film's own scene in colour: every frame matches it.
    ref = _photo(tmp_path / "still.png", scene(5, 128, 96))
    cfg = dataclasses.replace(gcfg, reference=str(ref))
    plain, one, many = tmp_path / "plain.mkv", tmp_path / "one.mkv", tmp_path / "many.mkv"
    run_job(film, plain, gcfg)
    run_job(film, one, cfg)
    r = run_job(film, many, dataclasses.replace(cfg, chunk_seconds=0.25))
    assert r.chunks_total >= 3
    a, b, c = _chroma(plain), _chroma(one), _chroma(many)
    assert len(b) == FRAMES and all((x != y).any() for x, y in zip(a, b))  # the reference reaches every frame
    assert all((x == y).all() for x, y in zip(b, c, strict=True))  # static input: chunks change nothing
    src_y = [plane(f, 0) for f in decode_all(film)]
    assert all((plane(f, 0) == y).all() for f, y in zip(decode_all(one), src_y))  # luma untouched


def test_reference_content_in_fingerprint(tmp_path: Path) -> None:
    img = scene(0, 128, 96)
    a = read_references(_photo(tmp_path / "a.png", img), 64)
    b = read_references(_photo(tmp_path / "b.png", img[:, ::-1]), 64)
    folder = tmp_path / "refs"
    folder.mkdir()
    _photo(folder / "1.png", img)
    _photo(folder / "2.jpg", img[::-1])
    both = read_references(folder, 64)
    assert [r.name for r in both] == ["1.png", "2.jpg"] and both[0].grey.shape == (64, 85)
    assert guides_hash(a) != guides_hash(b) != guides_hash(both)


@pytest.mark.parametrize(("kind", "words"), [
    ("missing", "reference not found"), ("unreadable", "cannot read the image"),
    ("grey", "has no colour"), ("tiny", "at least 64 px"), ("empty", "no photos")])
def test_bad_reference(film: Path, tmp_path: Path, gcfg: JobConfig, capsys: pytest.CaptureFixture[str],
                       kind: str, words: str) -> None:
    ref = tmp_path / "ref.png"
    if kind == "unreadable":
        ref.write_text("not an image")
    elif kind == "grey":
        _photo(ref, np.repeat(scene(0, 128, 96).mean(-1, keepdims=True), 3, -1).astype(np.uint8))
    elif kind == "tiny":
        _photo(ref, scene(0, 40, 30))
    elif kind == "empty":
        ref = tmp_path / "empty"
        ref.mkdir()
    out = tmp_path / "out.mp4"
    rc = main(["colorize", str(film), "-o", str(out), "--workers", "0", "--weights", gcfg.weights, "-q",
               "--working-size", "64", "--reference", str(ref)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / ".out.mp4.vidcolor").exists()


def test_reference_needs_a_guided_model(film: Path, tmp_path: Path, tiny_weights: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ref = _photo(tmp_path / "ref.png", scene(0, 128, 96))
    rc = main(["colorize", str(film), "-o", str(tmp_path / "o.mp4"), "--workers", "0", "--weights",
               str(tiny_weights), "-q", "--working-size", "64", "--reference", str(ref)])
    assert rc == 4 and "takes no colour guide" in capsys.readouterr().err


@pytest.mark.slow
def test_shipped_model_follows_a_matching_reference_and_ignores_another(tmp_path: Path) -> None:
    """The shipped model: a colour still of the same scene pulls the film toward its colours; a
    photo of something else entirely (the gate's job) leaves the colour almost as it was."""
    film = make_clip(tmp_path / "film.mp4", width=192, height=128, frames=12, fps=FPS, gop=6)
    cfg = JobConfig(working_size=128, batch_size=4, preset="ultrafast", encoder="ffv1", chunk_seconds=1000.0,
                    smoothing=False)
    truth = [scene(i, 192, 128) for i in range(12)]
    same = _photo(tmp_path / "same.png", truth[6])
    yy, xx = np.mgrid[0:128, 0:192]
    other = np.stack([np.full_like(xx, 150), (xx * 255 // 191), (yy * 255 // 127)], -1)  # a colour chart
    other[::16] = 0
    other[:, ::16] = 255
    elsewhere = _photo(tmp_path / "other.png", other.astype(np.uint8))
    outs = {}
    for name, ref in (("plain", ""), ("same", str(same)), ("other", str(elsewhere))):
        outs[name] = tmp_path / f"{name}.mkv"
        run_job(film, outs[name], dataclasses.replace(cfg, reference=ref))
    want = [cv2.cvtColor(t, cv2.COLOR_RGB2YCrCb)[::2, ::2, 1:][..., ::-1].transpose(2, 0, 1).astype(np.int16)
            for t in truth]  # true (Cb, Cr) at the chroma planes' size
    err = {k: np.mean([np.abs(c - w).mean() for c, w in zip(_chroma(p), want)]) for k, p in outs.items()}
    assert err["same"] < err["plain"] - 3, err
    moved = np.mean([np.abs(a - b).mean() for a, b in zip(_chroma(outs["plain"]), _chroma(outs["other"]))])
    assert moved < 1.5, (moved, err)


@pytest.mark.parametrize("scale", [1, 2])
def test_an_image_matched_to_itself_keeps_its_colours_in_place(scale: int) -> None:
    """match.carry's geometry (padding, the grid, the scale): an odd-sized textured image
    matched to itself carries its left half's colour to its left and its right half's to its
    right, at 1x and at twice the size (MATCH_SCALE)."""
    from vidcolor.match import carry, reference_of
    from vidcolor.model import Colorizer

    colorizer = Colorizer.for_job(JobConfig())
    h, w = 75, 133  # padded to 96 x 160 at 1x, 160 x 288 at 2x: margins on every side
    yy, xx = np.mgrid[0:h, 0:w]
    grey = (0.5 + 0.25 * np.sin(xx / 3.0) * np.where(xx < w // 2, 1.0, np.cos(yy / 2.0))).astype(np.float32)
    guide = np.zeros((h, w, 3), np.float32)
    guide[:, : w // 2] = (0.4, 0.2, 1.0)
    guide[:, w // 2 :] = (-0.4, 0.3, 1.0)
    feats, pad = colorizer.features(grey[None], pad_to=1, scale=scale)
    out = carry(feats[0], pad, reference_of(colorizer, grey, guide, scale), (w, h))
    assert out.shape == (h, w, 3)
    conf = out[..., 2]
    a = out[..., 0] / np.maximum(conf, 1e-6)
    assert conf[:, 8:58].mean() > 0.5 and conf[:, 76:125].mean() > 0.5
    assert a[:, 8:58].mean() > 0.3 and a[:, 76:125].mean() < -0.3, (a[:, 8:58].mean(), a[:, 76:125].mean())
    edge = int(np.argmax(a.mean(0) < 0.0))  # where the colour turns: the halves' border, in place
    assert abs(edge - w // 2) <= 4, edge
